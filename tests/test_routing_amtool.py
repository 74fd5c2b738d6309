"""Differential test: our routing tree walk against Alertmanager's own, ``amtool config routes test``.

Seeded random trees (nested, with ``continue``, regex and negative matchers, inherited channels) are written in
both formats; each alphawatch route's channel list is an Alertmanager receiver named by joining them with ``+``.
Random label sets must reach the same receivers, in the same order, in both.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from alphawatch.daemon.errors import Problem
from alphawatch.daemon.routing import build_route_tree, match_routes

AMTOOL = "/usr/bin/amtool"
pytestmark = pytest.mark.skipif(
    shutil.which(AMTOOL) is None,
    reason=f"{AMTOOL} missing: install the Debian package prometheus-alertmanager (.ci/run does)",
)

LABELS = {
    "severity": ["info", "warning", "critical", "emergency"],
    "model": ["alpha1", "alpha7", "beta2", "gamma"],
    "team": ["quant", "risk", "ops"],
    "venue": ["twse", "tpex", "taifex"],
}
CHANNELS = ["ops-email", "ops-sms", "ops-slack", "risk-webhook", "quant-slack", "desk-sms"]
# Regexes valid and equal in Go's RE2 and Python's re (Alertmanager anchors them as ^(?:re)$; we fullmatch).
REGEXES = {
    "severity": ["critical|emergency", "warn.*", "(info|warning)"],
    "model": ["alpha.*", "alpha[0-9]", "beta2|gamma", ".*a.*"],
    "team": ["quant|risk", "r.*", "o.s"],
    "venue": ["tw.*", "t(pex|aifex)", "taifex"],
}
TREES = 4
LABEL_SETS_PER_TREE = 100


def _matcher(rng: random.Random) -> str:
    name = rng.choice(sorted(LABELS))
    op = rng.choice(["=", "=", "!=", "=~", "=~", "!~"])
    value = rng.choice(REGEXES[name]) if "~" in op else rng.choice([*LABELS[name], ""] if op == "!=" else LABELS[name])
    return f'{name}{op}"{value}"'


def _route(rng: random.Random, depth: int) -> dict[str, Any]:
    route: dict[str, Any] = {"matchers": [_matcher(rng) for _ in range(rng.choice([1, 1, 1, 2]))]}
    if rng.random() < 0.7:  # else inherited from the parent
        route["channels"] = rng.sample(CHANNELS, rng.choice([1, 2, 3]))
    if rng.random() < 0.4:
        route["continue"] = True
    if depth < 3 and rng.random() < 0.5:
        route["routes"] = [_route(rng, depth + 1) for _ in range(rng.randint(1, 4))]
    return route


def random_tree(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    return {"channels": ["ops-email"], "routes": [_route(rng, 1) for _ in range(rng.randint(3, 6))]}


def alertmanager_config(tree: dict[str, Any]) -> dict[str, Any]:
    receivers: set[str] = set()

    def convert(route: dict[str, Any], parent: str) -> dict[str, Any]:
        receiver = "+".join(route["channels"]) if "channels" in route else parent
        receivers.add(receiver)
        out: dict[str, Any] = {}
        if "channels" in route:
            out["receiver"] = receiver
        for key in ("matchers", "continue"):
            if key in route:
                out[key] = route[key]
        if "routes" in route:
            out["routes"] = [convert(child, receiver) for child in route["routes"]]
        return out

    root = convert(tree, "")
    return {"route": root, "receivers": [{"name": name} for name in sorted(receivers)]}


def random_labels(rng: random.Random) -> dict[str, str]:
    return {name: rng.choice(values) for name, values in LABELS.items() if rng.random() < 0.8}


def amtool_receivers(config: Path, labels: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [AMTOOL, "config", "routes", "test", f"--config.file={config}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip().split(",")


def _locate(path: tuple[str | int, ...], message: str) -> Problem:
    return Problem("tree", 0, 0, str(path), message)


def test_same_receivers_as_amtool(tmp_path: Path) -> None:
    cases: list[tuple[Path, dict[str, str], list[str]]] = []
    walks: set[tuple[int, tuple[str, ...]]] = set()
    for seed in range(TREES):
        raw = random_tree(seed)
        config = tmp_path / f"alertmanager-{seed}.yml"
        config.write_text(yaml.safe_dump(alertmanager_config(raw), sort_keys=False), encoding="utf-8")
        tree = build_route_tree(raw, _locate)
        rng = random.Random(1000 + seed)
        for _ in range(LABEL_SETS_PER_TREE):
            labels = random_labels(rng)
            routes = match_routes(tree, labels)
            walks.add((seed, tuple(node.path for node in routes)))
            cases.append((config, labels, ["+".join(node.channels) for node in routes]))

    with ThreadPoolExecutor(max_workers=8) as pool:
        theirs = list(pool.map(lambda case: amtool_receivers(case[0], case[1]), cases))

    mismatches = [
        (config.name, labels, ours, t) for (config, labels, ours), t in zip(cases, theirs, strict=True) if ours != t
    ]
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ, e.g. {mismatches[:3]}"
    # the generated cases exercise the interesting paths: several receivers, deep routes, the root as fallback
    assert sum(len(ours) > 1 for _, _, ours in cases) >= 20
    assert sum(ours == ["ops-email"] for _, _, ours in cases) >= 20
    assert len(walks) >= 25
    assert any(len(path.split(".")) >= 4 for _, paths in walks for path in paths)


def test_amtool_reads_the_tree_the_way_we_do(tmp_path: Path) -> None:
    """A hand-written case: continue on the last matching child, and a child that inherits the receiver."""
    raw = {
        "channels": ["ops-email"],
        "routes": [
            {
                "matchers": ['model=~"alpha.*"'],
                "channels": ["ops-slack"],
                "continue": True,
                "routes": [{"matchers": ["team!=risk"], "continue": True}],
            },
            {"matchers": ["severity=critical"], "channels": ["ops-sms", "ops-slack"]},
        ],
    }
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config(raw)), encoding="utf-8")
    tree = build_route_tree(raw, _locate)
    for labels, expected in [
        ({"model": "alpha7", "severity": "critical"}, ["ops-slack", "ops-sms+ops-slack"]),
        ({"model": "alpha7", "team": "risk"}, ["ops-slack"]),
        ({"model": "beta2"}, ["ops-email"]),
    ]:
        ours = ["+".join(node.channels) for node in match_routes(tree, labels)]
        assert ours == expected
        assert amtool_receivers(config, labels) == expected
