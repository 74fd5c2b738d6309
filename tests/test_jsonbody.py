"""Request bodies the standard JSON parser accepts but nothing after it could hold."""

from __future__ import annotations

import re

import pytest

from alphawatch.daemon.jsonbody import BadJson, loads


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (rb'"\ud800"', "the top level"),
        (rb'{"a": [1, {"b": "x\udc00y"}]}', "a[1].b"),
        (rb'{"\ud800": 1}', "the top level (a key)"),
        (rb'{"a": {"\udbff": 1}}', "a (a key)"),
        (rb'["\ude00\ud83d"]', "[0]"),  # a pair in the wrong order is two lone halves
    ],
)
def test_a_lone_surrogate_is_named_where_it_is(body: bytes, where: str) -> None:
    with pytest.raises(BadJson, match=re.escape(f"the string at {where} holds")):
        loads(body)
    with pytest.raises(BadJson):
        loads(body.decode())  # text bodies (after a charset decode) too


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (rb'["\ud83d\ude00"]', ["\U0001f600"]),  # an escaped pair is one character
        (rb'["\\ud800"]', ["\\ud800"]),  # an escaped backslash: six characters of text, no surrogate
        ('["台積電"]'.encode(), ["台積電"]),
    ],
)
def test_text_that_is_unicode_passes(body: bytes, value: object) -> None:
    assert loads(body) == value


def test_nesting_deeper_than_the_stack_is_refused_not_crashed() -> None:
    with pytest.raises(BadJson, match="nested too deeply"):
        loads(b"[" * 100_000)
    assert loads(b"[" * 200 + b"]" * 200) is not None


@pytest.mark.parametrize(
    "body",
    [b'["\xed\xa0\x80"]', '["\\ud800"]'.encode("utf-16"), '["a"]'.encode("utf-32"), b'["\xe9t\xe9"]'],
    ids=["encoded-surrogate", "utf-16", "utf-32", "latin-1"],
)
def test_bytes_that_are_not_utf8_are_refused(body: bytes) -> None:
    with pytest.raises(BadJson, match=r"the body is not UTF-8 text \(byte \d+\)"):
        loads(body)


def test_invalid_json_keeps_the_parser_message() -> None:
    with pytest.raises(ValueError, match="Expecting property name"):
        loads(b"{not json")
