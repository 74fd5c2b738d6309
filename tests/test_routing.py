"""The routing tree: Alertmanager's walk and inheritance, market-hour fall-through, emergencies, grouping, the CLI."""

from __future__ import annotations

import argparse
import json
import random
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from alphawatch.daemon.calendar import TAIPEI, load_calendars
from alphawatch.daemon.errors import ConfigError, Problem
from alphawatch.daemon.routing import (
    GROUP_ALL,
    ROUTE_SCHEMA,
    RouteNode,
    build_route_tree,
    check_references,
    group_key,
    group_key_text,
    group_labels,
    hold_window,
    match_routes,
    names_emergency,
    release_at,
    remembering_router,
    trace_routes,
)
from alphawatch.daemon.routing_cli import add_parser
from alphawatch.daemon.windows import build_windows
from alphawatch.rules._base import parse_matcher


def locate(path: tuple[str | int, ...], message: str) -> Problem:
    return Problem("monitor.yaml", 0, 0, ".".join(map(str, ("route", *path))), message)


def tree(raw: dict[str, Any]) -> RouteNode:
    return build_route_tree(raw, locate)


def paths(routes: list[RouteNode]) -> list[str]:
    return [r.path for r in routes]


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        tree(raw)
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


# --- inheritance ---------------------------------------------------------------------------------------------------


def test_root_has_alertmanagers_defaults() -> None:
    root = tree({"channels": ["ops-email"]})
    assert (root.group_wait, root.group_interval, root.repeat_interval) == (30.0, 300.0, 4 * 3600.0)
    assert root.group_by == ()
    assert root.path == "0"
    assert root.key == "{}"


def test_children_inherit_channels_group_by_and_timers_but_not_windows_or_continue() -> None:
    root = tree(
        {
            "channels": ["ops-email"],
            "group_by": ["alertname", "model"],
            "group_wait": "10s",
            "repeat_interval": "1h",
            "routes": [
                {
                    "matchers": ["team=risk"],
                    "group_interval": "2m",
                    "muted_during": ["twse.trading"],
                    "hold_until": "twse.pre_open",
                    "continue": True,
                    "routes": [{"matchers": ["severity=critical"], "channels": ["ops-sms"], "group_by": []}],
                }
            ],
        }
    )
    child = root.children[0]
    grandchild = child.children[0]
    assert child.channels == ("ops-email",)
    assert child.group_by == ("alertname", "model")
    assert (child.group_wait, child.group_interval, child.repeat_interval) == (10.0, 120.0, 3600.0)
    assert grandchild.channels == ("ops-sms",)
    assert grandchild.group_by == ()  # an explicit empty list overrides: one group for everything
    assert (grandchild.group_wait, grandchild.group_interval, grandchild.repeat_interval) == (10.0, 120.0, 3600.0)
    assert (grandchild.muted_during, grandchild.hold_until, grandchild.continue_) == ((), None, False)
    assert child.hold_until == "twse.pre_open"
    assert (child.path, grandchild.path) == ("0.0", "0.0.0")
    assert grandchild.key_path == ("routes", 0, "routes", 0)
    assert grandchild.key == '{}/{team="risk"}/{severity="critical"}'


def test_group_by_all_is_inherited_until_a_child_names_labels() -> None:
    root = tree(
        {
            "channels": ["a"],
            "group_by": ["..."],
            "routes": [{"matchers": ["x=1"], "routes": [{"matchers": ["y=1"], "group_by": ["model"]}]}],
        }
    )
    assert root.group_by is GROUP_ALL
    assert root.children[0].group_by is GROUP_ALL
    assert root.children[0].children[0].group_by == ("model",)


def test_nodes_are_frozen_hashable_and_equal_for_equal_configs() -> None:
    raw = {"channels": ["a"], "routes": [{"matchers": ['model=~"alpha.*"'], "channels": ["b"]}]}
    first, second = tree(raw), tree(raw)
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1
    assert first != tree({"channels": ["a"], "routes": [{"matchers": ['model=~"beta.*"'], "channels": ["b"]}]})
    with pytest.raises(AttributeError):
        first.channels = ("c",)  # type: ignore[misc]


def test_a_routes_ident_is_unique_and_does_not_depend_on_its_place() -> None:
    alike = {"matchers": ["team=x"], "channels": ["b"], "continue": True}
    routes = [alike, {**alike, "group_by": ["model"]}, {**alike, "channels": ["c"]}, {**alike, "group_wait": "1m"}]
    before = tree({"channels": ["a"], "routes": routes})
    after = tree({"channels": ["a"], "routes": [{"matchers": ["team=y"]}, *routes]})
    idents = [node.ident for node in before.walk()]
    assert len(set(idents)) == len(idents)
    assert [node.ident for node in after.walk() if node.path not in ("0", "0.0")] == idents[1:]
    # the last is alike the first but for its timing: told apart by its rank among them
    swapped = tree({"channels": ["a"], "routes": [routes[3], *routes[1:3], routes[0]]})
    assert [node.ident for node in swapped.walk()] == idents
    # the order of channels and of group_by labels is no change of the route
    reordered = {"matchers": ["team=x"], "channels": ["c", "b"], "group_by": ["model", "desk"]}
    written = {"matchers": ["team=x"], "channels": ["b", "c"], "group_by": ["desk", "model"]}
    assert (
        tree({"channels": ["a"], "routes": [reordered]}).children[0].ident
        == tree({"channels": ["a"], "routes": [written]}).children[0].ident
    )


# --- the walk ------------------------------------------------------------------------------------------------------

WALK = {
    "channels": ["root"],
    "routes": [
        {
            "matchers": ['model=~"alpha.*"'],
            "channels": ["alpha"],
            "routes": [
                {"matchers": ["severity=critical"], "channels": ["alpha-critical"], "continue": True},
                {"matchers": ["team=risk"], "channels": ["alpha-risk"]},
                {"matchers": ["team!=nobody"], "channels": ["alpha-any"]},
            ],
        },
        {"matchers": ["severity=critical"], "channels": ["critical"], "continue": True},
        {"matchers": ["severity=~critical|warning"], "channels": ["serious"], "continue": True},
    ],
}


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({}, ["0"]),  # nothing below matches: the root itself
        ({"model": "beta"}, ["0"]),
        ({"model": "alpha7", "team": "risk"}, ["0.0.1"]),  # first matching child without continue stops the search
        ({"model": "alpha7", "severity": "critical", "team": "risk"}, ["0.0.0", "0.0.1"]),  # continue, then stop
        ({"model": "alpha7", "team": "nobody"}, ["0.0"]),  # no child matches: the parent itself
        ({"model": "alpha7", "severity": "critical", "team": "nobody"}, ["0.0.0"]),
        ({"model": "beta", "severity": "critical"}, ["0.1", "0.2"]),  # continue on the last matching child: done
        ({"model": "beta", "severity": "warning"}, ["0.2"]),
        # a matching first-level child without continue ends the root's search, whatever its children did
        ({"model": "alpha1", "severity": "critical", "team": "ops"}, ["0.0.0", "0.0.2"]),
    ],
)
def test_walk_is_alertmanagers(labels: dict[str, str], expected: list[str]) -> None:
    assert paths(match_routes(tree(WALK), labels)) == expected


def test_missing_label_reads_as_empty() -> None:
    root = tree({"channels": ["a"], "routes": [{"matchers": ['team=""'], "channels": ["b"]}]})
    assert paths(match_routes(root, {})) == ["0.0"]
    assert paths(match_routes(root, {"team": "risk"})) == ["0"]


def test_regexes_are_anchored() -> None:
    root = tree({"channels": ["a"], "routes": [{"matchers": ['model=~"alpha"'], "channels": ["b"]}]})
    assert paths(match_routes(root, {"model": "alpha"})) == ["0.0"]
    assert paths(match_routes(root, {"model": "alpha7"})) == ["0"]
    assert paths(match_routes(root, {"model": "xalpha"})) == ["0"]


# --- windows -------------------------------------------------------------------------------------------------------

TRADING_ROUTES = {
    "channels": ["ops-email"],
    "routes": [
        {
            "matchers": ["severity=critical"],
            "channels": ["ops-sms", "ops-slack"],
            "active_during": ["twse.trading"],
            "routes": [{"matchers": ["team=risk"], "channels": ["risk-sms"]}],
        },
        {
            "matchers": ["severity=critical"],
            "channels": ["ops-email"],
            "muted_during": ["twse.trading"],
            "hold_until": "twse.pre_open",
        },
    ],
}


def fake_windows(*on: str) -> Any:
    def active(name: str, ts: float) -> bool:
        return name in on

    return active


def test_a_route_outside_active_during_falls_through_to_the_next_sibling() -> None:
    root = tree(TRADING_ROUTES)
    critical = {"severity": "critical"}
    assert paths(match_routes(root, critical, at=0.0, window_active=fake_windows("twse.trading"))) == ["0.0"]
    routing = trace_routes(root, critical, at=0.0, window_active=fake_windows())
    assert paths(list(routing.routes)) == ["0.1"]
    assert paths(list(routing.muted)) == ["0.0"]
    assert routing.channels == ("ops-email",)


def test_a_muted_route_skips_its_whole_subtree() -> None:
    root = tree(TRADING_ROUTES)
    labels = {"severity": "critical", "team": "risk"}
    assert paths(match_routes(root, labels, at=0.0, window_active=fake_windows("twse.trading"))) == ["0.0.0"]
    assert paths(match_routes(root, labels, at=0.0, window_active=fake_windows())) == ["0.1"]


def test_a_muted_last_resort_falls_back_to_the_parent() -> None:
    root = tree(TRADING_ROUTES)
    both_muted = fake_windows("twse.trading")
    modified = {**TRADING_ROUTES, "routes": [TRADING_ROUTES["routes"][1]]}
    assert paths(match_routes(tree(modified), {"severity": "critical"}, at=0.0, window_active=both_muted)) == ["0"]
    assert paths(match_routes(root, {"severity": "critical"}, at=0.0, window_active=both_muted)) == ["0.0"]


def test_active_during_any_of_several_windows() -> None:
    root = tree({"channels": ["a"], "routes": [{"channels": ["b"], "active_during": ["twse.trading", "taifex.night"]}]})
    assert paths(match_routes(root, {}, at=0.0, window_active=fake_windows("taifex.night"))) == ["0.0"]
    assert paths(match_routes(root, {}, at=0.0, window_active=fake_windows())) == ["0"]


def test_without_a_time_windows_are_not_looked_at() -> None:
    root = tree(TRADING_ROUTES)
    assert paths(match_routes(root, {"severity": "critical"})) == ["0.0"]
    with pytest.raises(ValueError, match="window_active"):
        match_routes(root, {"severity": "critical"}, at=0.0)


def test_the_remembering_router_answers_as_the_walk_does() -> None:
    from tests.test_routing_amtool import random_labels, random_tree

    for seed in range(4):
        root = tree(random_tree(seed))
        route = remembering_router(root)
        assert route is not None
        rng = random.Random(seed)
        for _ in range(200):
            labels = {**random_labels(rng), "id": str(rng.random())}  # a label no matcher names: not in the key
            walked = trace_routes(root, labels)
            assert route(tuple(sorted(labels.items()))) == walked
            assert route(tuple(sorted(labels.items()))) == walked  # remembered


def test_a_tree_with_time_windows_is_walked_every_time() -> None:
    assert remembering_router(tree(TRADING_ROUTES)) is None


def test_emergency_ignores_windows_of_routes_that_do_not_name_it() -> None:
    root = tree(
        {
            "channels": ["ops-email"],
            "routes": [
                {"matchers": ["model=alpha7"], "channels": ["desk"], "muted_during": ["twse.trading"]},
                {"matchers": ['severity=~"critical|emergency"'], "channels": ["sms"], "muted_during": ["twse.trading"]},
                {"matchers": ["severity!=info"], "channels": ["slack"], "active_during": ["twse.after_close"]},
            ],
        }
    )
    trading = fake_windows("twse.trading")
    emergency = {"severity": "emergency", "model": "alpha7"}
    assert paths(match_routes(root, emergency, at=0.0, window_active=trading)) == ["0.0"]
    assert paths(match_routes(root, {**emergency, "model": "beta"}, at=0.0, window_active=trading)) == ["0.2"]
    critical = {"severity": "critical", "model": "alpha7"}
    assert paths(match_routes(root, critical, at=0.0, window_active=trading)) == ["0"]


def test_names_emergency() -> None:
    def names(*texts: str) -> bool:
        return names_emergency([parse_matcher(t) for t in texts])

    assert names("severity=emergency")
    assert names('severity=~"critical|emergency"')
    assert names("model=a", "severity=emergency")
    assert not names("severity!=info")
    assert not names('severity=~".+"')
    assert not names('severity!~"emergency"')
    assert not names("level=emergency")
    assert not names('severity=~"emergency_x"')


def test_hold_until_is_recorded_and_releases_at_the_windows_opening() -> None:
    root = tree(TRADING_ROUTES)
    email = root.children[1]
    assert email.hold_until == "twse.pre_open"
    critical = {"severity": "critical"}
    assert hold_window(email, critical) == "twse.pre_open"
    assert hold_window(email, {"severity": "emergency"}) is None
    assert hold_window(root, critical) is None

    def next_edge(name: str, ts: float) -> float | None:
        return 1000.0

    closed, opened = fake_windows(), fake_windows("twse.pre_open")
    assert release_at(email, critical, 10.0, window_active=closed, next_edge=next_edge) == 1000.0
    assert release_at(email, critical, 10.0, window_active=opened, next_edge=next_edge) == 10.0
    assert release_at(email, {"severity": "emergency"}, 10.0, window_active=closed, next_edge=next_edge) == 10.0
    assert release_at(email, critical, 10.0, window_active=closed, next_edge=lambda n, t: None) == 10.0


def test_twse_example_with_the_real_calendar() -> None:
    windows = build_windows(None, load_calendars())
    root = tree(TRADING_ROUTES)

    def at(*parts: int) -> float:
        return datetime(*parts, tzinfo=TAIPEI).timestamp()

    def active(name: str, ts: float) -> bool:
        return windows[name].active(ts)

    critical = {"severity": "critical", "alertname": "ic_drop"}
    assert match_routes(root, critical, at=at(2026, 3, 3, 10, 0), window_active=active)[0].channels == (
        "ops-sms",
        "ops-slack",
    )
    evening = at(2026, 3, 3, 19, 0)
    [email] = match_routes(root, critical, at=evening, window_active=active)
    assert email.channels == ("ops-email",)
    release = release_at(email, critical, evening, window_active=active, next_edge=lambda n, t: windows[n].next_edge(t))
    assert release == at(2026, 3, 4, 8, 30)


# --- grouping ------------------------------------------------------------------------------------------------------


def test_group_labels_keep_only_group_by_labels_the_alert_has() -> None:
    root = tree({"channels": ["a"], "group_by": ["alertname", "model"], "routes": [{"matchers": ["x=1"]}]})
    labels = {"alertname": "ic_drop", "model": "alpha7", "venue": "twse", "x": "1"}
    assert group_labels(root, labels) == {"alertname": "ic_drop", "model": "alpha7"}
    assert group_labels(root, {"alertname": "ic_drop", "model": ""}) == {"alertname": "ic_drop"}
    assert group_key(root, labels) == ("0", (("alertname", "ic_drop"), ("model", "alpha7")))
    assert group_key(root, labels) == group_key(root, {**labels, "venue": "tpex"})
    assert group_key(root, labels) != group_key(root.children[0], labels)
    assert group_key_text(root.children[0], labels) == '{}/{x="1"}:{alertname="ic_drop", model="alpha7"}'


def test_group_by_all_groups_by_every_label() -> None:
    root = tree({"channels": ["a"], "group_by": ["..."]})
    labels = {"model": "alpha7", "alertname": "ic_drop", "empty": ""}
    assert group_labels(root, labels) == {"alertname": "ic_drop", "model": "alpha7"}
    assert group_key(root, labels) != group_key(root, {**labels, "venue": "twse"})


def test_no_group_by_puts_every_alert_in_one_group() -> None:
    root = tree({"channels": ["a"]})
    assert group_key(root, {"model": "a"}) == group_key(root, {"model": "b"}) == ("0", ())


# --- problems ------------------------------------------------------------------------------------------------------


def test_bad_matcher_is_reported_at_its_path() -> None:
    raw = {"channels": ["a"], "routes": [{"matchers": ["x=1"], "routes": [{"matchers": ["ok=1", 'model=~"("']}]}]}
    [problem] = problems_of(raw)
    assert problem.startswith("route.routes.0.routes.0.matchers.1: bad regex")


def test_every_problem_is_reported() -> None:
    raw = {
        "channels": ["a"],
        "matchers": ["x=1"],
        "continue": True,
        "group_by": ["...", "model"],
        "routes": [{"group_by": ["model", "model"], "repeat_interval": "0s", "group_interval": "0m"}],
    }
    assert problems_of(raw) == [
        "route.matchers: the root route receives every alert: it cannot have matchers",
        "route.continue: the root route receives every alert: it cannot have continue",
        "route.group_by: '...' (all labels) cannot be mixed with label names",
        "route.routes.0.group_by.1: duplicate label 'model'",
        "route.routes.0.group_interval: group_interval cannot be zero",
        "route.routes.0.repeat_interval: repeat_interval cannot be zero",
    ]


def test_schema_problems() -> None:
    found = problems_of({"routes": [{"channels": [], "group_wait": "soon", "mute": ["x"], "hold_until": "A B"}]})
    assert "route: 'channels' is a required property" in found
    assert any(p.startswith("route.routes.0.channels: [] should be non-empty") for p in found)
    assert any(p.startswith("route.routes.0.group_wait:") for p in found)
    assert any(p.startswith("route.routes.0: Additional properties") and "'mute'" in p for p in found)
    assert any(p.startswith("route.routes.0.hold_until:") for p in found)


def test_route_schema_embeds_in_the_config_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"route": ROUTE_SCHEMA},
        "$defs": {"duration": {"type": "string", "pattern": "^[0-9]+[smh]$"}, "name": {"type": "string"}},
    }
    validator = jsonschema.Draft202012Validator(schema)
    good = {"route": {"channels": ["a"], "routes": [{"routes": [{"matchers": ["x=1"], "group_wait": "1m"}]}]}}
    assert list(validator.iter_errors(good)) == []
    bad = {"route": {"channels": ["a"], "routes": [{"routes": [{"group_wait": "1 minute"}]}]}}
    assert [list(e.absolute_path) for e in validator.iter_errors(bad)] == [
        ["route", "routes", 0, "routes", 0, "group_wait"]
    ]


def test_check_references() -> None:
    root = tree(
        {
            "channels": ["email", "nope"],
            "routes": [
                {"matchers": ["x=1"], "active_during": ["trading", "lunch"], "routes": [{"matchers": ["y=1"]}]},
                {"matchers": ["x=2"], "channels": ["sms", "gone"], "hold_until": "later"},
            ],
        }
    )
    found = check_references(root, locate, channels={"email", "sms"}, windows={"trading"})
    assert [f"{p.path}: {p.message}" for p in found] == [
        "route.channels.1: no channel named 'nope'",
        "route.routes.0.active_during.1: unknown window 'lunch'",
        "route.routes.1.channels.1: no channel named 'gone'",
        "route.routes.1.hold_until: unknown window 'later'",
    ]
    assert check_references(root, locate, channels={"email", "nope", "sms", "gone"}) == []


# --- the CLI -------------------------------------------------------------------------------------------------------

CONFIG = """\
channels:
  - {name: ops-email, kind: webhook, url: "http://127.0.0.1:9/mail"}
  - {name: ops-sms, kind: webhook, url: "http://127.0.0.1:9/sms"}
  - {name: ops-slack, kind: webhook, url: "http://127.0.0.1:9/slack"}
route:
  channels: [ops-email]
  group_by: [alertname, model]
  routes:
    - matchers: ['severity="critical"']
      channels: [ops-sms, ops-slack]
      active_during: [twse.trading]
    - matchers: [severity=critical]
      channels: [ops-email]
      muted_during: [twse.trading]
      hold_until: twse.pre_open
"""


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="alphawatch")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_cli_prints_routes_and_channels_at_an_instant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    labels = ("--labels", "severity=critical", "alertname=ic_drop", "model=alpha7")
    assert run_cli("routes", "test", "-c", str(config), *labels, "--at", "2026-03-03T10:00+08:00") == 0
    out = capsys.readouterr().out
    assert "route 0.0" in out
    assert out.rstrip().endswith("channels: ops-sms, ops-slack")

    assert run_cli("routes", "test", "-c", str(config), *labels, "--at", "2026-03-03T19:00+08:00", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["channels"] == ["ops-email"]
    assert report["routes"][0]["route"] == "0.1"
    assert report["routes"][0]["group_labels"] == {"alertname": "ic_drop", "model": "alpha7"}
    assert report["routes"][0]["held_until"] == {"window": "twse.pre_open", "at": "2026-03-04T08:30:00+08:00"}
    assert report["skipped_for_windows"] == [{"route": "0.0", "active_during": ["twse.trading"], "muted_during": []}]


def test_cli_reports_config_problems_with_their_position(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            route:
              channels: [a]
              routes:
                - matchers: ['model=~"("']
            """
        ),
        encoding="utf-8",
    )
    assert run_cli("routes", "test", "-c", str(config), "--labels", "model=x") == 1
    assert f"{config}:4:" in capsys.readouterr().err
