"""Benchmarks that measure SPEC §5's figures; not run by the test command."""
