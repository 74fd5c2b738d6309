"""Validation of the data models send: predictions, realized returns, portfolio returns and features.

A request carries rows of one kind, as a JSON array (or ``{"rows": [...]}``), NDJSON (one object a line) or CSV
with a header. Validation is all or nothing, like sample ingest: every bad row is named in the
:class:`~alphawatch.daemon.errors.IngestError` and nothing is stored. Dates are Taiwan trading dates
(``YYYY-MM-DD``, Asia/Taipei); a date the calendar does not trade on, or one in the future, is refused.

Row shapes (see docs/modeldata.md):

- predictions: ``model, date, asset, score`` (a date's cross-section of scores);
- returns: ``asset, date, horizon, return``: the forward return from the close of ``date`` to the close
  ``horizon`` trading days later, so it can only be known from that later day on;
- portfolio: ``model, date, return`` and optionally ``positions: [{asset, weight}]`` (JSON and NDJSON only);
- features: ``model, date, asset, feature, value`` (long) or ``model, date, asset, values: {name: value}``
  (wide; in CSV every column besides model, date and asset is a feature). A number is numeric, a string
  categorical, ``null`` (an empty CSV cell) missing.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from alphawatch.daemon import jsonbody
from alphawatch.daemon.calendar import TAIPEI, Calendar, CalendarRangeError
from alphawatch.daemon.errors import IngestError, ItemError
from alphawatch.daemon.jsonbody import BadJson
from alphawatch.daemon.wire import as_float, ascii_float

KINDS = ("predictions", "returns", "portfolio", "features")
MAX_ROWS = 1_000_000
MAX_NAME = 100
MAX_HORIZON = 260
MAX_ABS_RETURN = 10.0  # 1,000 %: anything larger is almost surely a unit mistake (percent, basis points)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # fullmatch, in ASCII digits (``\d`` also takes "５")
_HORIZON = re.compile(r"([0-9]{1,3})d?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FORMATS = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/jsonlines": "ndjson",
    "application/json-seq": "ndjson",
}
"""Any other type (none, curl's default form type, text/plain) is read as JSON, as it always was."""  # fmt: skip
_COLUMNS = {
    "predictions": ("model", "date", "asset", "score"),
    "returns": ("asset", "date", "horizon", "return"),
    "portfolio": ("model", "date", "return"),
}


@dataclass
class ModelBatch:
    """A validated batch: rows ready for the store, by table."""

    kind: str
    predictions: list[tuple[str, str, str, float]] = field(default_factory=list)
    returns: list[tuple[int, str, str, float]] = field(default_factory=list)
    portfolio: list[tuple[str, str, float]] = field(default_factory=list)
    positions: list[tuple[str, str, str, float]] = field(default_factory=list)
    features: list[tuple[str, str, str, str, float | None, str | None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.predictions) + len(self.returns) + len(self.portfolio) + len(self.features)


CSV_MISSING = frozenset({"", "NA", "N/A", "#N/A", "NULL", "null", "None"})
"""CSV cells that mean a missing value (R, Excel, pandas write these): not categories of a numeric feature."""
FORMATTED_NUMBER = re.compile(r"[+-]?(\d{1,3}(,\d{3})+(\.\d*)?|\d+(\.\d*)?%|\d{1,3}(,\d{3})+(\.\d*)?%)")
"""A number as a spreadsheet shows it (``1,234,567``, ``3.5%``): refused, never taken for a category (which would
leave the feature unmonitored) nor guessed at (is ``3.5%`` 3.5 or 0.035?)."""


def parse_model_data(kind: str, body: bytes, content_type: str, calendar: Calendar, now: float) -> ModelBatch:
    """Parse and check a request body of ``kind``; raise :class:`IngestError` naming every bad row."""
    if kind not in KINDS:
        raise IngestError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}", status=404)
    media = content_type.split(";")[0].strip().lower()
    items, from_csv = _items(body, _FORMATS.get(media, "json"), kind)
    if not items:
        raise IngestError("the batch is empty")
    if len(items) > MAX_ROWS:
        raise IngestError(f"too many rows in one batch ({len(items)} > {MAX_ROWS}); split it", status=413)
    checker = _Checker(kind, calendar, now, from_csv)
    for index, item in enumerate(items):
        checker.row(index, item)
    if checker.errors:
        bad = len({e.index for e in checker.errors})
        raise IngestError(f"{bad} of {len(items)} rows are invalid; nothing was stored", checker.errors[:1000])
    return checker.batch


def _items(body: bytes, form: str, kind: str) -> tuple[list[Any], bool]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise IngestError("the body is not UTF-8 text") from None
    if form == "csv":
        return _csv_rows(text, kind), True
    if form == "ndjson":
        items: list[Any] = []
        errors = []
        for number, line in enumerate(text.split("\n")):  # not splitlines(): U+2028 and others may be in a string
            line = line.removesuffix("\r")
            if line.strip():
                try:
                    items.append(jsonbody.loads(line))
                except ValueError as exc:
                    errors.append(ItemError(len(items), "", f"line {number + 1} is not JSON: {exc}"))
                    items.append(None)
        if errors:
            raise IngestError(f"{len(errors)} lines are not JSON; nothing was stored", errors[:1000])
        return items, False
    try:
        document = jsonbody.loads(text)
    except BadJson as exc:
        raise IngestError(f"body refused: {exc}") from None
    except ValueError as exc:
        raise IngestError(f"body is not valid JSON: {exc} (NDJSON needs Content-Type: application/x-ndjson)") from None
    rows = document.get("rows") if isinstance(document, dict) else document
    if not isinstance(rows, list):
        raise IngestError('expected a JSON array of rows, or {"rows": [...]}')
    return rows, False


def _csv_rows(text: str, kind: str) -> list[Any]:
    records = _csv_records(text)
    header = next(records, (0, []))[1]
    if not header:
        raise IngestError("the CSV has no header line")
    names = [h.strip() for h in header]
    if len(set(names)) != len(names):
        raise IngestError(f"the CSV header repeats a column: {', '.join(names)}")
    required = _COLUMNS.get(kind, ("model", "date", "asset"))
    missing = [c for c in required if c not in names]
    if missing:
        raise IngestError(f"the CSV header lacks {', '.join(missing)} (it has {', '.join(names)})")
    wide = kind == "features" and not {"feature", "value"} <= set(names)
    if kind != "features" or not wide:
        extra = [c for c in names if c not in (*required, "feature", "value")]
        if extra:
            raise IngestError(f"unknown CSV column(s) {', '.join(extra)} for {kind}")
    rows: list[Any] = []
    for line, record in records:
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if len(record) != len(names):
            rows.append(f"line {line} has {len(record)} fields, the header {len(names)}")
            continue
        row: dict[str, Any] = dict(zip(names, record, strict=True))
        if wide:
            row = {k: row.pop(k) for k in ("model", "date", "asset")} | {"values": row}
        rows.append(row)
    return rows


def _csv_records(text: str) -> Iterator[tuple[int, list[str]]]:
    """Each record with the line it ends on; a body the csv module cannot split is refused naming the line."""
    reader = csv.reader(io.StringIO(text), strict=True)
    started = 1  # an unclosed quote is only found at the end of the body, so name where its record started
    try:
        for record in reader:
            yield reader.line_num, record
            started = reader.line_num + 1
    except csv.Error as exc:
        problem, line = str(exc), reader.line_num
        if problem == "unexpected end of data":
            problem, line = "a quote is not closed", started
        elif problem.startswith("new-line character"):
            problem = "a carriage return (\\r) outside quotes; end lines with \\n or \\r\\n"
        elif problem.startswith("field larger"):
            problem = f"a field is longer than {csv.field_size_limit()} characters"
        raise IngestError(f"the CSV is malformed at line {line}: {problem}") from None


class _Checker:
    def __init__(self, kind: str, calendar: Calendar, now: float, from_csv: bool) -> None:
        self.kind = kind
        self.calendar = calendar
        self.now = now
        self.today = datetime.fromtimestamp(now, TAIPEI).date()
        self.csv = from_csv
        self.errors: list[ItemError] = []
        self.batch = ModelBatch(kind)
        self._seen: dict[tuple[Any, ...], int] = {}
        self._dates: dict[str, str | None] = {}
        self._feature_kind: dict[str, str] = {}
        self._ends: dict[tuple[str, int], str | None] = {}

    def row(self, index: int, item: Any) -> None:
        if isinstance(item, str):  # a CSV line that could not be split into the header's fields
            self.errors.append(ItemError(index, "", item))
            return
        if not isinstance(item, dict):
            self.errors.append(ItemError(index, "", f"each {self.kind} row is an object"))
            return
        method: Callable[[int, dict[str, Any]], None] = getattr(self, "_" + self.kind)
        method(index, item)

    # kinds ------------------------------------------------------------------------------------------------
    def _predictions(self, i: int, item: dict[str, Any]) -> None:
        self._unknown(i, item, _COLUMNS["predictions"])
        model, day, asset = self._name(i, item, "model"), self._date(i, item), self._name(i, item, "asset")
        score = self._number(i, item, "score")
        if None in (model, day, asset, score) or not self._unique(i, ("p", model, day, asset)):
            return
        self.batch.predictions.append((model, day, asset, score))  # type: ignore[arg-type]

    def _returns(self, i: int, item: dict[str, Any]) -> None:
        self._unknown(i, item, _COLUMNS["returns"])
        asset, day, horizon = self._name(i, item, "asset"), self._date(i, item), self._horizon(i, item)
        ret = self._return(i, item, "return")
        if None in (asset, day, horizon, ret):
            return
        assert day is not None
        assert horizon is not None
        end = self._end(day, horizon)
        if end is None or end > self.today.isoformat() or (end == self.today.isoformat() and self._before_close()):
            when = f"on {end}" if end else "past the calendar's end"
            if end == self.today.isoformat():
                when += " at the close"
            self.errors.append(ItemError(i, "date", f"a {horizon}d return from {day} is only realized {when}"))
            return
        if self._unique(i, ("r", horizon, day, asset)):
            self.batch.returns.append((horizon, day, asset, ret))  # type: ignore[arg-type]

    def _before_close(self) -> bool:
        """Today's close has not come yet (a return ending today is not known before it)."""
        session = self.calendar.session(self.today)
        return session is not None and self.now < session.close

    def _portfolio(self, i: int, item: dict[str, Any]) -> None:
        self._unknown(i, item, (*_COLUMNS["portfolio"], "positions"))
        model, day, ret = self._name(i, item, "model"), self._date(i, item), self._return(i, item, "return")
        positions = item.get("positions", [])
        checked: list[tuple[str, float]] = []
        if not isinstance(positions, list):
            self.errors.append(ItemError(i, "positions", "a list of {asset, weight} objects"))
            positions = []
        assets: set[str] = set()
        for j, position in enumerate(positions):
            where = f"positions[{j}]"
            if not isinstance(position, dict) or set(position) != {"asset", "weight"}:
                self.errors.append(ItemError(i, where, "an object with asset and weight"))
                continue
            asset, weight = self._name(i, position, "asset", where), self._number(i, position, "weight", where)
            if asset in assets:
                self.errors.append(ItemError(i, where, f"asset {asset!r} is listed twice"))
            elif asset is not None and weight is not None:
                assets.add(asset)
                checked.append((asset, weight))
        if None in (model, day, ret) or not self._unique(i, ("pf", model, day)):
            return
        assert model is not None
        assert day is not None
        assert ret is not None
        self.batch.portfolio.append((model, day, ret))
        self.batch.positions += [(model, day, a, w) for a, w in checked]

    def _features(self, i: int, item: dict[str, Any]) -> None:
        wide = "values" in item
        self._unknown(i, item, ("model", "date", "asset", "values") if wide else ("model", "date", "asset",
                                                                                    "feature", "value"))  # fmt: skip
        model, day, asset = self._name(i, item, "model"), self._date(i, item), self._name(i, item, "asset")
        if wide:
            values = item["values"]
            if not isinstance(values, dict) or not values:
                self.errors.append(ItemError(i, "values", "an object of feature name → value"))
                return
            pairs = [(self._feature_name(i, name), value, f"values.{str(name)[:40]}") for name, value in values.items()]
        else:
            pairs = [(self._name(i, item, "feature"), item.get("value"), "value")]
        for name, raw, where in pairs:
            value = self._feature_value(i, name, raw, where)
            if None in (model, day, asset, name) or value is None:
                continue
            if self._unique(i, ("f", model, day, name, asset)):
                num, cat = value
                self.batch.features.append((model, day, name, asset, num, cat))  # type: ignore[arg-type]

    # fields -----------------------------------------------------------------------------------------------
    def _unknown(self, i: int, item: dict[str, Any], allowed: Iterable[str]) -> None:
        for key in item.keys() - set(allowed):
            self.errors.append(ItemError(i, str(key)[:40], "unknown field"))

    def _name(self, i: int, item: dict[str, Any], key: str, where: str = "") -> str | None:
        value = item.get(key)
        at = f"{where}.{key}" if where else key
        if isinstance(value, str):
            value = value.strip()
        if not isinstance(value, str) or not value:
            self.errors.append(ItemError(i, at, "required; a non-empty string"))
            return None
        if len(value) > MAX_NAME or _CONTROL.search(value):
            self.errors.append(ItemError(i, at, f"at most {MAX_NAME} characters, no control characters"))
            return None
        return value

    def _feature_name(self, i: int, name: str) -> str | None:
        return self._name(i, {"feature": name}, "feature", "values")

    def _date(self, i: int, item: dict[str, Any]) -> str | None:
        raw = item.get("date")
        if not isinstance(raw, str) or not _DATE.fullmatch(raw.strip()):
            given = "" if raw is None else f", not {str(raw)[:40]!r}"
            self.errors.append(
                ItemError(i, "date", f"required; an ISO date YYYY-MM-DD (Asia/Taipei trading date){given}")
            )
            return None
        text = raw.strip()
        if text not in self._dates:
            self._dates[text] = self._date_problem(text)
        problem = self._dates[text]
        if problem:
            self.errors.append(ItemError(i, "date", problem))
            return None
        return text

    def _date_problem(self, text: str) -> str | None:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return f"{text} is not a calendar date"
        if day > self.today:
            return f"{text} is in the future (today is {self.today} in Taipei)"
        try:
            trading = self.calendar.is_trading_day(day)
        except CalendarRangeError as exc:
            return str(exc)
        if not trading:
            info = self.calendar.day(day)
            name = f": {info.name}" if info.name else ""
            return f"{text} is not a {self.calendar.venue.code} trading day ({info.kind.value}{name})"
        return None

    def _end(self, day: str, horizon: int) -> str | None:
        key = (day, horizon)
        if key not in self._ends:
            try:
                self._ends[key] = self.calendar.add_trading_days(date.fromisoformat(day), horizon).isoformat()
            except (CalendarRangeError, ValueError):
                self._ends[key] = None
        return self._ends[key]

    def _horizon(self, i: int, item: dict[str, Any]) -> int | None:
        raw = item.get("horizon")
        found = _HORIZON.fullmatch(raw.strip()) if isinstance(raw, str) else None
        value = int(found.group(1)) if found else raw
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_HORIZON:
            self.errors.append(ItemError(i, "horizon", f'required; trading days from 1 to {MAX_HORIZON} (5 or "5d")'))
            return None
        return value

    def _number(self, i: int, item: dict[str, Any], key: str, where: str = "") -> float | None:
        raw = item.get(key)
        at = f"{where}.{key}" if where else key
        if self.csv and isinstance(raw, str):
            text = raw
            try:
                raw = ascii_float(text) if text.strip() else None
            except ValueError:
                self.errors.append(ItemError(i, at, f"not a number: {text[:40]!r}"))
                return None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            self.errors.append(ItemError(i, at, "required; a number"))
            return None
        if not math.isfinite(as_float(raw)):
            self.errors.append(ItemError(i, at, "must be finite (NaN and infinity are refused)"))
            return None
        return float(raw)

    def _return(self, i: int, item: dict[str, Any], key: str) -> float | None:
        value = self._number(i, item, key)
        if value is not None and not -1.0 <= value <= MAX_ABS_RETURN:
            self.errors.append(
                ItemError(i, key, f"{value} is not a simple return (−1 to {MAX_ABS_RETURN:g}); percent or bp?")
            )
            return None
        return value

    def _feature_value(self, i: int, name: str | None, raw: Any, where: str) -> tuple[float | None, str | None] | None:
        if raw is None or (self.csv and isinstance(raw, str) and raw.strip() in CSV_MISSING):
            return (None, None)
        if self.csv and isinstance(raw, str):
            try:
                raw = ascii_float(raw)
            except ValueError:
                raw = raw.strip()
                if FORMATTED_NUMBER.fullmatch(raw):
                    self.errors.append(ItemError(i, where, f"{raw!r} is a formatted number: export plain numbers "
                                                 "(no thousands separators, no %)"))  # fmt: skip
                    return None
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            self.errors.append(ItemError(i, where, "a number, a category string, or null for missing"))
            return None
        value: tuple[float | None, str | None]
        if isinstance(raw, str):
            if len(raw) > MAX_NAME or _CONTROL.search(raw):
                self.errors.append(ItemError(i, where, f"categories are at most {MAX_NAME} characters"))
                return None
            kind, value = "categorical", (None, str(raw))
        elif not math.isfinite(as_float(raw)):
            self.errors.append(ItemError(i, where, "must be finite; send null for a missing value"))
            return None
        else:
            kind, value = "numeric", (float(raw), None)
        if name is not None:
            first = self._feature_kind.setdefault(name, kind)
            if first != kind:
                self.errors.append(ItemError(i, where, f"feature {name!r} is {first} in this batch, this value is not"))
                return None
        return value

    def _unique(self, i: int, key: tuple[Any, ...]) -> bool:
        first = self._seen.setdefault(key, i)
        if first != i:
            self.errors.append(ItemError(i, "", f"duplicate of row {first}"))
            return False
        return True
