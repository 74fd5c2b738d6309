"""Checking a sample batch: a new label set is refused exactly when its stored text is over ``max_label_bytes``."""

from __future__ import annotations

import json
import random

import pytest

from alphawatch.daemon import ingest
from alphawatch.daemon.errors import IngestError
from alphawatch.daemon.ingest import parse_batch
from alphawatch.daemon.store import dump_labels

NOW = 1_780_000_000.0
CHARACTERS = 'abcXYZ09_-. "\\/\n\t\x00\x1f\x7f中文測試é€😀'  # escaped, multi-byte and plain characters


def _label_sets(seed: int, count: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    names = ["model", "desk", "id", "group", "_x", "A9"]
    return [
        {
            name: "".join(rng.choice(CHARACTERS) for _ in range(rng.randint(0, 40)))
            for name in rng.sample(names, rng.randint(1, 4))
        }
        for _ in range(count)
    ]


@pytest.mark.parametrize("seed", range(4))
def test_a_new_label_set_is_refused_exactly_when_its_stored_text_is_over_the_limit(seed: int) -> None:
    for labels in _label_sets(seed, 150):
        size = len(dump_labels(labels).encode())
        for limit in (size - 1, size, size + 1, 6 * size):
            ingest._LABEL_SETS.clear()  # every label set new: the check, not the memory of an earlier batch
            body = json.dumps([{"metric": "m", "labels": labels, "ts": NOW, "value": 1.0}], ensure_ascii=False)
            if size <= limit:
                (sample,) = parse_batch(body.encode(), NOW, limit).samples
                assert sample.labels == tuple(sorted(labels.items()))
            else:
                with pytest.raises(IngestError) as refused:
                    parse_batch(body.encode(), NOW, limit)
                assert f"labels take {size} bytes; the limit is {limit}" in str(refused.value.items)


def test_label_names_are_checked_even_when_a_valid_one_was_seen_before() -> None:
    parse_batch(b'[{"metric":"m","labels":{"model":"a"},"ts":1780000000,"value":1}]', NOW)
    body = b'[{"metric":"m","labels":{"model":"b","bad-name":"x"},"ts":1780000000,"value":1}]'
    with pytest.raises(IngestError) as refused:
        parse_batch(body, NOW)
    assert "labels.bad-name" in str(refused.value.items)


def test_the_names_of_a_refused_label_set_are_not_remembered() -> None:
    body = b'[{"metric":"m","labels":{"unseen_name":"' + b"x" * 2000 + b'"},"ts":1780000000,"value":1}]'
    with pytest.raises(IngestError):
        parse_batch(body, NOW)
    assert "unseen_name" not in ingest._LABEL_NAMES  # a client's refused items keep nothing of theirs alive
    parse_batch(b'[{"metric":"m","labels":{"unseen_name":"x"},"ts":1780000000,"value":1}]', NOW)
    assert "unseen_name" in ingest._LABEL_NAMES
