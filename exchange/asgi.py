"""The ASGI application for ``uvicorn exchange.asgi:app`` (settings from EXCHANGE_*)."""

from exchange.app import create_app

app = create_app()
