"""The agent's notifier retries across every broker node of its transport URL."""

from __future__ import annotations

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from agent import rpc

THREE_NODES = "rabbit://u:p@rabbit-1:5672,u:p@rabbit-2:5672,u:p@rabbit-3:5672/custos"


@pytest.fixture
def notify_conf(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    rpc.register_opts(conf)
    messaging.get_notification_transport(conf, url="fake:/").cleanup()  # registers its options
    conf.set_override("transport_url", THREE_NODES)
    return conf


def test_retry_forever_becomes_rounds_over_every_node(notify_conf):
    # kombu reads -1 as "give up at the first refused node" on a new connection.
    assert notify_conf.oslo_messaging_notifications.retry == -1
    assert rpc.notification_retry(notify_conf) == rpc.NOTIFY_ROUNDS * 3


def test_a_configured_retry_still_reaches_every_node(notify_conf):
    notify_conf.set_override("retry", 0, group="oslo_messaging_notifications")
    assert rpc.notification_retry(notify_conf) == 2
    notify_conf.set_override("retry", 7, group="oslo_messaging_notifications")
    assert rpc.notification_retry(notify_conf) == 7


def test_the_notification_transport_url_decides(notify_conf):
    notify_conf.set_override("transport_url", "rabbit://u:p@solo:5672/",
                             group="oslo_messaging_notifications")
    assert rpc.notification_retry(notify_conf) == rpc.NOTIFY_ROUNDS
