"""Alembic environment: runs migrations on the engine custos hands it."""

from alembic import context

from db import api, migration
from db.models import Base

config = context.config
engine = config.attributes.get("engine") or api.get_engine()

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      compare_type=migration.compare_type)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
