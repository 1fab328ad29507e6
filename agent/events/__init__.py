"""What the agent does about other services' events (SPEC §3.6).

:mod:`~agent.events.payloads` reads the resource a notification names,
:mod:`~agent.events.purge` forgets what the database kept for it,
:mod:`~agent.events.dispatcher` hands messages to the listener's endpoints
and decides which to drop, and :mod:`~agent.events.redelivery` counts how
often a requeued message came back.
"""
