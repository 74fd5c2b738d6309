"""Label regexes: Python's ``re``, refusing the patterns whose matching time can explode.

``re`` backtracks, and a match cannot be interrupted: one matcher like ``(a|aa)*c`` on a 60-character label
holds the event loop for ever, and ``.*a.*a.*a.*x`` takes 44 s on 1,024. Alertmanager's Go regexps (RE2) run in
linear time; no RE2 binding is at hand, so the shapes that make backtracking blow up are refused when the matcher
is parsed, with the reason:

- a variable repeat inside a repeat: ``(a+)+``, ``(a?){25}``, ``(\\d+\\.)+`` (write ``[0-9.]+``);
- alternatives that can start alike inside a repeat: ``(a|aa)*``, ``(\\w|\\d)+``; ``(foo|bar)+`` is fine;
- more than three unbounded repeats in one pattern (three: at worst ≈ 0.2 s on a 1 KB label).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

# the parser's tree: private modules of re, the same from 3.11 on (typeshed does not describe them)
sre: Any = importlib.import_module("re._constants")
_parser: Any = importlib.import_module("re._parser")

UNBOUNDED_AT_MOST = 3


class SlowRegex(ValueError):
    """A pattern whose matching time can explode."""


def compile_label_regex(pattern: str) -> re.Pattern[str]:
    """``re.compile(pattern)``; :class:`SlowRegex` or ``re.error``-based ``ValueError`` when refused."""
    try:
        compiled = re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        raise ValueError("nested too deeply" if isinstance(exc, RecursionError) else str(exc)) from None
    reason = _explosive(_parser.parse(pattern))
    if reason is not None:
        raise SlowRegex(f"{reason}: its matching time can explode on some values")
    return compiled


def _explosive(tree: Any) -> str | None:
    unbounded = [0]
    reason = _walk(tree, False, unbounded)
    if reason is None and unbounded[0] > UNBOUNDED_AT_MOST:
        reason = f"{unbounded[0]} unbounded repeats (*, +, {{n,}}); at most {UNBOUNDED_AT_MOST}"
    return reason


def _walk(items: Any, repeated: bool, unbounded: list[int]) -> str | None:
    """``repeated``: inside a repeat that can run more than once."""
    for op, arg in items:
        found = None
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            low, high, sub = arg
            if high == sre.MAXREPEAT:
                unbounded[0] += 1
            if repeated and low != high:
                return "a variable repeat inside a repeat, like (a+)+"
            found = _walk(sub, repeated or high > 1, unbounded)
        elif op is sre.SUBPATTERN:
            found = _walk(arg[3], repeated, unbounded)
        elif op is sre.ATOMIC_GROUP:
            found = _walk(arg, repeated, unbounded)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            found = _walk(arg[1], repeated, unbounded)
        elif op is sre.BRANCH:
            alternatives = arg[1]
            if repeated and _may_start_alike(alternatives):
                return "alternatives that can start alike inside a repeat, like (a|aa)*"
            for alternative in alternatives:
                found = found or _walk(alternative, repeated, unbounded)
        elif op is sre.GROUPREF_EXISTS:
            found = _walk(arg[1], repeated, unbounded) or (arg[2] and _walk(arg[2], repeated, unbounded))
        if found:
            return found
    return None


def _may_start_alike(alternatives: Any) -> bool:
    firsts = [_first_chars(alternative) for alternative in alternatives]
    if any(chars is None for chars in firsts):
        return True
    firsts = [{ord(chr(code).lower()) for code in chars} for chars in firsts if chars is not None]  # (?i) too
    seen: set[int] = set()
    for chars in firsts:
        assert chars is not None
        if seen & chars:
            return True
        seen |= chars
    return False


def _first_chars(items: Any) -> set[int] | None:
    """The characters a match of ``items`` can start with; ``None`` for any (or for empty)."""
    for op, arg in items:
        if op is sre.AT:  # an anchor matches no character: look at what follows
            continue
        if op is sre.LITERAL:
            return {arg}
        if op is sre.IN and all(kind is sre.LITERAL for kind, _ in arg):
            return {code for _, code in arg}
        if op is sre.SUBPATTERN:
            return _first_chars(arg[3])
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and arg[0] > 0:
            return _first_chars(arg[2])
        return None  # classes, ranges, optional parts, lookarounds: could be anything
    return None
