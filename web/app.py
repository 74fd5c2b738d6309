"""The HTTP surface: ingest, the JSON API, ``/health``, ``/metrics``, live events and the status page.

Write endpoints need a bearer token (compared in constant time); errors are JSON ``{"error": ..., ...}`` with a
4xx status and store nothing.
"""

from __future__ import annotations

import hmac
import importlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from alphawatch.daemon.errors import IngestError, StoreError
from alphawatch.daemon.ingest import parse_batch
from alphawatch.daemon.logs import Quieter
from alphawatch.daemon.store import OUTBOX_STATES, is_refusal
from alphawatch.web.body import BodyRefused, read_body
from alphawatch.web.i18n import page_language
from alphawatch.web.metrics import render_metrics
from alphawatch.web.page import page_headers, render_page

log = logging.getLogger("alphawatch.web")

if TYPE_CHECKING:
    from alphawatch.daemon.main import Daemon

ALERT_STATES = ("pending", "firing", "resolved")


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def authorized(request: Request, token: str | None) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if not token or scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


Handler = Callable[[Request], Awaitable[Response]]


def guarded(daemon: Daemon, which: str, handler: Handler) -> Handler:
    """``handler`` behind the ``ingest`` or ``admin`` token: 401 JSON without it."""

    async def endpoint(request: Request) -> Response:
        token = daemon.ingest_token if which == "ingest" else daemon.admin_token
        if not authorized(request, token):
            return error(401, f"a valid {which} token is required (Authorization: Bearer …)")
        return await handler(request)

    return endpoint


# Route sets of other modules, mounted when present: (module, function(daemon) -> list[Route]).
PLUGGED_ROUTES = (("alphawatch.web.modeldata", "routes"), ("alphawatch.web.suppression", "routes"))


def create_app(daemon: Daemon) -> Starlette:
    async def ingest(request: Request) -> Response:
        try:
            body = await read_body(request, daemon.config.daemon.max_body)
        except BodyRefused as exc:
            return error(exc.status, str(exc))
        with daemon.engine.ingesting():  # from the body read (a slow upload holds no rule back) to the answer
            try:
                batch = parse_batch(body, daemon.clock.now(), daemon.config.daemon.max_label_bytes)
            except IngestError as exc:
                return error(exc.status, str(exc), items=[i.as_json() for i in exc.items])
            await daemon.ingest(batch)
            return JSONResponse({"accepted": len(batch.samples)})

    async def reload(request: Request) -> Response:
        result = await daemon.reload("api")
        status = result.pop("http_status", 200 if result["ok"] else 400)  # 503: the state file refused it
        return JSONResponse(result, status_code=status)

    async def health(request: Request) -> Response:
        report = await daemon.health()
        return JSONResponse(report, status_code=200 if report["status"] != "down" else 503)

    async def alerts(request: Request) -> Response:
        states = query_states(request.query_params.get("state", "pending,firing"), ALERT_STATES)
        if states is None:
            return error(400, f"state is a comma-separated list of {', '.join(ALERT_STATES)}")
        limit = query_limit(request.query_params.get("limit"))
        if limit is None:
            return error(400, "limit is a whole number from 1 to 10000")
        rows = await daemon.alerts(states, request.query_params.get("rule"), limit)
        return JSONResponse({"alerts": rows})

    async def alert(request: Request) -> Response:
        found = await daemon.alert(request.path_params["fingerprint"])
        return JSONResponse(found) if found else error(404, "no such alert")

    async def rules(request: Request) -> Response:
        return JSONResponse({"rules": await daemon.rules()})

    async def notifications(request: Request) -> Response:
        states = query_states(request.query_params.get("state", "pending,dead"), OUTBOX_STATES)
        if states is None:
            return error(400, f"state is a comma-separated list of {', '.join(OUTBOX_STATES)}")
        limit = query_limit(request.query_params.get("limit"))
        if limit is None:
            return error(400, "limit is a whole number from 1 to 10000")
        return JSONResponse({"notifications": await daemon.notifications(states, limit)})

    async def status(request: Request) -> Response:
        return JSONResponse(await daemon.status())

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            async with daemon.broadcaster.subscribe() as receive:
                yield b"retry: 2000\n\n"
                while True:
                    with trio.move_on_after(15) as idle:
                        try:
                            event = await receive.receive()
                        except trio.EndOfChannel:
                            return
                    if idle.cancelled_caught:
                        yield b": keep-alive\n\n"
                        continue
                    yield f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )

    async def metrics(request: Request) -> Response:
        text = render_metrics(await daemon.metrics())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def page(request: Request) -> Response:
        language = page_language(request.query_params.get("lang"), daemon.config.daemon.language)
        return HTMLResponse(render_page(language), headers=page_headers())

    async def schema(request: Request) -> Response:
        from alphawatch.daemon.config import full_schema

        return JSONResponse(full_schema())

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(404, "not found")

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return error(405, "method not allowed")

    async def store_refused(request: Request, exc: Exception) -> Response:
        """The state file refused the work (a full disk, an I/O error): nothing of the request was stored. Any
        other database error is a fault of ours: a JSON 500."""
        failing = f"{type(exc).__name__}: {exc}"
        refused = isinstance(exc, StoreError) or is_refusal(exc)
        unlogged = quiet.allow("refused" if refused else "fault", request.url.path)
        if unlogged is not None:  # (a full disk refuses every request: a line a minute)
            log.error("the state file refused a request" if refused else "a request failed on the database",
                      exc_info=None if refused else exc,
                      extra={"method": request.method, "path": request.url.path, "error": failing,
                             "like_it_unlogged": unlogged})  # fmt: skip
        if not refused:
            return error(500, "internal error: the database failed on this request (the log has it)")
        return error(503, f"the state file cannot be written now ({failing}); nothing of this request was stored")

    quiet = Quieter(60.0)
    routes = [
        Route("/", page),
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/schema.json", schema),
        Route("/-/reload", guarded(daemon, "admin", reload), methods=["POST"]),
        Route("/api/v1/samples", guarded(daemon, "ingest", ingest), methods=["POST"]),
        Route("/api/v1/alerts", alerts),
        Route("/api/v1/alerts/{fingerprint}", alert),
        Route("/api/v1/rules", rules),
        Route("/api/v1/notifications", notifications),
        Route("/api/v1/status", status),
        Route("/api/v1/events", events),
    ]
    for module_name, function in PLUGGED_ROUTES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        routes += getattr(module, function)(daemon)
    return Starlette(
        routes=routes,
        exception_handlers={
            404: not_found, 405: method_not_allowed, sqlite3.DatabaseError: store_refused, StoreError: store_refused,
        },
    )  # fmt: skip


def query_states(raw: str, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    """A ``state=a,b`` query parameter: its states, or ``None`` when it names one outside ``allowed``."""
    states = tuple(s.strip() for s in raw.split(",") if s.strip())
    return states if states and all(s in allowed for s in states) else None


def query_limit(raw: str | None) -> int | None:
    """A ``limit`` query parameter: 1000 when absent, ``None`` when not a whole number from 1 to 10000."""
    return query_int(raw, 1000, 1, 10_000)


def query_int(raw: str | None, default: int, low: int, high: int) -> int | None:
    """A whole-number query parameter: ``default`` when absent, ``None`` unless ASCII digits from ``low`` to
    ``high`` (``str.isdigit`` alone also takes "²" and "١", and ``int`` refuses more than 4300 digits)."""
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        return None
    value = int(raw)
    return value if low <= value <= high else None
