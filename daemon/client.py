"""A small synchronous client for the daemon's ingest API, for model pipelines written in Python.

    from alphawatch.daemon.client import AlphawatchClient

    with AlphawatchClient("http://127.0.0.1:9464", token) as aw:
        aw.push_predictions([{"model": "alpha7", "date": "2026-11-25", "asset": "2330", "score": 0.42}, ...])
        aw.push_returns([{"asset": "2330", "date": "2026-11-18", "horizon": 5, "return": 0.013}, ...])

Each call sends the rows in batches of ``batch_size`` (each batch is all or nothing on the daemon) and returns
the totals. A refused batch raises :class:`RefusedError` with the daemon's message and the bad rows (their
``index`` counts from the start of the rows given to the call).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from alphawatch.daemon.errors import AlphawatchError

__all__ = ["AlphawatchClient", "ClientError", "RefusedError"]


def answer_object(response: httpx.Response) -> dict[str, Any] | None:
    """The JSON object an alphawatch daemon answers with; ``None`` for anything else (another server's page)."""
    try:
        answer = response.json()
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def not_alphawatch(response: httpx.Response) -> str:
    return f"{response.url} did not answer like an alphawatch daemon (HTTP {response.status_code})"


class ClientError(AlphawatchError):
    """The daemon could not be reached, or answered something unexpected."""


class RefusedError(ClientError):
    """The daemon refused a batch; nothing of that batch was stored (earlier batches of the call were)."""

    def __init__(self, status: int, message: str, items: list[dict[str, Any]], accepted: int) -> None:
        self.status = status
        self.items = items
        self.accepted = accepted
        self.reason = f"refused ({status}): {message}"  # (without the rows, for those who list them)
        shown = "; ".join(f"row {i.get('index')}: {i.get('field')}: {i.get('message')}" for i in items[:5])
        super().__init__(f"refused ({status}): {message}" + (f" — {shown}" if shown else ""))


class AlphawatchClient:
    """``AlphawatchClient(url, token)``: push model data and samples; use it as a context manager or close it."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60.0, batch_size: int = 20_000,
                 transport: httpx.BaseTransport | None = None) -> None:  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.batch_size = batch_size
        # an idle connection is dropped after 2 s, before the daemon closes it (after 5 s): a request never goes
        # out on a connection the daemon is closing
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport,
                                  limits=httpx.Limits(keepalive_expiry=2.0))  # fmt: skip

    def __enter__(self) -> AlphawatchClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def push_predictions(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Rows of ``model, date, asset, score``."""
        return self._push("predictions", rows)

    def push_returns(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Rows of ``asset, date, horizon, return`` (the forward return from ``date``'s close)."""
        return self._push("returns", rows)

    def push_portfolio(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Rows of ``model, date, return`` and optionally ``positions: [{asset, weight}]``."""
        return self._push("portfolio", rows)

    def push_features(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Rows of ``model, date, asset, feature, value`` or ``model, date, asset, values: {name: value}``."""
        return self._push("features", rows)

    def push_samples(self, samples: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Plain samples ``{metric, labels, ts, value}`` (``POST /api/v1/samples``)."""
        return self._push("samples", samples)

    def push_body(self, kind: str, body: bytes, content_type: str) -> dict[str, Any]:
        """Send an already encoded body (CSV, NDJSON or JSON) as one batch."""
        return self._send(kind, body, content_type, 0)

    def _push(self, kind: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        totals = {"accepted": 0, "derived": 0}
        batch: list[Mapping[str, Any]] = []
        offset = 0
        for row in rows:
            batch.append(row)
            if len(batch) >= self.batch_size:
                self._add(totals, self._send_json(kind, batch, offset, totals["accepted"]))
                offset += len(batch)
                batch = []
        if batch:
            self._add(totals, self._send_json(kind, batch, offset, totals["accepted"]))
        return totals

    def _send_json(self, kind: str, rows: Sequence[Mapping[str, Any]], offset: int, accepted: int) -> dict[str, int]:
        import json

        body = json.dumps(list(rows), ensure_ascii=False, allow_nan=False, default=str).encode()
        return self._send(kind, body, "application/json", offset, accepted)

    def _send(self, kind: str, body: bytes, content_type: str, offset: int, accepted: int = 0) -> dict[str, Any]:
        try:
            response = self._http.post(f"/api/v1/{kind}", content=body, headers={"Content-Type": content_type})
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the daemon at {self._http.base_url}: {exc}") from exc
        answer = answer_object(response)
        if answer is None:
            raise ClientError(f"{not_alphawatch(response)}: {response.text[:200]}")
        if response.status_code != 200:
            listed = answer.get("items")
            listed = listed if isinstance(listed, list) else []
            items = [{**i, "index": i.get("index", 0) + offset} for i in listed if isinstance(i, dict)]
            raise RefusedError(response.status_code, str(answer.get("error", "")), items, accepted)
        out: dict[str, Any] = {"accepted": int(answer.get("accepted", 0)), "derived": int(answer.get("derived", 0))}
        if isinstance(answer.get("no_ic"), list):  # daily ICs left empty (too few assets matched): said
            out["no_ic"] = answer["no_ic"]
        return out

    @staticmethod
    def _add(totals: dict[str, int], answer: dict[str, int]) -> None:
        for key in totals:
            totals[key] += answer.get(key, 0)
