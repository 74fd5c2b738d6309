"""Inhibition with Alertmanager's semantics, the ``inhibit_rules:`` section's checks, and silence-before-inhibition."""

from __future__ import annotations

from typing import Any

import pytest

from alphawatch.daemon.errors import ConfigError, Problem
from alphawatch.daemon.inhibition import INHIBIT_RULES_SCHEMA, InhibitRule, build_inhibit_rules, inhibitor
from alphawatch.daemon.silences import parse_silence
from alphawatch.daemon.store import open_store
from alphawatch.daemon.suppression import Suppressions

T0 = 1_767_225_600.0


def locate(path: tuple[str | int, ...], message: str) -> Problem:
    return Problem("monitor.yaml", 1, 1, ".".join(str(p) for p in ("inhibit_rules", *path)), message)


def rules(*raw: dict[str, Any]) -> tuple[InhibitRule, ...]:
    return build_inhibit_rules(list(raw), locate)


FEED_DOWN = {"source_matchers": ["alertname=FeedDown"], "target_matchers": ['alertname=~"IC.*"'], "equal": ["model"]}
IC = {"alertname": "ICDecay", "model": "a7", "severity": "warning"}
FEED = {"alertname": "FeedDown", "model": "a7", "severity": "critical"}


@pytest.mark.parametrize(
    ("rule", "target", "firing", "inhibited_by"),
    [
        pytest.param(FEED_DOWN, IC, {"f": FEED}, "f", id="feed down inhibits the IC alert of the same model"),
        pytest.param(FEED_DOWN, IC, {"f": {**FEED, "model": "b2"}}, None, id="another model's feed does not"),
        pytest.param(FEED_DOWN, IC, {}, None, id="no source firing"),
        pytest.param(FEED_DOWN, {**IC, "alertname": "Drift"}, {"f": FEED}, None, id="target matchers do not match"),
        pytest.param(FEED_DOWN, IC, {"f": {**FEED, "alertname": "FeedLate"}}, None, id="source matchers do not"),
        pytest.param(
            FEED_DOWN, {k: v for k, v in IC.items() if k != "model"},
            {"f": {k: v for k, v in FEED.items() if k != "model"}}, "f", id="equal label missing on both sides",
        ),
        pytest.param(
            FEED_DOWN, {**IC, "model": ""}, {"f": {k: v for k, v in FEED.items() if k != "model"}}, "f",
            id="empty equals missing",
        ),
        pytest.param(
            FEED_DOWN, IC, {"f": {k: v for k, v in FEED.items() if k != "model"}}, None,
            id="equal label missing on one side",
        ),
        pytest.param({**FEED_DOWN, "equal": []}, IC, {"f": {**FEED, "model": "b2"}}, "f", id="no equal labels"),
        pytest.param(
            {**FEED_DOWN, "equal": ["model", "desk"]}, {**IC, "desk": "tw"}, {"f": {**FEED, "desk": "hk"}}, None,
            id="every equal label must agree",
        ),
        pytest.param(
            {"source_matchers": ["severity=critical"], "target_matchers": ["severity=warning"], "equal": ["model"]},
            IC, {"f": FEED, "g": {**FEED, "alertname": "Other"}}, "f", id="the first source by fingerprint",
        ),
        pytest.param(
            {"source_matchers": ['alertname=~"IC.*"'], "target_matchers": ['alertname=~"IC.*"'], "equal": ["model"]},
            IC, {"self": IC, "t": {**IC, "alertname": "ICLow"}}, None,
            id="alerts matching both sides never inhibit each other",
        ),
        pytest.param(
            {"source_matchers": ['alertname=~"IC.*"'], "target_matchers": ["severity=warning"], "equal": ["model"]},
            IC, {"self": IC}, None, id="an alert does not inhibit itself",
        ),
        pytest.param(
            {"source_matchers": ["severity=critical"], "target_matchers": ['severity=~"warning|critical"'],
             "equal": ["model"]},
            IC, {"f": FEED}, "f", id="two-sided target, one-sided source",
        ),
        pytest.param(FEED_DOWN, {**IC, "severity": "emergency"}, {"f": FEED}, None, id="emergency is not inhibited"),
        pytest.param(
            {**FEED_DOWN, "target_matchers": ['alertname=~"IC.*"', 'severity=~"warning|emergency"']},
            {**IC, "severity": "emergency"}, {"f": FEED}, "f", id="unless the target matchers name it",
        ),
        pytest.param(
            {**FEED_DOWN, "target_matchers": ['alertname=~"IC.*"', "severity!=info"]},
            {**IC, "severity": "emergency"}, {"f": FEED}, None, id="a negative matcher does not name it",
        ),
        pytest.param(
            {**FEED_DOWN, "source_matchers": ['alertname=~"Feed.*"', "severity!=info"]},
            IC, {"f": {**FEED, "severity": "emergency"}}, "f", id="an emergency source inhibits",
        ),
    ],
)  # fmt: skip
def test_inhibition(
    rule: dict[str, Any], target: dict[str, str], firing: dict[str, dict[str, str]], inhibited_by: str | None
) -> None:
    everyone = {"self": target, **firing} if "self" not in firing else firing
    found = inhibitor(rules(rule), "self", target, everyone.items())
    assert (found[1] if found else None) == inhibited_by
    # the order firing alerts come in does not change the answer
    again = inhibitor(rules(rule), "self", target, reversed(list(everyone.items())))
    assert (again[1] if again else None) == inhibited_by


@pytest.mark.parametrize(
    ("raw", "where", "message"),
    [
        ([{"target_matchers": ["a=b"]}], "inhibit_rules.0", "'source_matchers' is a required property"),
        ([{"source_matchers": [], "target_matchers": ["a=b"]}], "inhibit_rules.0.source_matchers", "non-empty"),
        ([{**FEED_DOWN, "equal": ["bad-name"]}], "inhibit_rules.0.equal.0", "does not match"),
        ([{**FEED_DOWN, "equal": ["model", "model"]}], "inhibit_rules.0.equal.1", "duplicate label 'model'"),
        ([{**FEED_DOWN, "source_matchers": ["a=b", "??"]}], "inhibit_rules.0.source_matchers.1", "not a matcher"),
        ([{**FEED_DOWN, "target_matchers": ['a=~"("']}], "inhibit_rules.0.target_matchers.0", "bad regex"),
        ([{**FEED_DOWN, "extra": 1}], "inhibit_rules.0", "Additional properties"),
        ({"source_matchers": []}, "inhibit_rules", "is not of type 'array'"),
    ],
)  # fmt: skip
def test_bad_rules_are_reported_where_they_are(raw: Any, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_inhibit_rules(raw, locate)
    assert any(p.path == where and message in p.message for p in caught.value.problems), caught.value.problems


def test_every_problem_is_reported() -> None:
    raw = [{**FEED_DOWN, "source_matchers": ["??"]}, {**FEED_DOWN, "equal": ["m", "m"]}]
    with pytest.raises(ConfigError) as caught:
        build_inhibit_rules(raw, locate)
    assert len(caught.value.problems) == 2


def test_rules_are_frozen_hashable_and_compare_by_value() -> None:
    first, second = rules(FEED_DOWN), rules(FEED_DOWN)
    assert first == second
    assert hash(first) == hash(second)
    assert build_inhibit_rules(None, locate) == ()
    assert INHIBIT_RULES_SCHEMA["type"] == "array"
    assert "inhibit_rules[0]" in first[0].describe()


async def test_a_silence_is_the_reason_before_an_inhibition() -> None:
    async with open_store(":memory:", inline=True) as store:
        suppressions = await Suppressions.load(store, rules(FEED_DOWN), now=T0)
        inhibited = suppressions.reason("ic", IC, T0, [("f", FEED), ("ic", IC)])
        assert inhibited is not None
        assert (inhibited.kind, inhibited.ref) == ("inhibited", "f")
        assert "FeedDown" in inhibited.detail
        changed = suppressions.changed()
        made = parse_silence(
            {"matchers": ["model=a7"], "duration": "1h", "created_by": "ann", "comment": "maintenance"}, T0
        )
        await suppressions.add_silence(made)
        assert changed.is_set()
        silenced = suppressions.reason("ic", IC, T0, [("f", FEED), ("ic", IC)])
        assert silenced is not None
        assert (silenced.kind, silenced.ref) == ("silence", made.id)


async def test_new_rules_on_reload_signal_a_change() -> None:
    async with open_store(":memory:", inline=True) as store:
        suppressions = await Suppressions.load(store, (), now=T0)
        assert suppressions.reason("ic", IC, T0, [("f", FEED)]) is None
        unchanged = suppressions.changed()
        suppressions.set_inhibit_rules(())
        assert not unchanged.is_set()
        suppressions.set_inhibit_rules(rules(FEED_DOWN))
        assert unchanged.is_set()
        assert suppressions.reason("ic", IC, T0, [("f", FEED)]) is not None
