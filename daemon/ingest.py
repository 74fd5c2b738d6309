"""Validation of sample batches: all or nothing, every bad item named.

A batch is a JSON array of ``{"metric", "labels", "ts", "value"}`` objects, or ``{"samples": [...]}``.
``ts`` is an RFC 3339 timestamp with a UTC offset (``2026-11-26T09:00:00+08:00``, ``…Z``) or UTC epoch seconds;
a timestamp without an offset is refused, never guessed. ``value`` must be a finite number: NaN and ±inf are
refused (an absent value is expressed by not sending the sample, which is what ``absence`` rules watch).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from alphawatch.daemon import jsonbody
from alphawatch.daemon.errors import IngestError, ItemError
from alphawatch.daemon.jsonbody import BadJson
from alphawatch.daemon.store import dump_labels
from alphawatch.daemon.wire import as_float, parse_rfc3339
from alphawatch.rules import Labels, Sample
from alphawatch.rules._base import METRIC_NAME

LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
MAX_ITEMS = 50_000
MAX_LABELS = 32
EARLIEST = 946_684_800.0  # 2000-01-01: older timestamps are almost surely a unit mistake
FUTURE_SLACK = 3600.0
_KEYS = frozenset({"metric", "labels", "ts", "value"})
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class Batch:
    samples: list[Sample]


def parse_batch(body: bytes, now: float, max_label_bytes: int = 1024) -> Batch:
    """Parse and check a request body; raise :class:`IngestError` naming every bad item."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:  # the standard parser also reads NaN and Infinity, which then get an error of their own
            document = jsonbody.loads(body)
        except BadJson as exc:
            raise IngestError(f"body refused: {exc}") from None
        except ValueError as exc:
            raise IngestError(f"body is not valid JSON: {exc}") from None
    items = document.get("samples") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise IngestError('expected a JSON array of samples, or {"samples": [...]}')
    if not items:
        raise IngestError("the batch is empty")
    if len(items) > MAX_ITEMS:
        raise IngestError(f"too many samples in one batch ({len(items)} > {MAX_ITEMS}); split it", status=413)
    errors: list[ItemError] = []
    samples: list[Sample] = []
    fast = _FastPath(now, max_label_bytes)
    index = fast.check_from(items, 0, samples)
    while index < len(items):  # an item not plainly valid: the careful check names what is wrong
        sample = _check(index, items[index], now, max_label_bytes, errors)
        if sample is not None:
            samples.append(sample)
        index = fast.check_from(items, index + 1, samples)
    if errors:
        bad = len({e.index for e in errors})
        raise IngestError(f"{bad} of {len(items)} samples are invalid; nothing was stored", errors)
    return Batch(samples)


class _FastPath:
    """Accepts the common, valid item cheaply: each metric name and label set is checked once, then remembered."""

    def __init__(self, now: float, max_label_bytes: int) -> None:
        self.earliest, self.latest = EARLIEST, now + FUTURE_SLACK
        self.max_label_bytes = max_label_bytes
        self.label_sets = _label_sets(max_label_bytes)

    def check_from(self, items: list[Any], start: int, samples: list[Sample]) -> int:
        """Append to ``samples`` the items from ``start`` on while they are plainly valid; the index of the first
        one that is not (``len(items)``: none). One loop with the checks' state in locals: a batch's items are
        mostly of one metric and of label sets seen before."""
        append = samples.append
        earliest, latest, label_sets, max_label_bytes = (
            self.earliest,
            self.latest,
            self.label_sets,
            self.max_label_bytes,
        )
        isfinite = math.isfinite
        last_metric: Any = _NO_METRIC
        index = start
        try:
            for index in range(start, len(items)):
                item = items[index]
                if type(item) is not dict or not item.keys() <= _KEYS:
                    return index
                metric: Any = item.get("metric")
                value: Any = item.get("value")
                ts: Any = item.get("ts")
                if type(value) not in (int, float) or not isfinite(value):
                    return index
                if metric != last_metric:  # (only a str equals one)
                    if type(metric) is not str:
                        return index
                    known_metric = _METRICS.get(metric)
                    if known_metric is None:
                        if METRIC_NAME.fullmatch(metric) is None:
                            return index
                        _remember(_METRICS, metric, metric)
                        known_metric = metric
                    last_metric = known_metric  # one string for every sample of the metric (the rules keep it)
                kind = type(ts)
                if kind is float or kind is int:
                    ts = float(ts)
                elif kind is str:
                    try:
                        ts = parse_rfc3339(ts)
                    except ValueError:
                        return index
                else:
                    return index
                if not earliest <= ts <= latest:
                    return index
                raw = item.get("labels", _NO_LABELS)
                if type(raw) is not dict:
                    return index
                key = tuple(raw.items())
                try:
                    labels = label_sets.get(key)
                except TypeError:  # an unhashable label value
                    return index
                if labels is None:
                    labels = _canonical(key, max_label_bytes)
                    if labels is None:
                        return index  # never remembered: a rejected item keeps nothing of the client's alive
                    _remember(label_sets, key, labels)
                append(Sample(last_metric, labels, ts, float(value)))
        except OverflowError:  # an integer beyond any float (only the standard parser makes one)
            return index
        return len(items)


def _canonical(items: tuple[tuple[str, Any], ...], max_label_bytes: int) -> Labels | None:
    """The sorted label tuple, when plainly valid and within ``max_label_bytes`` as stored; else ``None``."""
    if len(items) > MAX_LABELS:
        return None
    names = _LABEL_NAMES
    checked: list[str] = []  # names seen first here: remembered once the whole set passed
    bound = 2  # what the stored text takes at most: ``{"name":"value",…}``, 6 bytes per ASCII character escaped
    plain = True  # every value ASCII (a name is, once it matched LABEL)
    for name, value in items:
        if type(value) is not str:
            return None
        if name not in names:
            if LABEL.fullmatch(name) is None:
                return None
            checked.append(name)
        bound += len(name) + 6 * len(value) + 6
        plain = plain and value.isascii()
    labels = tuple(sorted(items))
    if labels == items:  # already sorted, as most clients send them: one tuple serves as key and labels
        labels = items
    if not plain or bound > max_label_bytes:  # (a few short ASCII values need not be written out to be measured)
        try:
            if len(orjson.dumps(dict(labels))) > max_label_bytes:  # the stored text's UTF-8 bytes (dump_labels)
                return None
        except TypeError:  # not Unicode text (a lone surrogate): the careful check names it
            return None
    for name in checked:
        _remember(names, name, None)
    return labels


def _remember(cache: dict[K, V], key: K, value: V) -> None:
    """Keep what passed a check for the next batches. Bounded in entries, and only valid items are kept, so at
    most ``_CACHE_LIMIT`` label sets within ``max_label_bytes``: one-off label sets cannot grow it."""
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


def _label_sets(max_label_bytes: int) -> dict[tuple[tuple[str, Any], ...], Labels]:
    """The label sets that passed the checks with this size limit (a reload that changes it starts afresh).
    Sorted as sent (most clients), a label set is its own key: an entry then holds no object of its own."""
    if _LABEL_SETS_LIMIT[0] != max_label_bytes:
        _LABEL_SETS.clear()
        _LABEL_SETS_LIMIT[0] = max_label_bytes
    return _LABEL_SETS


_CACHE_LIMIT = 16_384
_METRICS: dict[str, str] = {}
_LABEL_SETS: dict[tuple[tuple[str, Any], ...], Labels] = {}
_LABEL_SETS_LIMIT = [-1]
_LABEL_NAMES: dict[str, None] = {}  # label names that matched LABEL
_NO_LABELS: dict[str, str] = {}
_NO_METRIC = object()  # equal to no metric


def _check(index: int, item: Any, now: float, max_label_bytes: int, errors: list[ItemError]) -> Sample | None:
    if not isinstance(item, dict):
        errors.append(ItemError(index, "", "each sample is an object with metric, labels, ts and value"))
        return None
    before = len(errors)
    for key in item.keys() - _KEYS:
        errors.append(ItemError(index, key, "unknown field"))
    metric = item.get("metric")
    if not isinstance(metric, str) or not METRIC_NAME.fullmatch(metric):
        errors.append(ItemError(index, "metric", "required; letters, digits, _ and :, not starting with a digit"))
    labels = item.get("labels", {})
    label_text = ""
    if not isinstance(labels, dict):
        errors.append(ItemError(index, "labels", "must be an object of string values"))
    else:
        if len(labels) > MAX_LABELS:
            errors.append(ItemError(index, "labels", f"at most {MAX_LABELS} labels"))
        for name, value in labels.items():
            if not LABEL.fullmatch(name):
                errors.append(ItemError(index, f"labels.{name[:40]}", "label names are letters, digits and _"))
            elif not isinstance(value, str):
                errors.append(ItemError(index, f"labels.{name}", "label values are strings"))
        label_text = dump_labels(labels) if len(errors) == before else ""
        if len(label_text.encode()) > max_label_bytes:
            errors.append(
                ItemError(
                    index, "labels", f"labels take {len(label_text.encode())} bytes; the limit is {max_label_bytes}"
                )
            )
    ts = _timestamp(item.get("ts"), index, errors, now)
    value = item.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.append(ItemError(index, "value", "required; a number"))
    elif not math.isfinite(as_float(value)):
        errors.append(ItemError(index, "value", "must be finite (NaN and infinity are refused)"))
    if len(errors) != before or ts is None:
        return None
    assert isinstance(metric, str)
    assert isinstance(value, int | float)
    return Sample(metric, tuple(sorted(labels.items())), ts, float(value))


def _timestamp(raw: Any, index: int, errors: list[ItemError], now: float) -> float | None:
    if raw is None:
        errors.append(ItemError(index, "ts", "required; RFC 3339 with an offset, or UTC epoch seconds"))
        return None
    if isinstance(raw, bool):
        errors.append(ItemError(index, "ts", "must be a timestamp, not a boolean"))
        return None
    if isinstance(raw, int | float):
        ts = as_float(raw)
        if not math.isfinite(ts):
            errors.append(ItemError(index, "ts", "must be finite"))
            return None
    elif isinstance(raw, str):
        try:
            ts = parse_rfc3339(raw)
        except ValueError as exc:
            errors.append(ItemError(index, "ts", str(exc)))
            return None
    else:
        errors.append(ItemError(index, "ts", "must be an RFC 3339 string or epoch seconds"))
        return None
    if ts < EARLIEST:
        errors.append(ItemError(index, "ts", "before 2000-01-01: is it UTC epoch seconds?"))
        return None
    if ts > now + FUTURE_SLACK:
        errors.append(ItemError(index, "ts", "more than an hour in the future: epoch milliseconds, or a wrong clock?"))
        return None
    return ts
