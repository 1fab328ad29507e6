"""A RabbitMQ virtual host of the benchmark's own, made with rabbitmqctl."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                          timeout=60)


def rabbitmq_version() -> str:
    """The broker's version as rabbitmqctl reports it, or ``unknown``."""
    if not shutil.which("rabbitmqctl"):
        return "unknown"
    result = _rabbitmqctl("version")
    return result.stdout.strip() or "unknown"


@contextlib.contextmanager
def private_vhost(base_url: str) -> Iterator[str]:
    """Yield the transport URL of a fresh virtual host, deleted afterwards.

    Both the baseline and the agent use it, so they share one broker and
    nothing else runs on their queues.

    :param base_url: the broker's URL, e.g. ``rabbit://guest:guest@127.0.0.1:5672/``.
    :raises RuntimeError: when rabbitmqctl cannot create the virtual host.
    """
    name = f"custos-bench-{uuid.uuid4().hex[:12]}"
    if not shutil.which("rabbitmqctl"):
        raise RuntimeError("rabbitmqctl is needed to create the benchmark's virtual host")
    for args in (("add_vhost", name), ("set_permissions", "-p", name, "guest", ".*", ".*", ".*")):
        result = _rabbitmqctl(*args)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}")
    try:
        yield base_url.rstrip("/") + "/" + name
    finally:
        _rabbitmqctl("delete_vhost", name)
