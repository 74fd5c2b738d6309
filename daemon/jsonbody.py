"""JSON request bodies, refusing what the standard parser lets through but nothing after it can hold.

``json.loads`` accepts a string with a lone surrogate escape (``"\\ud800"`` on its own), which is not Unicode text:
SQLite, UTF-8 and every channel fail on it later. It also overflows the stack on deep nesting and raises
``RecursionError``, not ``ValueError``; and it reads UTF-16, UTF-32 and UTF-8-encoded surrogates from bytes. All
become :class:`BadJson`, a ``ValueError`` whose message is for the client.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a pre-check: valid pairs (escaped emoji) match too


class BadJson(ValueError):
    pass


def loads(body: bytes | str, keys_once: bool = False) -> Any:
    """``json.loads(body)``; raises :class:`BadJson` (or the parser's own ``ValueError``) for a body to refuse.
    Bytes must be UTF-8: ``json.loads`` would also read UTF-16 and UTF-32, and encoded surrogates. With
    ``keys_once`` an object with a key twice is refused (the API's small write bodies; bulk data is read faster
    without the check, taking a repeated key's last value as orjson does)."""
    if isinstance(body, bytes | bytearray):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadJson(f"the body is not UTF-8 text (byte {exc.start}): send UTF-8") from None
    try:
        document = json.loads(body, object_pairs_hook=_once_each) if keys_once else json.loads(body)
    except RecursionError:
        raise BadJson("nested too deeply") from None
    _refuse_lone_surrogates(body, document)
    return document


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys differ: a key given twice (``"duration":"1h","duration":"2h"``) is refused, not read
    as its last value, as a YAML configuration refuses it."""
    document = dict(pairs)
    if len(document) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BadJson(f"the key {key[:40]!r} appears twice in one object")
            seen.add(key)
    return document


def _refuse_lone_surrogates(body: str, document: Any) -> None:
    """Raise :class:`BadJson` naming the first string of ``document`` (parsed from ``body``) that holds a lone
    surrogate. Only a body with a surrogate escape in it is walked."""
    if _SURROGATE_ESCAPE.search(body) is None:
        return
    where = _lone_surrogate_at(document)
    if where is not None:
        raise BadJson(f"the string at {where} holds a lone surrogate escape (such as \\ud800 alone): not Unicode text")


def _lone_surrogate_at(document: Any) -> str | None:
    pending: list[tuple[Any, str]] = [(document, "")]  # not recursive: the parser allows deeper than Python's stack
    while pending:
        value, path = pending.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return path or "the top level"
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if not _encodable(key):
                    return f"{path or 'the top level'} (a key)"
                pending.append((item, f"{path}.{key}" if path else key))
        elif isinstance(value, list):
            pending.extend((item, f"{path}[{index}]") for index, item in reversed(list(enumerate(value))))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
