#!/usr/bin/env bash
# Measure custos-agent against a no-op oslo.messaging server on the local
# RabbitMQ (SPEC §5) and write the figures into docs/benchmarks.rst.
# Not part of the test suite. Arguments go to benchmarks/run.py (--help).
set -eu
source "$(dirname "$0")/venv.sh"
exec .venv/bin/python -m benchmarks.run "$@"
