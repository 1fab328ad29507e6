#!/usr/bin/env bash
# Install custos into .venv, prepare the SQLite database and master key
# under .state/, and run custos-agent with etc/custos/custos.conf.
set -eu
source "$(dirname "$0")/venv.sh"
CONFIG=${CUSTOS_CONFIG:-etc/custos/custos.conf}
.venv/bin/custos-manage --config-file "$CONFIG" db sync >/dev/null
if [ ! -f .state/master.key ]; then
    .venv/bin/custos-manage --config-file "$CONFIG" keys init >/dev/null
fi
if ! .venv/bin/python - "$CONFIG" <<'PY'
import socket, sys
from oslo_config import cfg
import oslo_messaging as messaging
conf = cfg.ConfigOpts()
conf([], default_config_files=[sys.argv[1]])
for host in messaging.TransportURL.parse(conf).hosts:
    try:
        socket.create_connection((host.hostname or "127.0.0.1", host.port or 5672), 3).close()
        sys.exit(0)
    except OSError:
        pass
sys.exit(1)
PY
then
    echo "No message broker answers at the transport_url of $CONFIG." >&2
    echo "Start RabbitMQ (for example: rabbitmq-server -detached) or point" >&2
    echo "transport_url in $CONFIG at a running broker, then run this again." >&2
    exit 1
fi
echo "custos-agent is starting; ask it with: .venv/bin/custos --config-file $CONFIG health"
exec .venv/bin/custos-agent --config-file "$CONFIG"
