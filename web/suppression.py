"""HTTP routes for silences, acknowledgements and the suppression record ("why did I not get this alert").

- ``POST /api/v1/silences`` (admin): ``{matchers, starts_at?, ends_at | duration, created_by, comment}`` → 201;
- ``GET /api/v1/silences?state=pending,active,expired&limit=``, ``GET /api/v1/silences/{id}``;
- ``DELETE /api/v1/silences/{id}`` (admin): expire now (409 when already expired);
- ``POST /api/v1/alerts/{fingerprint}/ack`` (admin): ``{by, comment}`` on a firing alert (404 unknown,
  409 not firing); ``DELETE`` the same path to remove the ack;
- ``GET /api/v1/alerts/{fingerprint}/suppressions?limit=``: what suppresses the alert now, its ack, and every
  recorded suppressed notification; ``GET /api/v1/suppressions?since=&kind=&limit=``: the record of all alerts.

Bad input gets a 4xx JSON ``{"error": ..., "fields": [{"field", "message"}, ...]}`` and stores nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alphawatch.daemon import jsonbody
from alphawatch.daemon import silences as silence_store
from alphawatch.daemon.acks import NotFiring, UnknownAlert, check_ack
from alphawatch.daemon.jsonbody import BadJson
from alphawatch.daemon.silences import EXPIRED, SilenceError, parse_instant, parse_silence
from alphawatch.daemon.suppression import KINDS, Reason, Suppressions, suppression_log
from alphawatch.daemon.wire import ascii_float
from alphawatch.web.app import Handler, error, guarded, query_limit, query_states
from alphawatch.web.body import BodyRefused, read_body

if TYPE_CHECKING:
    from alphawatch.daemon.main import Daemon

SILENCE_STATES = ("pending", "active", "expired")


class SuppressionApi:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def suppressions(self) -> Suppressions:
        """The daemon's :class:`Suppressions` (loaded before the web server starts)."""
        assert self.daemon.suppressions is not None, "the daemon loads its suppressions before serving"
        return self.daemon.suppressions

    async def _json(self, request: Request) -> tuple[Any, Response | None]:
        limit = self.daemon.config.daemon.max_body
        try:
            body = await read_body(request, limit)
        except BodyRefused as exc:
            return None, error(exc.status, str(exc))
        try:
            return jsonbody.loads(body, keys_once=True), None
        except BadJson as exc:
            return None, error(400, f"body refused: {exc}", fields=[{"field": "", "message": str(exc)}])
        except ValueError as exc:
            return None, error(400, f"the body is not JSON: {exc}", fields=[{"field": "", "message": "not JSON"}])

    # silences ------------------------------------------------------------------------------------------------
    async def create_silence(self, request: Request) -> Response:
        body, refused = await self._json(request)
        if refused is not None:
            return refused
        now = self.daemon.clock.now()
        try:
            silence = parse_silence(body, now)
        except SilenceError as exc:
            return error(400, f"silence refused: {exc}", fields=[f.as_json() for f in exc.fields])
        await (await self.suppressions()).add_silence(silence)
        self.daemon.broadcaster.publish({"type": "silence", "event": "created", "id": silence.id})
        return JSONResponse({"id": silence.id, "silence": silence.as_json(now)}, status_code=201)

    async def list_silences(self, request: Request) -> Response:
        raw = request.query_params.get("state", "pending,active")
        states = query_states(raw, SILENCE_STATES)
        if states is None:
            return error(400, f"state is a comma-separated list of {', '.join(SILENCE_STATES)}")
        limit = query_limit(request.query_params.get("limit"))
        if limit is None:
            return error(400, "limit is a whole number from 1 to 10000")
        now = self.daemon.clock.now()
        ending_after = None if EXPIRED in states else now
        found = await self.daemon.store.run(lambda db: silence_store.load(db, ending_after=ending_after))
        rows = [s.as_json(now) for s in found if s.state(now) in states][:limit]
        return JSONResponse({"silences": rows})

    async def get_silence(self, request: Request) -> Response:
        silence_id = request.path_params["id"]
        found = await self.daemon.store.run(lambda db: silence_store.get(db, silence_id))
        if found is None:
            return error(404, "no such silence")
        return JSONResponse({"silence": found.as_json(self.daemon.clock.now())})

    async def expire_silence(self, request: Request) -> Response:
        now = self.daemon.clock.now()
        silence, live = await (await self.suppressions()).expire_silence(request.path_params["id"], now)
        if silence is None:
            return error(404, "no such silence")
        if not live:
            return error(409, "the silence has already expired", silence=silence.as_json(now))
        self.daemon.broadcaster.publish({"type": "silence", "event": "expired", "id": silence.id})
        return JSONResponse({"silence": silence.as_json(now)})

    # acknowledgements ----------------------------------------------------------------------------------------
    async def ack(self, request: Request) -> Response:
        body, refused = await self._json(request)
        if refused is not None:
            return refused
        fields, errors = check_ack(body)
        if errors:
            return error(400, "acknowledgement refused: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                         fields=errors)  # fmt: skip
        fingerprint = request.path_params["fingerprint"]
        now = self.daemon.clock.now()
        try:
            ack = await (await self.suppressions()).acknowledge(fingerprint, fields["by"], fields["comment"], now)
        except UnknownAlert:
            return error(404, "no such alert")
        except NotFiring as exc:
            return error(409, str(exc), state=exc.state)
        self.daemon.broadcaster.publish({"type": "ack", "event": "created", "fingerprint": fingerprint})
        return JSONResponse({"ack": ack.as_json()}, status_code=201)

    async def unack(self, request: Request) -> Response:
        fingerprint = request.path_params["fingerprint"]
        if not await (await self.suppressions()).unacknowledge(fingerprint):
            return error(404, "the alert is not acknowledged")
        self.daemon.broadcaster.publish({"type": "ack", "event": "removed", "fingerprint": fingerprint})
        return JSONResponse({"removed": fingerprint})

    def _rule_muted(self, name: str, now: float) -> list[Reason]:
        """The rule's own ``muted_during`` windows on now: its firing alert reaches no route until they end."""
        rule = next((r for r in self.daemon.config.rules if r.name == name), None)
        if rule is None or rule.context is None:
            return []
        windows = rule.context.windows
        return [
            Reason(
                "muted_window",
                window,
                f"rule {name} is muted during {window} (muted_during): no channel hears "
                "of its alerts until the window ends",
            )
            for window in rule.muted_during
            if windows[window].active(now)
        ]

    # the record ----------------------------------------------------------------------------------------------
    async def alert_suppressions(self, request: Request) -> Response:
        fingerprint = request.path_params["fingerprint"]
        limit = query_limit(request.query_params.get("limit"))
        if limit is None:
            return error(400, "limit is a whole number from 1 to 10000")
        store = self.daemon.store
        alert = await store.query(
            "SELECT rule, labels, state, active_at, last_notified_at FROM alerts WHERE fingerprint = ?", [fingerprint]
        )
        rows = await suppression_log(store, fingerprint=fingerprint, limit=limit)
        if not alert and not rows:
            return error(404, "no such alert, and nothing recorded for it")
        suppressions = await self.suppressions()
        now = self.daemon.clock.now()
        current: list[dict[str, str]] = []
        ack = None  # the acknowledgement of the episode now firing: one of an earlier episode no longer holds
        state = alert[0]["state"] if alert else None
        dispatcher = self.daemon.engine.dispatcher
        # a resolution not told yet is news a silence or an inhibition may be holding back as well
        untold = any(m.sent != m.status for g in dispatcher.groups_of(fingerprint) if (m := g.get(fingerprint)))
        if alert and (state != "resolved" or untold):
            firing = await store.query("SELECT fingerprint, labels FROM alerts WHERE state = 'firing'")
            others = [(r["fingerprint"], json.loads(r["labels"])) for r in firing]
            reason = suppressions.reason(fingerprint, json.loads(alert[0]["labels"]), now, others)
            if reason is not None:
                current.append(reason.as_json())
            if state != "resolved":
                ack = suppressions.acknowledged(fingerprint, alert[0]["active_at"])
                if ack is not None:
                    current.append(suppressions.ack_reason(ack).as_json())
            current += [reason.as_json() for reason in dispatcher.holding(fingerprint, now)]
            if state == "firing" and alert[0]["last_notified_at"] is None:
                current += [r.as_json() for r in self._rule_muted(alert[0]["rule"], now)]
        return JSONResponse({
            "fingerprint": fingerprint,
            "state": state,
            "now": current,
            "ack": ack.as_json() if ack is not None else None,
            "suppressions": rows,
        })  # fmt: skip

    async def all_suppressions(self, request: Request) -> Response:
        params = request.query_params
        limit = query_limit(params.get("limit"))
        if limit is None:
            return error(400, "limit is a whole number from 1 to 10000")
        since = None
        if params.get("since") is not None:
            try:
                since = parse_instant(_number_or_text(params["since"]))
            except ValueError as exc:
                return error(400, f"since: {exc}")
        kind = params.get("kind")
        if kind is not None and kind not in KINDS:
            return error(400, f"kind is one of {', '.join(KINDS)}")
        rows = await suppression_log(self.daemon.store, since=since, kind=kind, limit=limit)
        return JSONResponse({"suppressions": rows})


def _number_or_text(raw: str) -> float | str:
    """Epoch seconds written in ASCII digits, or the text as it is (an RFC 3339 instant, or a mistake)."""
    try:
        return ascii_float(raw)
    except ValueError:
        return raw


def routes(daemon: Daemon) -> list[Route]:
    """The routes of this module, mounted through ``web.app.PLUGGED_ROUTES``."""
    api = SuppressionApi(daemon)

    def admin(handler: Handler) -> Handler:
        return guarded(daemon, "admin", handler)

    return [
        Route("/api/v1/silences", admin(api.create_silence), methods=["POST"]),
        Route("/api/v1/silences", api.list_silences, methods=["GET"]),
        Route("/api/v1/silences/{id}", api.get_silence, methods=["GET"]),
        Route("/api/v1/silences/{id}", admin(api.expire_silence), methods=["DELETE"]),
        Route("/api/v1/alerts/{fingerprint}/ack", admin(api.ack), methods=["POST"]),
        Route("/api/v1/alerts/{fingerprint}/ack", admin(api.unack), methods=["DELETE"]),
        Route("/api/v1/alerts/{fingerprint}/suppressions", api.alert_suppressions, methods=["GET"]),
        Route("/api/v1/suppressions", api.all_suppressions, methods=["GET"]),
    ]
