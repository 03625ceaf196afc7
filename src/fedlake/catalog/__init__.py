"""The catalogue: SQLAlchemy 2 models, engine set-up, unit of work, Alembic migrations."""
