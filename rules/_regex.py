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
Backreferences, conditional groups and lookarounds are refused too (RE2 has none of them), and so are POSIX
classes (``[[:alpha:]]``: letters in RE2, a set of ``[:alph`` in Python) and patterns over 1,024 characters.

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
_casefix: Any = importlib.import_module("re._casefix")
_sre: Any = importlib.import_module("_sre")

LONGEST = 1024
"""The value length the cost is reckoned on (ingest caps a sample's label set at ``max_label_bytes``, 1 KiB), and
the longest pattern taken (the guard's own time grows with it)."""
BUDGET = math.log(LONGEST * 32)
"""Costs are logarithms: at most 32,768 ways to backtrack. The slowest pattern found under it took under 10 ms on
a 1 KB value; the cheapest slow one found over it costs 263,169 ((?:ab)*(?:ab)*(?:ab)*x: 0.3 s)."""
_LISTED_AT_MOST = 2000  # a character class this small is listed out; larger ones are tested one character at a time
_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
_POSIX = re.compile(r"\[:(alnum|alpha|ascii|blank|cntrl|digit|graph|lower|print|punct|space|upper|word|xdigit):\]")
_ANYTHING = re.compile(".", re.DOTALL)
# re warns that a future Python may read [[ or && inside a class as a nested set or an operation; today (and in RE2)
# they are plain characters, and the one case that differs now, a POSIX class, is refused above: nothing to warn of
warnings.filterwarnings("ignore", r"Possible (nested set|set \w+)", FutureWarning)


class SlowRegex(ValueError):
    """A pattern whose matching time can explode."""


def compile_label_regex(pattern: str) -> re.Pattern[str]:
    """``re.compile(pattern)``; ``ValueError`` (:class:`SlowRegex` for a slow one) when refused."""
    if len(pattern) > LONGEST:
        raise ValueError(f"longer than {LONGEST} characters")
    posix = _POSIX.search(pattern)
    if posix is not None:  # RE2 (Alertmanager) reads letters; Python's re a set of '[:alph' and a ']'
        raise ValueError(f"{posix.group()} is a POSIX class, which Python's re does not read: write it out "
                         "([[:alpha:]] as [A-Za-z])")  # fmt: skip
    try:
        compiled = re.compile(pattern)
        tree = _parser.parse(pattern)
        cost = _Costing(tree.state).sequence(list(tree), _Chars(end=True), bool(tree.state.flags & re.IGNORECASE))
    except (re.error, OverflowError, RecursionError) as exc:
        raise ValueError("nested too deeply" if isinstance(exc, RecursionError) else str(exc)) from None
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
    """The characters that can come at a point: ``listed`` ones (case-folded when ``folded``: under ``(?i)``),
    classes (``.``, ``\\w``, ``[^…]``) kept as one-character matchers, and whether the value may end there."""

    listed: frozenset[int] = frozenset()
    classes: tuple[Any, ...] = ()
    end: bool = False
    folded: bool = False

    def __or__(self, other: _Chars) -> _Chars:
        if self.folded != other.folded:
            return self.fold() | other.fold()
        listed = self.listed | other.listed
        classes = self.classes + other.classes
        if len(listed) > 2 * _LISTED_AT_MOST or len(classes) > 8:  # keep the guard's own work bounded
            return _Chars(classes=(_ANYTHING,), end=self.end or other.end)
        return _Chars(listed, classes, self.end or other.end, self.folded)

    def fold(self) -> _Chars:
        if self.folded:
            return self
        return _Chars(frozenset(map(_fold, self.listed)), self.classes, self.end, True)

    def overlaps(self, other: _Chars) -> bool:
        if self.folded != other.folded:
            return self.fold().overlaps(other.fold())
        if self.listed & other.listed or (self.classes and other.classes):  # two classes: assumed to overlap
            return True
        for listed, classes in ((self.listed, other.classes), (other.listed, self.classes)):
            for matcher in classes:
                if self.folded and not matcher.flags & re.IGNORECASE and listed:
                    return True  # case-folded characters against a case-sensitive class: assumed to overlap
                if any(matcher.fullmatch(chr(code)) for code in listed):
                    return True
        return False


def _fold(code: int) -> int:
    """One code for the characters ``re`` matches alike under (?i): s, S and ſ; k, K and K (Kelvin)."""
    lower = int(_sre.unicode_tolower(code))
    extra: tuple[int, ...] = _casefix._EXTRA_CASES.get(lower, ())
    return min((lower, *extra))


class _Costing:
    def __init__(self, state: Any) -> None:
        self.state = state
        self.firsts: dict[tuple[int, bool], tuple[_Chars, bool]] = {}

    def sequence(self, items: list[Any], follow: _Chars, fold: bool) -> float:
        """The cost of ``items`` matched in a row, then something starting with ``follow``."""
        follows: list[_Chars] = []
        after = follow
        for node in reversed(items):
            follows.append(after)
            first, empty = self.first(node, fold)
            after = first | after if empty else first
        return sum(self.node(node, after, fold) for node, after in zip(items, reversed(follows), strict=True))

    def node(self, node: Any, follow: _Chars, fold: bool) -> float:
        op, arg = node
        name = str(op)
        if op is sre.SUBPATTERN:
            return self.sequence(arg[3], follow, _scoped(fold, arg))
        if op is sre.ATOMIC_GROUP:
            return self.sequence(arg, follow, fold)
        if op is sre.BRANCH:
            alternatives = arg[1]
            seen, ambiguous = _Chars(), False
            for alternative in alternatives:  # one pass: each one's start against those before it
                first, empty = self.first_of(alternative, fold)
                start = first | follow if empty else first
                ambiguous = ambiguous or start.overlaps(seen)
                seen = seen | start
            inner = max(self.sequence(alternative, follow, fold) for alternative in alternatives)
            return inner + (math.log(len(alternatives)) if ambiguous else 0.0)
        if name in _REPEATS:
            low: int = arg[0]
            high: int = arg[1]
            body: list[Any] = arg[2]
            first, empty = self.first_of(body, fold)
            cost = self.sequence(body, first | follow if high > 1 else follow, fold)
            shortest: int = max(1, _parser.SubPattern(self.state, list(body)).getwidth()[0])
            counts = min(high - low + 1, LONGEST // shortest + 1)
            cost *= min(high, LONGEST // shortest + 1)  # its body's choices, again at each time round
            if high != low and name != "POSSESSIVE_REPEAT" and (empty or first.overlaps(follow)):
                cost += math.log(counts)  # one more time or what follows: both can go on
            return cost
        return 0.0

    def first_of(self, items: list[Any], fold: bool) -> tuple[_Chars, bool]:
        """The characters a match of ``items`` can start with, and whether it can match nothing."""
        chars = _Chars()
        for node in items:
            first, empty = self.first(node, fold)
            chars = chars | first
            if not empty:
                return chars, False
        return chars, True

    def first(self, node: Any, fold: bool) -> tuple[_Chars, bool]:
        known = self.firsts.get((id(node), fold))
        if known is None:
            known = self.firsts[(id(node), fold)] = self._first(node, fold)
        return known

    def _first(self, node: Any, fold: bool) -> tuple[_Chars, bool]:
        op, arg = node
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN):
            return self.chars(node, fold), False
        if op is sre.AT:  # anchors take no character
            return _Chars(), True
        if op in (sre.ASSERT, sre.ASSERT_NOT):  # tried again at every position a choice around them retries
            raise SlowRegex("a lookahead or lookbehind (Alertmanager's RE2 has none)")
        if op is sre.SUBPATTERN:
            return self.first_of(arg[3], _scoped(fold, arg))
        if op is sre.ATOMIC_GROUP:
            return self.first_of(arg, fold)
        if op is sre.BRANCH:
            chars, can_be_empty = _Chars(), False
            for alternative in arg[1]:
                first, empty = self.first_of(alternative, fold)
                chars, can_be_empty = chars | first, can_be_empty or empty
            return chars, can_be_empty
        if str(op) in _REPEATS:
            first, empty = self.first_of(arg[2], fold)
            return first, empty or arg[0] == 0
        if op in (sre.GROUPREF, sre.GROUPREF_EXISTS, sre.GROUPREF_IGNORE):
            raise SlowRegex("a backreference or a conditional group (Alertmanager's RE2 has neither)")
        return _Chars(), False

    def chars(self, node: Any, fold: bool) -> _Chars:
        op, arg = node
        listed: set[int] | None = None
        if op is sre.LITERAL:
            listed = {arg}
        elif op is sre.IN and all(kind in (sre.LITERAL, sre.RANGE) for kind, _ in arg):
            spans = [(value, value) if kind is sre.LITERAL else value for kind, value in arg]
            if sum(high - low + 1 for low, high in spans) <= _LISTED_AT_MOST:
                listed = {code for low, high in spans for code in range(low, high + 1)}
        if listed is not None:
            return _Chars(listed=frozenset(listed)).fold() if fold else _Chars(listed=frozenset(listed))
        flags = self.state.flags | re.IGNORECASE if fold else self.state.flags & ~re.IGNORECASE
        return _Chars(classes=(_compiler.compile(_parser.SubPattern(self.state, [node]), flags),), folded=fold)


def _scoped(fold: bool, subpattern: Any) -> bool:
    """Whether a group's contents match ignoring case: ``(?i:…)`` turns it on, ``(?-i:…)`` off."""
    _, add, remove, _ = subpattern
    return bool(add & re.IGNORECASE) or (fold and not remove & re.IGNORECASE)
