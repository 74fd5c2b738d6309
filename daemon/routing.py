"""The routing tree: which routes, and so which channels, hear of an alert. Alertmanager's semantics, plus time.

The ``route:`` section is one root route with nested ``routes:``, read once into frozen :class:`RouteNode`\\ s.
:func:`match_routes` walks the tree the way Alertmanager's ``dispatch.Route.Match`` does, and adds market hours:
a route outside its ``active_during`` windows, or inside one of its ``muted_during`` windows, counts as *not
matching*, so the alert falls through to the next sibling or back to the parent instead of being swallowed.
``emergency`` alerts ignore those windows (and ``hold_until``) unless the route's matchers name ``emergency``.
The rules, with examples, are in ``docs/routing.md``. Everything here is pure: time and windows are passed in.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from alphawatch.daemon.durations import parse_duration
from alphawatch.daemon.errors import ConfigError, Problem
from alphawatch.daemon.windows import WINDOW_REF_SCHEMA
from alphawatch.rules._base import Labels, Matcher, parse_matcher

KeyPath = tuple[str | int, ...]
Locate = Callable[[KeyPath, str], Problem]
WindowActive = Callable[[str, float], bool]
"""``window_active(name, ts)``: whether the named window is on at ``ts`` (e.g. ``windows[name].active``)."""

DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0
EMERGENCY = "emergency"


class GroupAll(enum.Enum):
    """``group_by: ['...']``: group by every label of the alert (each distinct label set is its own group)."""

    ALL = "..."

    def __repr__(self) -> str:
        return "GROUP_ALL"


GROUP_ALL = GroupAll.ALL
GroupBy = tuple[str, ...] | GroupAll

_WINDOWS: dict[str, Any] = {"type": "array", "minItems": 1, "items": WINDOW_REF_SCHEMA}
_ANCHOR = "alphawatch-route"
ROUTE_NODE_SCHEMA: dict[str, Any] = {
    "$anchor": _ANCHOR,
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchers": {
            "description": "all must match: 'name=value', 'name!=value', 'name=~\"regex\"', 'name!~\"regex\"'",
            "type": "array",
            "items": {"type": "string", "pattern": r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*(=~|!~|!=|=)"},
        },
        "channels": {
            "description": "where notifications go; inherited from the parent when not given",
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/name"},
        },
        "group_by": {
            "description": "labels that split alerts into groups (one notification per group); ['...'] = all labels",
            "type": "array",
            "items": {"type": "string", "pattern": r"^([A-Za-z_][A-Za-z0-9_]*|\.\.\.)$"},
        },
        "group_wait": {"$ref": "#/$defs/duration"},
        "group_interval": {"$ref": "#/$defs/duration"},
        "repeat_interval": {"$ref": "#/$defs/duration"},
        "continue": {"type": "boolean", "description": "after this route matches, try its next siblings too"},
        "active_during": {**_WINDOWS, "description": "windows the route is used in; outside them it falls through"},
        "muted_during": {**_WINDOWS, "description": "windows the route is not used in; the alert falls through"},
        "hold_until": {**WINDOW_REF_SCHEMA, "description": "hold this route's notifications until the window opens"},
        "routes": {"type": "array", "items": {"$ref": f"#{_ANCHOR}"}},
    },
}
ROUTE_SCHEMA: dict[str, Any] = {
    "description": "the routing tree (Alertmanager's semantics): a root route with nested `routes:`",
    "$defs": {"route_node": ROUTE_NODE_SCHEMA},
    "$ref": f"#{_ANCHOR}",
    "required": ["channels"],
}
"""JSON Schema of the ``route:`` section. Refers to ``#/$defs/duration`` and ``#/$defs/name`` of the config schema."""


@dataclass(frozen=True)
class RouteNode:
    """One route of the tree, with the inherited settings already filled in.

    ``path`` names the route by position (``0`` the root, ``0.2`` its third child, ``0.2.0`` that one's first),
    stable across reloads as long as the tree's shape is. Inherited from the parent when unset: ``channels``,
    ``group_by``, ``group_wait``, ``group_interval``, ``repeat_interval``. Not inherited: ``matchers``,
    ``continue_``, ``active_during``, ``muted_during``, ``hold_until`` (as in Alertmanager).
    """

    path: str
    channels: tuple[str, ...]
    matchers: tuple[Matcher, ...] = ()
    group_by: GroupBy = ()
    group_wait: float = DEFAULT_GROUP_WAIT
    group_interval: float = DEFAULT_GROUP_INTERVAL
    repeat_interval: float = DEFAULT_REPEAT_INTERVAL
    continue_: bool = False
    active_during: tuple[str, ...] = ()
    muted_during: tuple[str, ...] = ()
    hold_until: str | None = None
    children: tuple[RouteNode, ...] = ()
    key: str = field(default="{}", compare=False)
    """Alertmanager's ``Route.Key()``: the matchers of every ancestor and this route (not unique)."""
    ident: str = field(default="", compare=False)
    """What the groups of the route know it by wherever it sits in the tree: its ``key``, ``group_by`` and
    ``channels``, and its rank among the routes alike in these (depth first). Unique in a tree."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every matcher matches (a missing label reads as the empty string)."""
        return all(m.matches(labels) for m in self.matchers)

    def walk(self) -> Iterator[RouteNode]:
        """This route and all below it, depth first, in configuration order."""
        yield self
        for child in self.children:
            yield from child.walk()

    @property
    def key_path(self) -> KeyPath:
        """Where the route is inside the ``route:`` section, e.g. ``("routes", 2, "routes", 0)``."""
        out: KeyPath = ()
        for part in self.path.split(".")[1:]:
            out = (*out, "routes", int(part))
        return out


@dataclass(frozen=True)
class Routing:
    """The outcome of one walk: the routes used, in order, and the routes skipped for their windows."""

    routes: tuple[RouteNode, ...]
    muted: tuple[RouteNode, ...] = ()

    @property
    def channels(self) -> tuple[str, ...]:
        """Every channel of the routes used, each once, in order."""
        return tuple(dict.fromkeys(c for r in self.routes for c in r.channels))


# --- building ---------------------------------------------------------------------------------------------------


@cache
def _validator() -> jsonschema.Draft202012Validator:
    # the config schema's own definitions of a duration and a name (read directly: config.py imports this module)
    config_defs = json.loads(resources.files("alphawatch.daemon").joinpath("config.schema.json").read_text())["$defs"]
    defs = {**ROUTE_SCHEMA["$defs"], "duration": config_defs["duration"], "name": config_defs["name"]}
    return jsonschema.Draft202012Validator({**ROUTE_SCHEMA, "$defs": defs})


def build_route_tree(raw: Mapping[str, Any], locate: Locate) -> RouteNode:
    """Check the ``route:`` section and build its tree.

    Args:
        raw: the parsed ``route:`` mapping (see :data:`ROUTE_SCHEMA`).
        locate: turns a path inside ``route:`` and a message into a located :class:`Problem`, e.g.
            ``lambda p, m: doc.problem(("route", *p), m)``.

    Raises:
        ConfigError: with every problem: schema violations, bad matchers and regexes, settings the root may not
            have, ``...`` mixed with label names, duplicate ``group_by`` labels, zero intervals.
    """
    problems = [locate(tuple(e.absolute_path), e.message) for e in _validator().iter_errors(raw)]
    if problems:
        raise ConfigError(problems)
    for key in ("matchers", "continue", "active_during", "muted_during"):
        if key in raw:
            problems.append(locate((key,), f"the root route receives every alert: it cannot have {key}"))
    defaults = RouteNode("0", tuple(raw["channels"]), key="")  # the root's own keys override these
    tree = _node(raw, (), "0", defaults, locate, problems, {})
    if problems:
        raise ConfigError(problems)
    return tree


def _node(
    raw: Mapping[str, Any],
    where: KeyPath,
    path: str,
    parent: RouteNode,
    locate: Locate,
    problems: list[Problem],
    ranks: dict[str, int],
) -> RouteNode:
    matchers: list[Matcher] = []
    for i, text in enumerate(raw.get("matchers") or []):
        try:
            matchers.append(parse_matcher(text))
        except ValueError as exc:
            problems.append(locate((*where, "matchers", i), str(exc)))
    group_by: GroupBy = parent.group_by
    if "group_by" in raw:
        names: list[str] = raw["group_by"]
        if "..." in names:
            group_by = GROUP_ALL
            if len(names) > 1:
                problems.append(locate((*where, "group_by"), "'...' (all labels) cannot be mixed with label names"))
        else:
            group_by = tuple(names)
            for i, name in enumerate(names):
                if name in names[:i]:
                    problems.append(locate((*where, "group_by", i), f"duplicate label {name!r}"))
    timers: list[float] = []
    for key in ("group_wait", "group_interval", "repeat_interval"):
        value: float = parse_duration(raw[key]) if key in raw else getattr(parent, key)
        if value == 0 and key != "group_wait":
            problems.append(locate((*where, key), f"{key} cannot be zero"))
        timers.append(value)
    ordered = sorted(matchers, key=lambda m: (m.name, m.value, _OPS.index(m.op)))
    key = (f"{parent.key}/" if path != "0" else "") + "{" + ",".join(_am_matcher(m) for m in ordered) + "}"
    channels = tuple(raw["channels"]) if "channels" in raw else parent.channels
    # (the order of group_by and channels changes nothing a group is: sorted)
    alike = json.dumps([key, group_by.value if group_by is GROUP_ALL else sorted(group_by), sorted(channels)])
    rank = ranks[alike] = ranks.get(alike, -1) + 1
    node = RouteNode(
        path=path,
        channels=channels,
        matchers=tuple(matchers),
        group_by=group_by,
        group_wait=timers[0],
        group_interval=timers[1],
        repeat_interval=timers[2],
        continue_=bool(raw.get("continue", False)),
        active_during=tuple(raw.get("active_during") or ()),
        muted_during=tuple(raw.get("muted_during") or ()),
        hold_until=raw.get("hold_until"),
        key=key,
        ident=hashlib.sha256(f"{alike}#{rank}".encode()).hexdigest()[:16],
    )
    children = tuple(
        _node(child, (*where, "routes", i), f"{path}.{i}", node, locate, problems, ranks)
        for i, child in enumerate(raw.get("routes") or [])
    )
    return replace(node, children=children)


def check_references(
    tree: RouteNode, locate: Locate, *, channels: Collection[str], windows: Collection[str] | None = None
) -> list[Problem]:
    """Problems with the names the tree uses: channels not configured, windows not defined (when given)."""
    problems: list[Problem] = []

    def visit(node: RouteNode, inherited: tuple[str, ...] | None) -> None:
        if node.channels != inherited:  # an inherited list is reported once, where it is written
            for i, name in enumerate(node.channels):
                if name not in channels:
                    problems.append(locate((*node.key_path, "channels", i), f"no channel named {name!r}"))
        if windows is not None:
            for key in ("active_during", "muted_during"):
                for i, name in enumerate(getattr(node, key)):
                    if name not in windows:
                        problems.append(locate((*node.key_path, key, i), f"unknown window {name!r}"))
            if node.hold_until is not None and node.hold_until not in windows:
                problems.append(locate((*node.key_path, "hold_until"), f"unknown window {node.hold_until!r}"))
        for child in node.children:
            visit(child, node.channels)

    visit(tree, None)
    return problems


_OPS = ("=", "!=", "=~", "!~")


def _am_matcher(m: Matcher) -> str:
    value = m.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return f'{m.name}{m.op}"{value}"'


# --- walking ------------------------------------------------------------------------------------------------------


def match_routes(
    tree: RouteNode,
    labels: Mapping[str, str],
    *,
    at: float | None = None,
    window_active: WindowActive | None = None,
) -> list[RouteNode]:
    """The routes an alert with ``labels`` goes to at ``at``, in order (see :func:`trace_routes`)."""
    return list(trace_routes(tree, labels, at=at, window_active=window_active).routes)


def trace_routes(
    tree: RouteNode,
    labels: Mapping[str, str],
    *,
    at: float | None = None,
    window_active: WindowActive | None = None,
) -> Routing:
    """Walk the tree for an alert with ``labels``: Alertmanager's walk, with time windows.

    Depth first, left to right. A route matches when all its matchers do and it is not muted at ``at``. For a
    matching route its children are tried in order: each matching child contributes its own result, and the
    search among the siblings stops at the first matching child without ``continue``. When no child matches,
    the route itself is the result. The root always matches. A *muted* route (outside every window of a
    non-empty ``active_during``, or inside any ``muted_during`` window) is treated as not matching: it and its
    whole subtree are skipped, so the next sibling is tried, or the parent is used. An alert with
    ``severity=emergency`` is never muted, except by routes whose matchers name it (:func:`names_emergency`).

    Without ``at``, windows are not looked at (the static tree, as ``amtool`` shows it).

    Raises:
        ValueError: ``at`` is given, a route has windows, and ``window_active`` is not.
    """
    muted: list[RouteNode] = []

    def usable(node: RouteNode) -> bool:
        if not node.matches(labels):
            return False
        if at is None or not (node.active_during or node.muted_during) or not _obeys_windows(node, labels):
            return True
        if window_active is None:
            raise ValueError(f"route {node.path} has time windows: pass window_active with at")
        if any(window_active(w, at) for w in node.muted_during) or (
            node.active_during and not any(window_active(w, at) for w in node.active_during)
        ):
            muted.append(node)
            return False
        return True

    def walk(node: RouteNode) -> list[RouteNode]:
        if not usable(node):
            return []
        found: list[RouteNode] = []
        for child in node.children:
            below = walk(child)
            found += below
            if below and not child.continue_:
                break
        return found or [node]

    return Routing(tuple(walk(tree)), tuple(muted))


def remembering_router(tree: RouteNode) -> Callable[[Labels], Routing] | None:
    """:func:`trace_routes` for a tree without time windows, remembered per the values of the labels its matchers
    name: nothing else decides the answer then. ``None`` for a tree with windows (the answer depends on the time).
    """
    nodes = list(tree.walk())
    if any(node.active_during or node.muted_during for node in nodes):
        return None
    names = frozenset(m.name for node in nodes for m in node.matchers)
    known: dict[Labels, Routing] = {}

    def route(labels: Labels) -> Routing:
        key = tuple(pair for pair in labels if pair[0] in names)
        routing = known.get(key)
        if routing is None:
            if len(known) >= _ROUTINGS_KEPT:
                known.clear()
            routing = known[key] = trace_routes(tree, dict(labels))
        return routing

    return route


_ROUTINGS_KEPT = 4096


def names_emergency(matchers: Collection[Matcher]) -> bool:
    """Whether ``matchers`` name the ``emergency`` severity, like ``severity=~"critical|emergency"`` does.

    Only a positive matcher (``=`` or ``=~``) on ``severity`` that matches ``emergency`` and spells it out counts;
    ``severity!="info"`` or ``severity=~".+"`` match emergencies without naming them, so they cannot mute one.
    Silences can use the same test.
    """
    return any(
        m.name == "severity" and m.op in ("=", "=~") and EMERGENCY in m.value and m.matches({"severity": EMERGENCY})
        for m in matchers
    )


def _obeys_windows(node: RouteNode, labels: Mapping[str, str]) -> bool:
    return labels.get("severity") != EMERGENCY or names_emergency(node.matchers)


def hold_window(node: RouteNode, labels: Mapping[str, str]) -> str | None:
    """The window notifications of ``node`` for ``labels`` wait for, or ``None`` (emergencies are not held)."""
    return node.hold_until if node.hold_until is not None and _obeys_windows(node, labels) else None


def release_at(
    node: RouteNode,
    labels: Mapping[str, str],
    at: float,
    *,
    window_active: WindowActive,
    next_edge: Callable[[str, float], float | None],
) -> float:
    """When a notification of ``node`` made at ``at`` may go out: ``at``, or when its ``hold_until`` window opens.

    ``next_edge(name, ts)`` is the window's next flip after ``ts`` (``windows[name].next_edge``). Past the
    calendar's horizon (no edge ahead) the notification is not held forever: it goes out at ``at``.
    """
    name = hold_window(node, labels)
    if name is None or window_active(name, at):
        return at
    edge = next_edge(name, at)
    return at if edge is None else edge


# --- grouping -----------------------------------------------------------------------------------------------------


def group_labels(node: RouteNode, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that define the alert's group on ``node``: its ``group_by`` labels it has (all with ``...``).

    As in Alertmanager, a label the alert lacks (or has empty) is left out, not grouped as empty.
    """
    return dict(group_pairs(node, tuple(sorted(labels.items()))))


def group_pairs(node: RouteNode, pairs: Labels) -> Labels:
    """:func:`group_labels` of an alert's sorted label pairs, as pairs. A group is held for as long as an alert is
    in it, so it shares what it can with the alert: all its pairs with ``...`` (the same tuple when no value is
    empty), the pair objects otherwise."""
    if node.group_by is GROUP_ALL:
        return pairs if all(v for _, v in pairs) else tuple(p for p in pairs if p[1])
    return tuple(p for p in pairs if p[1] and p[0] in node.group_by)


def group_key(node: RouteNode, labels: Mapping[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A hashable key of the alert's group: the route's ``path`` and the group labels. Equal key, one group."""
    return node.path, tuple(group_labels(node, labels).items())


def group_key_text(node: RouteNode, labels: Mapping[str, str] | Labels) -> str:
    """The group key as Alertmanager writes it in webhooks (``groupKey``): ``{}/{severity="critical"}:{model="a"}``.
    ``labels``: a mapping, or sorted pairs."""
    pairs = labels if isinstance(labels, tuple) else tuple(sorted(labels.items()))
    inner = ", ".join(f"{k}={_go_quote(v)}" for k, v in group_pairs(node, pairs))
    return f"{node.key}:{{{inner}}}"


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
