#!/usr/bin/env bash
# Run two custos-agent processes on one database under a steady mix of
# every RPC method, Nova and Cinder events and a notification consumer,
# then print whether they stayed flat (README.rst, Soak). Not part of the
# test suite. Arguments go to benchmarks/soak.py (--help).
set -eu
source "$(dirname "$0")/venv.sh"
exec .venv/bin/python -m benchmarks.soak "$@"
