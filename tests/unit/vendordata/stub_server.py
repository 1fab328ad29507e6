"""Former home of the stub HTTP server, kept for imports: see :mod:`tests.stub_server`."""

from tests.stub_server import *  # noqa: F401,F403
