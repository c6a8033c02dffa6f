"""Storage: SQLAlchemy 2 (asyncio) models, engine set-up and Alembic migrations."""
