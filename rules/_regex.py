"""Label regexes: Python's ``re``, refusing the patterns whose matching time can explode.

``re`` backtracks, and a match cannot be interrupted: one silence matcher like ``(a|aa)*c`` on a 60-character
label holds the event loop for ever, and ``.*a.*a.*x`` takes seconds on 1,024 characters. Alertmanager's Go
regexps (RE2) run in linear time; no RE2 binding is at hand, so each pattern is costed when it is parsed.

The cost counts the ways backtracking can come back to a choice. A choice is a variable repeat (one more time,
or what follows) or an alternation (which branch). It is *deterministic* when the characters that can start each
option are disjoint: ``[a-z]+(-[a-z0-9]+)*`` decides every step by one character and costs nothing. An ambiguous
choice multiplies the paths by its range (a repeat's possible counts on a 1 KB value, a branch's alternatives);
the body of a repeat pays its own cost once per iteration, so ``(a|aa)*`` is exponential. A pattern costing more
than ``BUDGET`` is refused; one ambiguous unbounded repeat (``.*foo``) is within it, two (``.*a.*a.*x``,
``.*prod.*eu.*``) are not.
Backreferences and conditional groups are refused too (RE2 has neither).

A fuzzer over a corpus of common Alertmanager matchers (versions, IPs, host names, ``(prod|staging)-.*``) found
the worst accepted one at 6 ms on an adversarial 1 KB value; every slow one it found is refused (0.3 s to for
ever). Of that corpus, ``(.+)@(.+)\\.(.+)`` is refused (0.4 s on ``'@.' * 511 + '\\n'``).
"""

from __future__ import annotations

import importlib
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

# the parser's tree and compiler: private modules of re, the same from 3.11 on (typeshed does not describe them)
sre: Any = importlib.import_module("re._constants")
_parser: Any = importlib.import_module("re._parser")
_compiler: Any = importlib.import_module("re._compiler")

LONGEST = 1024
"""The value length the cost is reckoned on (ingest caps a sample's label set at ``max_label_bytes``, 1 KiB)."""
BUDGET = math.log(LONGEST * 32)
"""Costs are logarithms: at most 32,768 ways to backtrack. The slowest pattern found under it took under 10 ms on
a 1 KB value; the cheapest slow one found over it costs 263,169 ((?:ab)*(?:ab)*(?:ab)*x: 0.3 s)."""
_LISTED_AT_MOST = 2000  # a character class this small is listed out; larger ones are tested one character at a time
_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")


class SlowRegex(ValueError):
    """A pattern whose matching time can explode."""


def compile_label_regex(pattern: str) -> re.Pattern[str]:
    """``re.compile(pattern)``; ``ValueError`` (:class:`SlowRegex` for a slow one) when refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)  # syntax whose meaning Python will change
            compiled = re.compile(pattern)
    except FutureWarning as exc:  # [[:alpha:]] is a POSIX class in RE2 (Alertmanager), a set of '[:alph' here
        raise ValueError(
            f"{exc}: write POSIX classes out ([[:alpha:]] as [A-Za-z]), escape a literal [ as \\["
        ) from None
    except (re.error, OverflowError, RecursionError) as exc:
        raise ValueError("nested too deeply" if isinstance(exc, RecursionError) else str(exc)) from None
    tree = _parser.parse(pattern)
    cost = _Costing(tree.state).sequence(list(tree), _Chars(end=True))
    if cost > BUDGET + 1e-9:
        ways = f"{math.exp(cost):.2g}" if cost < 700 else "more than 10^300"
        raise SlowRegex(
            f"{ways} ways to backtrack (at most {LONGEST * 32}): its matching time can explode; use fewer wildcards"
            ' that can match the same text (two matchers on one label, like m=~".*prod.*" and m=~".*eu.*",'
            " must both hold)"
        )
    return compiled


@dataclass(frozen=True)
class _Chars:
    """The characters that can come at a point: ``listed`` ones, classes (``.``, ``\\w``, ``[^…]``) kept as
    one-character matchers, and whether the value may end there."""

    listed: frozenset[int] = frozenset()
    classes: tuple[Any, ...] = ()
    end: bool = False

    def __or__(self, other: _Chars) -> _Chars:
        return _Chars(self.listed | other.listed, self.classes + other.classes, self.end or other.end)

    def overlaps(self, other: _Chars) -> bool:
        if self.listed & other.listed or (self.classes and other.classes):  # two classes: assumed to overlap
            return True
        return any(
            matcher.fullmatch(chr(code)) for a, b in ((self, other), (other, self)) for matcher in b.classes
            for code in a.listed
        )  # fmt: skip


class _Costing:
    def __init__(self, state: Any) -> None:
        self.state = state
        self.ignore_case = bool(state.flags & re.IGNORECASE)

    def sequence(self, items: list[Any], follow: _Chars) -> float:
        """The cost of ``items`` matched in a row, then something starting with ``follow``."""
        follows: list[_Chars] = []
        after = follow
        for node in reversed(items):
            follows.append(after)
            first, empty = self.first(node)
            after = first | after if empty else first
        return sum(self.node(node, after) for node, after in zip(items, reversed(follows), strict=True))

    def node(self, node: Any, follow: _Chars) -> float:
        op, arg = node
        name = str(op)
        if op is sre.SUBPATTERN:
            return self.sequence(arg[3], follow)
        if op is sre.ATOMIC_GROUP:
            return self.sequence(arg, follow)
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            return self.sequence(arg[1], _Chars(end=True))
        if op in (sre.GROUPREF, sre.GROUPREF_EXISTS, sre.GROUPREF_IGNORE):
            raise SlowRegex("a backreference or a conditional group (Alertmanager's RE2 has neither)")
        if op is sre.BRANCH:
            alternatives = arg[1]
            starts = []
            for alternative in alternatives:
                first, empty = self.first_of(alternative)
                starts.append(first | follow if empty else first)
            inner = max(self.sequence(alternative, follow) for alternative in alternatives)
            ambiguous = any(starts[i].overlaps(starts[j]) for i in range(len(starts)) for j in range(i))
            return inner + (math.log(len(alternatives)) if ambiguous else 0.0)
        if name in _REPEATS:
            low: int = arg[0]
            high: int = arg[1]
            body: list[Any] = arg[2]
            first, empty = self.first_of(body)
            cost = self.sequence(body, first | follow if high > 1 else follow)
            shortest: int = max(1, _parser.SubPattern(self.state, list(body)).getwidth()[0])
            counts = min(high - low + 1, LONGEST // shortest + 1)
            cost *= min(high, LONGEST // shortest + 1)  # its body's choices, again at each time round
            if high != low and name != "POSSESSIVE_REPEAT" and (empty or first.overlaps(follow)):
                cost += math.log(counts)  # one more time or what follows: both can go on
            return cost
        return 0.0

    def first_of(self, items: list[Any]) -> tuple[_Chars, bool]:
        """The characters a match of ``items`` can start with, and whether it can match nothing."""
        chars = _Chars()
        for node in items:
            first, empty = self.first(node)
            chars = chars | first
            if not empty:
                return chars, False
        return chars, True

    def first(self, node: Any) -> tuple[_Chars, bool]:
        op, arg = node
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN):
            return self.chars(node), False
        if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):  # anchors and lookarounds take no character
            return _Chars(), True
        if op is sre.SUBPATTERN:
            return self.first_of(arg[3])
        if op is sre.ATOMIC_GROUP:
            return self.first_of(arg)
        if op is sre.BRANCH:
            chars, can_be_empty = _Chars(), False
            for alternative in arg[1]:
                first, empty = self.first_of(alternative)
                chars, can_be_empty = chars | first, can_be_empty or empty
            return chars, can_be_empty
        if str(op) in _REPEATS:
            first, empty = self.first_of(arg[2])
            return first, empty or arg[0] == 0
        if op in (sre.GROUPREF, sre.GROUPREF_EXISTS, sre.GROUPREF_IGNORE):
            raise SlowRegex("a backreference or a conditional group (Alertmanager's RE2 has neither)")
        return _Chars(), False

    def chars(self, node: Any) -> _Chars:
        op, arg = node
        listed: set[int] | None = None
        if not self.ignore_case:  # under (?i) s and ſ, k and K (Kelvin) match alike: every class is tested instead
            if op is sre.LITERAL:
                listed = {arg}
            elif op is sre.IN and all(kind in (sre.LITERAL, sre.RANGE) for kind, _ in arg):
                spans = [(value, value) if kind is sre.LITERAL else value for kind, value in arg]
                if sum(high - low + 1 for low, high in spans) <= _LISTED_AT_MOST:
                    listed = {code for low, high in spans for code in range(low, high + 1)}
        if listed is not None:
            return _Chars(listed=frozenset(listed))
        return _Chars(classes=(_compiler.compile(_parser.SubPattern(self.state, [node]), self.state.flags),))
