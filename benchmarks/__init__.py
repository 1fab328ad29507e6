"""Benchmarks that measure SPEC §5's figures; not run by the test command.

Run them with ``./tools/run-benchmarks.sh``: :mod:`benchmarks.run` is the
runner, :mod:`benchmarks.noop_server` the baseline it compares with.
"""
