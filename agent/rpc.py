"""Transport, notifier, RPC server and listener set-up, all in one place.

:func:`init` builds the RPC and notification transports from the global
``CONF`` (oslo.messaging registers its options there, see SPEC §2);
:func:`cleanup` tears them down. The addresses and the exception modules
allowed over the bus come from :mod:`agent.wire`, which clients share: the
RPC server names exchange ``custos`` in its own ``Target``, as clients do,
so it answers them whatever ``control_exchange`` says. ``control_exchange``
(default ``custos``, set by :func:`agent.conf.opts.set_defaults` at start-up)
decides where the notifier publishes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_messaging._drivers import amqpdriver
from oslo_messaging._drivers import common as driver_common
from oslo_messaging.notify import listener as notify_listener
from oslo_messaging.rpc import server as rpc_server

from agent import context, dispatch, executor, notifier, wire
from agent.events.dispatcher import EventDispatcher

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

TOPIC = wire.TOPIC
NOTIFICATION_TOPIC = wire.NOTIFICATION_TOPIC
# The rabbit driver names a listener pool's queue after the pool and an RPC
# server's queues after the topic and topic.host: a pool named like either
# would share an RPC queue, and the listener would swallow RPC calls.
LISTENER_POOL = "custos-agent-events"
ALLOWED_EXMODS = wire.ALLOWED_EXMODS
CONTROL_EXCHANGE = wire.EXCHANGE

#: Reconnection attempts when deleting an agent's own event queue at stop.
QUEUE_DELETE_RETRY = 1

#: Threads of each event listener's pool. An event costs one short purge
#: transaction (shared pool) or a dictionary lookup (the agent's own pool),
#: at the rate a cloud deletes instances and volumes: one thread keeps up,
#: and the pool starts another only when none is idle. The rest are for a
#: purge that waits: on a row another agent locks, or between the retries
#: of a deadlock or a lost connection (seconds), while the others go on.
#: More would let a burst of events take database connections from
#: callers' requests, for purges that SQLite and the rows' locks serialize
#: anyway. Events beyond these wait in order of arrival, unacknowledged,
#: so they are still requeued if the agent dies first.
LISTENER_WORKERS = 4

TRANSPORT: messaging.Transport | None = None
NOTIFICATION_TRANSPORT: messaging.Transport | None = None


class NotificationSerializer(context.RequestContextSerializer):
    """Serializes a notification's context without any credential in it."""

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        values = context.redacted(ctxt)
        for key in context.SENSITIVE_KEYS:
            values.pop(key, None)
        return values


def register_opts(conf: cfg.ConfigOpts | None = None) -> None:
    """Register oslo.messaging's transport options on ``conf``.

    Registering up front lets commands and tests set ``transport_url``
    before any transport exists. Defaults are left alone.
    """
    messaging.TransportURL.parse(conf or CONF)  # registers transport_url and friends


def broker_hosts(conf: cfg.ConfigOpts | None = None) -> list[tuple[str, int]]:
    """Return the ``(host, port)`` of every broker node in ``transport_url``."""
    conf = conf or CONF
    url = messaging.TransportURL.parse(conf)
    return [(host.hostname or "127.0.0.1", host.port or 5672) for host in url.hosts] or [
        ("127.0.0.1", 5672)]


def init(conf: cfg.ConfigOpts | None = None) -> None:
    """Build the RPC and notification transports from ``conf``."""
    global TRANSPORT, NOTIFICATION_TRANSPORT
    conf = conf or CONF
    TRANSPORT = messaging.get_rpc_transport(conf, allowed_remote_exmods=ALLOWED_EXMODS)
    NOTIFICATION_TRANSPORT = messaging.get_notification_transport(
        conf, allowed_remote_exmods=ALLOWED_EXMODS)


def initialized() -> bool:
    """True between :func:`init` and :func:`cleanup`."""
    return TRANSPORT is not None


def cleanup() -> None:
    """Close both transports."""
    global TRANSPORT, NOTIFICATION_TRANSPORT
    for transport in (TRANSPORT, NOTIFICATION_TRANSPORT):
        if transport is not None:
            transport.cleanup()
    TRANSPORT = NOTIFICATION_TRANSPORT = None


#: A request read sooner than this after the listener thread was done with
#: the one before was most likely waiting behind it: other callers are
#: busy, and the pool serves it (:class:`RPCServer`).
WAITED_S = 0.0002
#: How long the listener thread may serve one request before another
#: thread reads the bus in its place until that request is done.
RELIEF_AFTER_S = 0.05
#: Seconds each read of that other thread may wait for a message; the
#: listener thread waits for the read in progress once its request is done.
RELIEF_READ_S = 0.05
#: Seconds without a request served on the listener thread after which the
#: relieving thread stops looking, until the next one.
WATCH_IDLE_S = 1.0


class RPCServer(rpc_server.RPCServer):
    """oslo.messaging's RPC server, serving a quick request on the thread that read it.

    oslo.messaging's listener thread reads each request off the bus and
    hands it to a pool thread. Handing it over costs a thread wake-up, and
    the pool thread then works on a request, and through code, that are
    in another CPU's caches: an attach cost the agent about a fifth more
    CPU that way than when the thread that read it served it (measured in
    ``docs/benchmarks.rst``).

    So the listener thread serves a request itself when all of these hold,
    and otherwise hands it to the pool as before:

    * its method is declared ``quick`` (:func:`agent.dispatch.rpc_method`);
    * its tokens were validated or refused lately, so Keystone is not
      asked (:meth:`~agent.identity.authenticator.Authenticator.answers_from_memory`);
    * no pool thread is busy and no request waits for one, and the
      listener thread had to wait for this request (:data:`WAITED_S`):
      while other callers are active, requests go to the pool and run
      side by side.

    While the listener thread serves a request, nothing else reads the
    bus. Should it take longer than :data:`RELIEF_AFTER_S` (a database
    that stopped answering, a slow broker), a relieving thread reads in
    its place and hands what it reads to the pool, until the request is
    done. The relieving thread looks only while requests are being served
    this way, and ends when none was for a while.

    oslo.messaging sends the reply at the end of ``_process_incoming``;
    run inside :func:`agent.notifier.after_reply`, the same thread then
    publishes what the request committed (see that module for when it
    does not).

    :param quick_methods: names of the methods the listener thread may serve.
    :param identity: tells whether a request's tokens are known; without
        it, every request goes to the pool.
    """

    def __init__(self, transport: messaging.Transport, target: messaging.Target,
                 dispatcher: Any, *, quick_methods: frozenset[str] = frozenset(),
                 identity: Any = None) -> None:
        super().__init__(transport, target, dispatcher)
        self.quick_methods = quick_methods
        self.identity = identity
        #: Requests the listener thread served, and those read in its place.
        self.served_by_listener = 0
        self.read_in_relief = 0
        self._done_at = 0.0
        # When the listener thread began the request it serves; None when
        # it serves none. Only that thread writes it.
        self._serving_since: float | None = None
        # Held by the relieving thread while it reads the bus.
        self._reading = threading.Lock()
        self._relief_lock = threading.Lock()
        self._relief_running = False

    def _on_incoming(self, incoming: Any) -> None:
        if len(incoming) == 1 and self._serve_here(incoming[0]):
            self.served_by_listener += 1
            self._serving_since = time.monotonic()
            if not self._relief_running:
                self._start_relief()
            try:
                self._process_incoming(incoming)
            except Exception:  # noqa: BLE001 - as a pool thread, the listener serves on
                LOG.exception("Unexpected error serving a request")
            finally:
                self._serving_since = None
                with self._reading:
                    pass  # the relieving thread has stopped reading the bus
        else:
            super()._on_incoming(incoming)
        self._done_at = time.monotonic()

    def _serve_here(self, message: Any) -> bool:
        """True when the listener thread should serve ``message`` itself."""
        body = getattr(message, "message", None)
        method = body.get("method") if isinstance(body, dict) else None
        if not isinstance(method, str) or method not in self.quick_methods:
            return False
        ctxt = getattr(message, "ctxt", None)
        if (self.identity is None or not isinstance(ctxt, dict)
                or not self.identity.answers_from_memory(ctxt)):
            return False
        if time.monotonic() - self._done_at < WAITED_S:
            return False
        pool = self._work_executor
        return isinstance(pool, executor.LifoExecutor) and pool.at_rest()

    def _start_relief(self) -> None:
        with self._relief_lock:
            if not self._relief_running:
                self._relief_running = True
                threading.Thread(target=self._relieve, name="rpc-relief", daemon=True).start()

    def _relieve(self) -> None:
        """Read the bus in the listener thread's place while its request takes long.

        Ends once no request was served on the listener thread for
        :data:`WATCH_IDLE_S`, or the server stops; the next such request
        starts it again.
        """
        while True:
            time.sleep(RELIEF_AFTER_S / 2)
            since = self._serving_since
            if since is None:
                with self._relief_lock:
                    # The listener thread sets _serving_since before it
                    # looks at _relief_running: a request begun meanwhile
                    # is seen here, or starts a new relieving thread.
                    if (self._serving_since is None
                            and time.monotonic() - self._done_at > WATCH_IDLE_S):
                        self._relief_running = False
                        return
                continue
            if time.monotonic() - since < RELIEF_AFTER_S:
                continue
            reader = self.listener._poll_style_listener
            with self._reading:
                # The adapter's flag drops as the server stops; the
                # listener's own stop then waits for the request served.
                while self._serving_since == since and self.listener._started:
                    incoming = reader.poll(batch_size=1, batch_timeout=RELIEF_READ_S)
                    if incoming:
                        self.read_in_relief += len(incoming)
                        super()._on_incoming(incoming)

    def _process_incoming(self, incoming: Any) -> None:
        with notifier.after_reply():
            super()._process_incoming(incoming)


def quick_methods(endpoints: list[Any]) -> frozenset[str]:
    """Return the names of the RPC methods of ``endpoints`` declared ``quick``."""
    return frozenset(name for endpoint in endpoints for name in dir(type(endpoint))
                     if getattr(getattr(type(endpoint), name, None), "rpc_quick", False))


def get_rpc_server(host: str, endpoints: list[Any], identity: Any = None) -> RPCServer:
    """Return an RPC server on exchange ``custos``, topic ``custos-agent``, named ``host``.

    It is :class:`RPCServer`: a quick request of a caller whose tokens
    ``identity`` knows may be served on the thread that read it, and each
    request's notifications leave after its reply, from the thread that
    served it. Its dispatcher is :class:`agent.dispatch.RequestDispatcher`,
    which lets the boundary know each request's message id. Other requests
    run on :class:`agent.executor.LifoExecutor`, sized by
    ``executor_thread_pool_size`` as oslo.messaging's threading executor
    is, but waking its most recently idle thread (see that module for
    why).

    :param identity: the agent's :class:`~agent.identity.authenticator.Authenticator`;
        without it every request goes to the pool.
    """
    assert TRANSPORT is not None, "agent.rpc.init() was not called"
    target = messaging.Target(exchange=wire.EXCHANGE, topic=TOPIC, server=host)
    dispatcher = dispatch.RequestDispatcher(
        endpoints, context.RequestContextSerializer(), messaging.ExplicitRPCAccessPolicy)
    server = RPCServer(TRANSPORT, target, dispatcher, quick_methods=quick_methods(endpoints),
                       identity=identity)
    # start() builds the pool as _executor_cls(max_workers=...), and the
    # public executor argument names only oslo.messaging's own two.
    server._executor_cls = executor.LifoExecutor
    return server


#: Seconds :func:`cancel_deliveries` waits for the listener thread. That
#: thread runs the cancel between two broker reads, and an idle listener's
#: read lasts up to oslo.messaging's ``ACK_REQUEUE_EVERY_SECONDS_MAX``
#: (5 s): waiting only 5 s gave up on an idle agent now and then, and
#: stopped it without cancelling.
CANCEL_TIMEOUT_S = amqpdriver.ACK_REQUEUE_EVERY_SECONDS_MAX + 5.0


def cancel_deliveries(server: messaging.RPCServer,
                      timeout: float = CANCEL_TIMEOUT_S) -> bool:
    """Have the broker stop delivering requests to a running RPC server.

    Call it before ``server.stop()``. The rabbit driver acknowledges a
    request as it arrives and queues it for the server's poll loop; once
    ``stop()`` has ended that loop, a request the connection still reads
    (while it deletes its fanout queue on close, or in a heartbeat's read)
    is acknowledged but never handled, and its caller times out. Cancelling
    the consumers first, on the listener's own thread while it still polls,
    means every request delivered before the broker's cancel-ok is handled,
    and every later one stays queued for the other agents.

    :param server: a started RPC server.
    :param timeout: seconds to wait for the listener thread to cancel.
    :returns: True once the consumers are cancelled; False for a transport
        without broker consumers (``fake:``), on a broker error, or when the
        listener did not get to it within ``timeout``.
    """
    listener = getattr(getattr(server, "listener", None), "_poll_style_listener", None)
    operations = getattr(listener, "_message_operations_handler", None)
    connection = getattr(listener, "conn", None)
    if operations is None or connection is None:
        return False
    cancelled = threading.Event()
    failed: list[str] = []

    def cancel() -> None:
        # Runs inside the listener's poll loop, which must not see an
        # exception: it would end the loop and the requests queued in it.
        try:
            with connection._connection_lock:
                for consumer, tag in list(connection._consumers.items()):
                    consumer.cancel(tag=tag)
        except Exception as error:  # noqa: BLE001 - any broker error ends the attempt
            failed.append(type(error).__name__)
        finally:
            cancelled.set()

    operations.do(cancel)
    if not cancelled.wait(timeout):
        LOG.warning("RPC consumers not cancelled within %ss; stopping anyway", timeout)
        return False
    if failed:
        LOG.warning("Cancelling RPC consumers failed (%s); stopping anyway", failed[0])
        return False
    LOG.info("Stopped taking requests from the broker")
    return True


def notification_retry(conf: cfg.ConfigOpts | None = None) -> int:
    """Return the reconnection attempts of one try to send a notification.

    Enough to reach every node of the notification transport URL once:
    each new connection takes the nodes in a shuffled order, and with too
    few attempts (kombu reads -1 as none at all) a try ends at a node that
    refuses it instead of moving to the next. The sender retries the whole
    send on top of this (:class:`agent.notifier.NotificationSender`).

    :param conf: configuration holding the transport URLs (the global one
        when omitted).
    """
    conf = conf or CONF
    url = conf.oslo_messaging_notifications.transport_url or conf.transport_url
    nodes = len(messaging.TransportURL.parse(conf, url).hosts)
    return max(notifier.SEND_RETRY, nodes - 1)


def get_notifier(host: str, program: str = "custos-agent") -> notifier.BrokerNotifier:
    """Return the agent's notifier: ``messagingv2`` on topic ``notifications``.

    Each try reaches every broker node (:func:`notification_retry`).

    :param program: the first part of the publisher id, ``<program>.<host>``
        (``custos-manage`` for what an operator's command changed).
    """
    assert NOTIFICATION_TRANSPORT is not None, "agent.rpc.init() was not called"
    return notifier.BrokerNotifier(NOTIFICATION_TRANSPORT, publisher_id=f"{program}.{host}",
                                   topics=[NOTIFICATION_TOPIC],
                                   serializer=NotificationSerializer(),
                                   retry=notification_retry())


def event_targets(conf: cfg.ConfigOpts | None = None) -> list[messaging.Target]:
    """Return one target per (exchange, topic) of ``[events]``.

    As ceilometer's notification agent does, the listener names each
    service's exchange in its targets; the agent's own ``control_exchange``
    plays no part.
    """
    conf = conf or CONF
    return [messaging.Target(exchange=exchange, topic=topic)
            for exchange in conf.events.exchanges for topic in conf.events.topics]


def listener_executor(max_workers: int) -> executor.LifoExecutor:
    """Return an event listener's worker pool: :data:`LISTENER_WORKERS` threads at most.

    oslo.messaging's default for a listener is futurist's thread pool,
    which starts a thread for each message until it has ``max_workers``
    (``executor_thread_pool_size``, 64) and never ends an idle one: a few
    dozen events left each agent with 128 idle threads for good.

    :param max_workers: what the listener asks for; more than
        :data:`LISTENER_WORKERS` is not given.
    """
    return executor.LifoExecutor(min(max_workers, LISTENER_WORKERS),
                                 thread_name_prefix="event-worker")


def memory_pool(host: str) -> str:
    """Return the listener pool of one agent: every agent gets every event there."""
    return f"{LISTENER_POOL}.{host}"


def delete_own_event_queue(host: str) -> bool:
    """Delete an agent's own event queue, once its listener has stopped.

    That queue only feeds purges of what the agent holds in memory, and a
    stopped agent holds nothing: the events queued until it starts again
    would purge nothing, and the queue of a host that never comes back
    would grow on the broker for ever. The broker deletes it only while
    no consumer uses it, so an agent still running under the same name
    keeps it.

    :param host: the agent's name (:func:`memory_pool`).
    :returns: True once deleted; False for a transport without a broker
        (``fake:``) or on a broker error, which is logged. An unreachable
        broker is tried :data:`QUEUE_DELETE_RETRY` more times, not for ever:
        the agent is on its way out.
    """
    pool = getattr(getattr(NOTIFICATION_TRANSPORT, "_driver", None), "_connection_pool", None)
    if pool is None:
        return False
    queue = memory_pool(host)
    try:
        # A connection of its own (the pooled ones are the notifier's),
        # made with a bounded retry, which the driver's own context for a
        # listening connection would not pass on.
        own = pool.create(driver_common.PURPOSE_LISTEN, retry=QUEUE_DELETE_RETRY)
        try:
            own.channel.queue_delete(queue=queue, if_unused=True)
        finally:
            own.close()
    except Exception as error:  # noqa: BLE001 - any broker error leaves the queue
        LOG.warning("Could not delete event queue %s: %s", queue, type(error).__name__)
        return False
    LOG.info("Deleted event queue %s: a stopped agent has nothing to purge", queue)
    return True


def get_notification_listener(endpoints: list[Any], pool: str,
                              conf: cfg.ConfigOpts | None = None, quiet: bool = False) -> Any:
    """Return a listener on every ``[events]`` exchange and topic.

    Its dispatcher is :class:`~agent.events.dispatcher.EventDispatcher`:
    a message that can never be handled is acknowledged and logged once,
    one whose endpoint asks for it is requeued, at most ``[events]
    max_redeliveries`` times. Events run on :func:`listener_executor`'s
    few threads, each acknowledged once its purge has committed.

    :param pool: listener pool; agents in one pool share the events, so
        each event is handled by one of them.
    :param quiet: leave reporting unreadable messages to the shared pool,
        which sees the same ones.
    :returns: the listener, not started, or None when ``[events]`` names
        no exchange or no topic.
    """
    assert NOTIFICATION_TRANSPORT is not None, "agent.rpc.init() was not called"
    conf = conf or CONF
    targets = event_targets(conf)
    if not targets:
        return None
    event_dispatcher = EventDispatcher(endpoints, conf.events.max_redeliveries, quiet=quiet)
    listener = notify_listener.NotificationServer(NOTIFICATION_TRANSPORT, targets,
                                                  event_dispatcher, allow_requeue=True, pool=pool)
    # As for the RPC server: start() builds the pool from this attribute.
    listener._executor_cls = listener_executor
    return listener


def get_event_listeners(host: str, shared_endpoints: list[Any], own_endpoints: list[Any],
                        conf: cfg.ConfigOpts | None = None) -> list[Any]:
    """Return the agent's two listeners on the ``[events]`` exchanges and topics.

    :param host: the agent's name; its own pool is named after it.
    :param shared_endpoints: endpoints of the pool every agent shares,
        where each event is handled once (database purges).
    :param own_endpoints: endpoints of this agent's own pool, where every
        agent gets every event (purges of its memory).
    :returns: the listeners, not started; none when ``[events]`` names no
        exchange or topic (logged as a warning).
    """
    conf = conf or CONF
    listeners = [listener for listener in (
        get_notification_listener(shared_endpoints, LISTENER_POOL, conf),
        get_notification_listener(own_endpoints, memory_pool(host), conf, quiet=True),
    ) if listener is not None]
    if listeners:
        LOG.info("Purging on events from exchanges %s, topics %s",
                 ",".join(conf.events.exchanges), ",".join(conf.events.topics))
    else:
        LOG.warning("[events] names no exchange or topic: deleted instances and "
                    "volumes will not be purged")
    return listeners
