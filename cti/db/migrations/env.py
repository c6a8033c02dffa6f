"""Alembic environment. Migrations run on a connection handed in by cti.db.migrate."""

from alembic import context

import cti.clients.models  # noqa: F401 (the directory's tables live on the same Base)
from cti.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `cti db upgrade`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
