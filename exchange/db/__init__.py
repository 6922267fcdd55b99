"""Database layer: the shared SQLAlchemy metadata, engines and sessions."""
