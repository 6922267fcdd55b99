"""The IG web console (issue 7): server-rendered pages at ``/ig/``.

The lead mounts :data:`exchange.console.routes.router` with ``app.include_router``.
"""
