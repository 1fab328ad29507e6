"""Connections and driver initiator data (SPEC §3.1).

``backends`` loads a driver per enabled backend section, ``initiator_data``
reads and upserts the ``driver_initiator_data`` rows, ``updates`` checks the
initiator update a driver returns, and ``manager`` puts them together
around each driver call.
"""
