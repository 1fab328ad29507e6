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
if ! .venv/bin/python -m agent.cmd.probe --config-file "$CONFIG"; then
    echo "No message broker answers at the transport_url of $CONFIG." >&2
    echo "Start RabbitMQ (for example: rabbitmq-server -detached) or point" >&2
    echo "transport_url in $CONFIG at a running broker, then run this again." >&2
    exit 1
fi
echo "custos-agent is starting; ask it with: .venv/bin/custos --config-file $CONFIG health"
exec .venv/bin/custos-agent --config-file "$CONFIG"
