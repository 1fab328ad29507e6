"""Managed keys: the objects castellan callers (Nova, Cinder, Glance) keep in custos.

:mod:`agent.keys.kinds` says which object types, algorithms and sizes are
known and generates new key material; :mod:`agent.keys.store` keeps the
objects, sealed, within their owner's project.
"""
