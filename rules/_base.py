"""The shape every rule kind has, and the values rules pass around.

A rule kind is one module in ``alphawatch.rules`` defining a subclass of :class:`RuleKind`: its ``kind`` name,
the JSON Schema of its own settings, and an :class:`Evaluator` that turns samples and time into per-series
conditions. Pending (``for``), ``keep_firing_for``, repeats and persistence are the daemon's job, the same for
every kind, so a kind only says *what is wrong right now* and *when to look again*.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from alphawatch.rules._regex import compile_label_regex

if TYPE_CHECKING:
    from alphawatch.daemon.calendar import Calendars
    from alphawatch.daemon.store import Store
    from alphawatch.daemon.windows import Windows

Labels = tuple[tuple[str, str], ...]
"""Labels as a sorted tuple of pairs: hashable, cheap, and equal for equal label sets."""


def labels_of(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted(mapping.items()))


class Sample(NamedTuple):
    """One value of one series at one instant (a named tuple: ingest makes one per sample, cheaply)."""

    metric: str
    labels: Labels
    ts: float
    value: float


@dataclass(frozen=True, slots=True)
class Matcher:
    """``name op value`` with Alertmanager's operators ``=``, ``!=``, ``=~``, ``!~`` (regexes fully anchored)."""

    name: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = _regex(self.value).fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        if len(_REGEX_CACHE) >= 4096:  # patterns come from silences too: bounded
            _REGEX_CACHE.clear()
        compiled = _REGEX_CACHE[pattern] = compile_label_regex(pattern)
    return compiled


_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


def parse_matcher(text: str) -> Matcher:
    """Parse ``model=alpha7``, ``model!=x``, ``model=~"alpha.*"``; raise ``ValueError`` when malformed."""
    found = _MATCHER.fullmatch(text)
    if not found:
        raise ValueError(f"not a matcher: {text[:80]!r} (write name=value, name!=value, name=~regex or name!~regex)")
    name, op, value = found.groups()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    elif value[:1] in ("=", "~"):  # model==alpha7: a typo that would match nothing, silently
        raise ValueError(
            f'{text[:80]!r}: the value starts with {value[0]!r}; quote it if you mean it ({name}{op}"{value[:40]}")'
        )
    elif value[:1] in ('"', "'"):
        raise ValueError(f"{text[:80]!r}: the value's quotes are not closed at its end")
    if op in ("=~", "!~"):
        try:
            compile_label_regex(value)
        except ValueError as exc:
            raise ValueError(f"bad regex in {text[:80]!r}: {exc}") from None
    return Matcher(name, op, value)


@dataclass(frozen=True, slots=True)
class Selector:
    """Which samples a rule watches: one metric name and label matchers."""

    metric: str
    matchers: tuple[Matcher, ...] = ()

    def matches(self, sample: Sample) -> bool:
        if sample.metric != self.metric:
            return False
        if not self.matchers:
            return True
        labels = dict(sample.labels)
        return all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True, slots=True)
class Condition:
    """What a rule says about one series right now: wrong (``active``) or not, and the value it saw."""

    labels: Labels
    active: bool
    value: float | None
    details: tuple[tuple[str, Any], ...] = ()
    """What a person needs to judge the alert (statistic, p-value, window, baseline …), as sorted pairs."""


class Evaluator:
    """The live state of one rule: fed samples, asked for conditions. Owned by one actor, never shared.

    A kind whose state lives in tables other than ``samples`` (e.g. feature cross-sections for drift) sets
    ``reads_store`` and implements :meth:`refresh`, which the actor awaits before each evaluation.
    """

    reads_store: ClassVar[bool] = False

    async def refresh(self, store: Store, now: float) -> None:
        """Bring the state up to date from the store (only called when ``reads_store`` is true)."""

    def report_all(self) -> None:
        """Make the next :meth:`evaluate` report every series, not only those with news (a window opened)."""

    def observe(self, sample: Sample) -> None:
        raise NotImplementedError

    def evaluate(self, now: float, is_firing: Mapping[Labels, bool]) -> tuple[list[Condition], float | None]:
        """Conditions of every known series at ``now`` and the next instant the answer may change on its own.

        ``is_firing`` tells which series currently have an active alert (for hysteresis).
        """
        raise NotImplementedError


@dataclass(frozen=True)
class RuleContext:
    """What a configured rule may consult besides its samples: the market calendars and the named windows."""

    calendars: Calendars
    windows: Windows


class RuleKind:
    """Base of rule kinds. A subclass sets ``kind`` and ``schema``; an instance is one configured rule's settings.

    ``schema`` is the JSON Schema ``properties`` of the kind's own keys (the common keys — name, kind, labels,
    annotations, severity, description, for, keep_firing_for, active_during, muted_during — are added by the
    config). ``required`` lists
    the kind's mandatory keys. Instances compare equal when their settings do, which decides on reload whether
    a rule changed.
    """

    kind: ClassVar[str]
    schema: ClassVar[dict[str, Any]]
    required: ClassVar[tuple[str, ...]] = ()
    context: RuleContext | None = None
    """Set by the configuration after construction; a kind that reads it says so in :meth:`uses_calendar`."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = settings

    def uses_calendar(self) -> bool:
        """Whether this rule's behaviour depends on the calendars or windows (a calendar edit restarts it)."""
        return False

    def window_names(self) -> tuple[str, ...]:
        """Windows this rule's settings name (checked by the configuration)."""
        return ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and _freeze(self.settings) == _freeze(other.settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_freeze(self.settings)!r})"

    def __hash__(self) -> int:
        return hash((type(self), _freeze(self.settings)))

    def selectors(self) -> tuple[Selector, ...]:
        raise NotImplementedError

    detail_names: ClassVar[frozenset[str] | None] = None
    """The details this kind's alerts can carry, when it knows them all (``check`` warns of others an annotation
    names); ``None``: not a fixed set."""
    instant_details: ClassVar[frozenset[str]] = frozenset()
    """Details that are instants (epoch seconds): an annotation shows them as Taipei time, not as a number."""

    def alert_series(self, labels: Labels) -> Labels:
        """The labels of this rule's alert for a sample with ``labels`` (its ``series``): the sample's own, unless
        the kind watches a coarser key (an ``absence`` rule its ``by`` labels, a drift rule the model)."""
        return labels

    def history(self) -> float:
        """Seconds of past samples the evaluator needs when it starts (loaded from the store)."""
        return 0.0

    def keeps_samples_since(self) -> float | None:
        """An instant whose samples the store must keep whatever ``daemon.retention`` says (the start of a fixed
        baseline: pruned, a restart would judge against part of it), or ``None``."""
        return None

    latest_only: ClassVar[bool] = False
    """The evaluator keeps just each series' latest sample: a start reads only that (kept per series, whatever its
    age), not every sample of the history."""

    def new_evaluator(self, started_at: float) -> Evaluator:
        """A fresh evaluator. ``started_at``: since when the rule has watched its selectors, kept across restarts
        and reloads that leave them unchanged (an ``absence`` rule with no sample yet counts from it)."""
        raise NotImplementedError


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


class SettingError(ValueError):
    """A rule kind refusing one of its settings; ``where`` is its key path within the rule (``("match", 0)``)."""

    def __init__(self, where: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.where = where


def selector_from(settings: Mapping[str, Any]) -> Selector:
    """The selector of the common ``metric`` + ``match`` (list of matcher strings or a label→value map) keys."""
    raw = settings.get("match") or []
    if isinstance(raw, Mapping):
        matchers = tuple(Matcher(k, "=", str(v)) for k, v in sorted(raw.items()))
    else:
        parsed = []
        for index, text in enumerate(raw):
            try:
                parsed.append(parse_matcher(text))
            except ValueError as exc:
                raise SettingError(("match", index), str(exc)) from None
        matchers = tuple(parsed)
    metric = settings["metric"]
    if METRIC_NAME.fullmatch(metric) is None:
        raise SettingError(("metric",), f"metric {metric[:80]!r}: letters, digits, _ and :, not starting with a digit")
    return Selector(metric, matchers)


METRIC_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]{0,199}")
"""A metric name, as ingest accepts it."""
