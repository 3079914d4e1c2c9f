"""Persistence: SQLAlchemy models, engine and sessions, migrations. Knows nothing of examdesk."""
