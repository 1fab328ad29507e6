"""Volume drivers: ``base`` is what custos expects of one, ``iscsi_chap`` the reference."""
