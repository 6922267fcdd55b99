"""The server under test, with the in-run baseline route.

``/baseline/{Type}/{id}`` is the same uvicorn + FastAPI stack answering with stored
bytes held in memory: no authorisation, consent, audit or query. Every full-stack
figure is reported as a ratio to it, which stays meaningful on a noisy machine.

Run as ``python -m bench.serve --port P`` with EXCHANGE_* settings in the environment.
"""

from __future__ import annotations

import argparse

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from exchange.app import create_app
from exchange.db.tables import resource_current as rc
from exchange.db.tables import resource_version as rv
from exchange.settings import Settings


def bench_app(settings: Settings, baseline_types: tuple[str, ...] = ("Patient",)):  # noqa: ANN201
    app = create_app(settings)
    engine = app.state.engine
    cache: dict[str, bytes] = {}
    with engine.connect() as conn:
        q = select(rc.c.res_type, rc.c.res_id, rv.c.content).select_from(rc.join(rv, rv.c.seq == rc.c.seq)).where(
            rc.c.res_type.in_(baseline_types), rc.c.deleted.is_(False))
        for t, i, content in conn.execute(q):
            cache[f"{t}/{i}"] = bytes(content)

    async def baseline(request: Request) -> Response:
        key = f"{request.path_params['rtype']}/{request.path_params['rid']}"
        body = cache.get(key)
        if body is None:
            return Response(b'{"resourceType":"OperationOutcome"}', status_code=404, media_type="application/fhir+json")
        return Response(body, media_type="application/fhir+json")

    app.router.routes.insert(0, __import__("starlette.routing", fromlist=["Route"]).Route(
        "/baseline/{rtype}/{rid}", baseline, methods=["GET"]))
    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    app = bench_app(Settings.from_env())
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools")


if __name__ == "__main__":
    main()
