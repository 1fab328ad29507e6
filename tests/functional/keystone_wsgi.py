"""The WSGI application of the functional tests' Keystone, for gunicorn.

Runs inside .keystone-venv, not custos' .venv. Keystone's configuration
loader parses ``sys.argv`` as its own command line, where it finds
gunicorn's options and refuses them, so the arguments are cleared before
it runs. The configuration file comes from ``OS_KEYSTONE_CONFIG_FILES``.
"""

import sys

from keystone.server import wsgi

sys.argv = sys.argv[:1]
application = wsgi.initialize_public_application()
