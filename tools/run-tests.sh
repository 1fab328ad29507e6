#!/usr/bin/env bash
# Install custos with its test extras into .venv and run every test:
# unit tests (fake transport, SQLite) and functional tests (RabbitMQ,
# PostgreSQL and MariaDB on 127.0.0.1). Extra arguments go to pytest, so
# test paths narrow the run (setup.cfg makes tests/ the default). The
# run's wall time is printed last, whether it passed or not.
#
# Tests run in CUSTOS_TEST_WORKERS processes (default 3; 0 runs them in
# this one), a test module per process at a time so that the agents a
# module shares stay with it. Most functional tests wait on agent and CLI
# processes, so three workers keep two cores busy. Each worker has a
# RabbitMQ virtual host and databases of its own.
set -eu
source "$(dirname "$0")/venv.sh"
# The functional tests' own Keystone (tests/functional/keystone.py), installed
# once here rather than by the first test worker that needs it.
"$(dirname "$0")/keystone-venv.sh"
started=$(date +%s)
status=0
.venv/bin/python -m pytest -n "${CUSTOS_TEST_WORKERS:-3}" --dist loadfile "$@" || status=$?
elapsed=$(( $(date +%s) - started ))
printf 'test suite wall time: %dm %02ds (%d s)\n' $((elapsed / 60)) $((elapsed % 60)) "$elapsed"
exit "$status"
