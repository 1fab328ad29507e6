"""Benchmarks of custos-agent against a no-op oslo.messaging server (SPEC §5).

Run them with ``./tools/run-benchmarks.sh``; they are not part of the test
suite. :mod:`benchmarks.run` is the runner, :mod:`benchmarks.noop_server`
the baseline it compares with.
"""
