"""Each try of the agent's notifier reaches every broker node of its transport URL."""

from __future__ import annotations

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from agent import notifier, rpc

THREE_NODES = "rabbit://u:p@rabbit-1:5672,u:p@rabbit-2:5672,u:p@rabbit-3:5672/custos"
FIVE_NODES = ",".join(f"u:p@rabbit-{i}:5672" for i in range(1, 6))


@pytest.fixture
def notify_conf(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    rpc.register_opts(conf)
    messaging.get_notification_transport(conf, url="fake:/").cleanup()  # registers its options
    conf.set_override("transport_url", THREE_NODES)
    return conf


def test_one_try_moves_past_a_refusing_node(notify_conf):
    # kombu reads -1 as "no reconnection": the try would end at the first node.
    assert rpc.notification_retry(notify_conf) >= 2


def test_every_node_of_a_larger_cluster_is_reached(notify_conf):
    notify_conf.set_override("transport_url", f"rabbit://{FIVE_NODES}/custos")
    assert rpc.notification_retry(notify_conf) == 4


def test_the_notification_transport_url_decides(notify_conf):
    notify_conf.set_override("transport_url", "rabbit://u:p@solo:5672/",
                             group="oslo_messaging_notifications")
    assert rpc.notification_retry(notify_conf) == notifier.SEND_RETRY
