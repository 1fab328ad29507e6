"""A three-node RabbitMQ cluster of a test module's own, on loopback.

Three private nodes (:class:`tests.functional.private_services.PrivateRabbit`:
own node names, AMQP and distribution ports, data and log directories in a
temporary directory, the system's Erlang cookie) are started side by side
and joined into one cluster with ``rabbitmqctl join_cluster``. The
machine's own RabbitMQ on 5672 is never touched. Tests may SIGKILL a node
(:meth:`ClusterNode.kill`); the fixture stops what is left and removes
every file afterwards.

Import the fixture into a test module to use it::

    from tests.functional.rabbit_cluster import rabbit_cluster  # noqa: F401
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.functional.private_services import (RABBIT_LIBEXEC, PrivateRabbit, _user_exists,
                                               unavailable)

SIZE = 3
# One scheduler per node, left unbound: the test nodes share a few cores
# with the machine's own node, and bound, every node's single scheduler
# would sit on the same first core.
ERL_ARGS = "+S 1:1 +stbt u"


class ClusterNode(PrivateRabbit):
    """One node of :class:`RabbitCluster`; it may be killed outright."""

    def pid(self) -> int | None:
        """The node's Erlang VM process id, once it has started."""
        try:
            return int((self.base / "rabbit.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def alive(self) -> bool:
        """True while the node's Erlang VM runs."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM and wait until its AMQP port is closed."""
        pid = self.pid()
        assert pid is not None, f"{self.node} has no pid file"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.wait_listening(False)

    def wait_started(self) -> None:
        """Wait until the node accepts AMQP connections, the last step of its boot.

        Cheaper than ``rabbitmqctl wait``: each rabbitmqctl run starts an
        Erlang VM of its own, about two seconds on a busy machine.
        """
        try:
            self.wait_listening(True, timeout=120)
        except RuntimeError as error:
            raise RuntimeError(f"{self.node} did not start: {error}\n{self.log()}") from None

    def join(self, seed: "ClusterNode", attempts: int = 3) -> None:
        """Make this running node a member of ``seed``'s cluster.

        Two nodes joining at once now and then crash the joiner's mnesia
        as its application starts; the node is then reset and joins
        again, up to ``attempts`` times.
        """
        self._check("stop_app")
        for attempt in range(1, attempts + 1):
            joined = self.ctl("join_cluster", seed.node)
            started = self.ctl("start_app") if joined.returncode == 0 else joined
            if started.returncode == 0:
                break
            if attempt == attempts:
                raise RuntimeError(f"{self.node} could not join {seed.node}: "
                                   f"{started.stdout}{started.stderr}\n{self.log()}")
            self.ctl("stop_app")
            self.ctl("reset")
            time.sleep(attempt)
        self.wait_listening(True)

    def stop(self) -> None:
        """Stop the node (SIGKILL if it does not stop) and remove its files."""
        try:
            if self.alive() or self.pid() is None:
                self.ctl("stop", timeout=60)
        finally:
            if self.alive():
                self.kill()
            shutil.rmtree(self.base, ignore_errors=True)


class RabbitCluster:
    """Three :class:`ClusterNode` joined into one cluster by :meth:`start`.

    :ivar nodes: the nodes; the first is the one the others joined.
    :ivar started_in: seconds :meth:`start` took.
    """

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.nodes = [ClusterNode(f"custos-rmq-{i}-{suffix}") for i in range(1, SIZE + 1)]
        self.started_in = 0.0

    @property
    def url(self) -> str:
        """Transport URL naming every node, default virtual host."""
        hosts = ",".join(f"guest:guest@127.0.0.1:{node.port}" for node in self.nodes)
        return f"rabbit://{hosts}/"

    def start(self) -> None:
        """Start the three nodes at once, then join the second and third to the first.

        Both join at the same time: RabbitMQ serialises the membership
        change itself, and each join restarts the joining node's
        application, the slowest step after the first boot.
        """
        began = time.monotonic()
        for node in self.nodes:
            node.launch(ERL_ARGS)
        with ThreadPoolExecutor(SIZE) as pool:
            list(pool.map(ClusterNode.wait_started, self.nodes))
            seed = self.nodes[0]
            list(pool.map(lambda node: node.join(seed), self.nodes[1:]))
        running = self.running_nodes()
        if running != {node.node for node in self.nodes}:
            raise RuntimeError(f"cluster formed with {running} only")
        self.started_in = time.monotonic() - began

    def running_nodes(self) -> set[str]:
        """Names of the cluster's running nodes, as a surviving node sees them."""
        node = self.any_alive()
        result = node.ctl("eval", "rabbit_nodes:all_running().")
        names = result.stdout.strip().strip("[]").replace("'", "")
        return {name.strip() for name in names.split(",") if name.strip()}

    def any_alive(self) -> ClusterNode:
        """A node whose Erlang VM runs."""
        for node in self.nodes:
            if node.alive():
                return node
        raise RuntimeError("no node of the cluster is running")

    def node_named(self, name: str) -> ClusterNode:
        """The node whose Erlang node name is ``name``."""
        for node in self.nodes:
            if node.node == name:
                return node
        raise KeyError(name)

    def queues(self) -> dict[str, tuple[str, str]]:
        """``{queue: (type, leader node)}`` of the default virtual host.

        The leader of a classic queue is the node that holds it.
        """
        result = self.any_alive().ctl("list_queues", "--no-table-headers", "name", "type",
                                      "leader")
        if result.returncode != 0:
            raise RuntimeError(f"list_queues failed: {result.stdout}{result.stderr}")
        found = {}
        for line in result.stdout.splitlines():
            fields = line.split("\t")
            if len(fields) == 3:
                found[fields[0]] = (fields[1], fields[2])
        return found

    def leader_of(self, queue: str) -> ClusterNode:
        """The node leading the quorum queue ``queue`` right now."""
        _, leader = self.queues()[queue]
        return self.node_named(leader)

    def stop(self) -> None:
        """Stop every node and remove their files."""
        with ThreadPoolExecutor(SIZE) as pool:
            list(pool.map(ClusterNode.stop, self.nodes))


def _rabbitmq_installed() -> bool:
    return bool(shutil.which("rabbitmqctl") and (RABBIT_LIBEXEC / "rabbitmq-server").exists()
                and shutil.which("runuser") and _user_exists("rabbitmq"))


@pytest.fixture(scope="module")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    """A three-node RabbitMQ cluster of this test module's own."""
    if not _rabbitmq_installed():
        unavailable("a RabbitMQ cluster needs rabbitmq-server, rabbitmqctl and runuser")
    cluster = RabbitCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
