"""FastAPI glue: the only place that knows about HTTP framework types."""
