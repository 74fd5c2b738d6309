"""HTTP routes for model data: ``POST /api/v1/{predictions,returns,portfolio,features}`` and the derived series.

Writes need the ingest token, obey ``daemon.max_body`` and are all or nothing (400 JSON naming each bad row).
Parsing runs in a worker thread (a large CSV must not freeze the loop); the rows and the ICs they make
computable are committed in one transaction, and only then do the derived samples reach the rules and the
response say ``{"accepted": n, "derived": k}``. Reads:

- ``GET /api/v1/models``: the models with data and their date ranges;
- ``GET /api/v1/models/{model}/ic?horizon=5&window=60``: daily rank IC with rolling mean, std, IR, hit rate;
- ``GET /api/v1/models/{model}/sharpe?window=60&periods_per_year=252``: portfolio returns and rolling Sharpe;
- ``GET /api/v1/models/{model}/drift``: the latest drift scores per feature written by ``drift`` rules.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alphawatch.daemon.errors import IngestError
from alphawatch.daemon.ingest import Batch
from alphawatch.daemon.modeldata import KINDS, parse_model_data
from alphawatch.daemon.modeldata_store import commit, ic_series, models, portfolio_series
from alphawatch.web.app import error, guarded, query_int
from alphawatch.web.body import BodyRefused, read_body

if TYPE_CHECKING:
    from alphawatch.daemon.calendar import Calendar
    from alphawatch.daemon.main import Daemon


class ModelDataApi:
    """The endpoints. Dates are checked against the configuration's default venue calendar (TWSE unless
    ``calendar.default_venue`` says otherwise), so a closure added to the config and reloaded applies at once."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def calendar(self) -> Calendar:
        return self.daemon.config.calendars.default

    async def push(self, kind: str, request: Request) -> Response:
        daemon = self.daemon
        limit = daemon.config.daemon.max_body
        try:
            body = await read_body(request, limit)
        except BodyRefused as exc:
            return error(exc.status, str(exc))
        now = daemon.clock.now()
        content_type = request.headers.get("content-type", "application/json")
        calendar = self.calendar()
        try:
            batch = await trio.to_thread.run_sync(parse_model_data, kind, body, content_type, calendar, now)
        except IngestError as exc:
            return error(exc.status, str(exc), items=[i.as_json() for i in exc.items])
        derived = await daemon.store.run(partial(commit, batch=batch, now=now))
        if derived.samples:
            await daemon.ingest(Batch(derived.samples))
        answer: dict[str, Any] = {"accepted": len(batch), "derived": derived.ics}
        if derived.no_ic:  # predictions and returns of a date that share too few assets: said, not hidden
            answer["no_ic"] = derived.no_ic[:20]
        return JSONResponse(answer)

    async def models(self, request: Request) -> Response:
        return JSONResponse({"models": await self.daemon.store.run(models)})

    async def ic(self, request: Request) -> Response:
        model = request.path_params["model"]
        horizon = query_int(_days(request.query_params.get("horizon", "1")), 1, 1, 260)
        window = query_int(_days(request.query_params.get("window")), 60, 2, 2000)
        if horizon is None or window is None:
            return error(400, "horizon is 1–260 trading days and window 2–2000")
        rows = await self.daemon.store.run(lambda db: ic_series(db, model, horizon))
        if not rows:
            return error(404, f"no IC for model {model!r} at horizon {horizon}d")
        from alphawatch.rules.stats import rolling_ic

        values = [math.nan if ic is None else ic for _, ic, _ in rows]
        rolling = rolling_ic(values, window, min_periods=max(2, window // 2))
        series = [
            {"date": d, "ic": ic, "assets": n, "mean": _num(rolling.mean[i]), "std": _num(rolling.std[i]),
             "ir": _num(rolling.ir[i]), "hit_rate": _num(rolling.hit_rate[i])}
            for i, (d, ic, n) in enumerate(rows)
        ]  # fmt: skip
        return JSONResponse({"model": model, "horizon": f"{horizon}d", "window": window, "series": series})

    async def sharpe(self, request: Request) -> Response:
        model = request.path_params["model"]
        window = query_int(_days(request.query_params.get("window")), 60, 2, 2000)
        periods = query_int(_days(request.query_params.get("periods_per_year")), 252, 1, 10_000)
        if window is None or periods is None:
            return error(400, "window is 2–2000 and periods_per_year 1–10000")
        rows = await self.daemon.store.run(lambda db: portfolio_series(db, model))
        if not rows:
            return error(404, f"no portfolio returns for model {model!r}")
        from alphawatch.rules.stats import rolling_sharpe

        sharpe = rolling_sharpe([r for _, r in rows], window, periods_per_year=periods, min_periods=window // 2)
        series = [{"date": d, "return": r, "sharpe": _num(sharpe[i])} for i, (d, r) in enumerate(rows)]
        return JSONResponse({"model": model, "window": window, "periods_per_year": periods, "series": series})

    async def drift(self, request: Request) -> Response:
        model = request.path_params["model"]
        rows = await self.daemon.store.query(
            "SELECT source, date, feature, method, score, p_value FROM md_drift_scores s WHERE model = ?"
            " AND date = (SELECT max(date) FROM md_drift_scores WHERE model = s.model AND source = s.source)"
            " ORDER BY source, feature, method",
            [model],
        )
        return JSONResponse({"model": model, "scores": rows})


def routes(daemon: Daemon) -> list[Route]:
    api = ModelDataApi(daemon)
    out = [
        Route(f"/api/v1/{kind}", guarded(daemon, "ingest", partial(api.push, kind)), methods=["POST"]) for kind in KINDS
    ]
    out.append(Route("/api/v1/models", api.models))
    out += [Route(f"/api/v1/models/{{model}}/{name}", getattr(api, name)) for name in ("ic", "sharpe", "drift")]
    return out


def _num(value: Any) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _days(raw: str | None) -> str | None:
    """A count of (trading) days, with or without its ``d``: ``60`` or ``60d``."""
    return None if raw is None else raw.removesuffix("d")
