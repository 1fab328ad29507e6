#!/usr/bin/env bash
# Install custos with its test extras into .venv and run every test:
# unit tests (fake transport, SQLite) and functional tests (RabbitMQ,
# PostgreSQL and MariaDB on 127.0.0.1). Extra arguments go to pytest, so
# test paths narrow the run (setup.cfg makes tests/ the default).
set -eu
source "$(dirname "$0")/venv.sh"
exec .venv/bin/python -m pytest "$@"
