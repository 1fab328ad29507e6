"""Measurements of custos against a real agent (SPEC §5); run each module with -m."""
