"""What the agent does about other services' events (SPEC §3.6)."""
