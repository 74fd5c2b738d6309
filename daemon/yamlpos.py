"""YAML with positions: plain data plus the file:line:col of every value, and duplicate keys caught.

PyYAML keeps marks on its node tree but drops them when it builds Python objects, and it silently keeps the
last of two equal keys. Walking the node tree ourselves keeps both. Numbers are also read as YAML 1.2 writes them
(``1e-3``, not only YAML 1.1's ``1.0e-3``), as editors checking our JSON schema do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from alphawatch.daemon.errors import Problem

Path = tuple[str | int, ...]

if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):
    """The safe loader, and YAML 1.2 floats YAML 1.1 reads as text: an exponent without a dot or without a sign
    (``1e-3``, ``1.5e3``), a signed fraction (``-.5``). Integers resolve as before (``017`` is still 15)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?$|^[-+]?[0-9]+[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


@dataclass(frozen=True)
class Located:
    """A parsed document and where each of its values came from."""

    data: Any
    file: str
    marks: dict[Path, tuple[int, int]]
    numbers: dict[Path, str] = field(default_factory=dict)
    """The text of each value YAML read as a number, as written (``1e3``, ``017``): messages quote it."""

    def problem(self, path: Path, message: str) -> Problem:
        """A problem at ``path``, located at the nearest value that has a mark."""
        probe = path
        while probe not in self.marks and probe:
            probe = probe[:-1]
        line, column = self.marks.get(probe, (0, 0))
        return Problem(self.file, line, column, format_path(path), message)


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_located(text: str, file: str) -> tuple[Located, list[Problem]]:
    """Parse one YAML document. Returns the data (``None`` for an empty file) and every problem found."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        return Located(None, file, {}), [Problem(file, line, column, "", f"YAML syntax: {exc.problem}")]
    finally:
        loader.dispose()
    marks: dict[Path, tuple[int, int]] = {}
    numbers: dict[Path, str] = {}
    problems: list[Problem] = []
    if node is None:
        return Located(None, file, marks), problems
    data = _walk(loader, node, (), file, marks, numbers, problems)
    return Located(data, file, marks, numbers), problems


def _walk(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: Path,
    file: str,
    marks: dict[Path, tuple[int, int]],
    numbers: dict[Path, str],
    problems: list[Problem],
    within: frozenset[int] = frozenset(),
) -> Any:
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    marks[path] = (line, column)

    def refuse(message: str) -> None:
        problems.append(Problem(file, line, column, format_path(path), message))

    if id(node) in within:  # an alias of a node around it: the value would contain itself
        refuse("an alias refers to a value that contains it")
        return None
    if isinstance(node, yaml.MappingNode):
        within |= {id(node)}
        try:
            loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            refuse(f"YAML: {exc.problem}")
            return {}
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(loader, key_node, refuse)
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                at = key_node.start_mark
                first = marks.get((*path, key), (0, 0))[0]
                problems.append(
                    Problem(file, at.line + 1, at.column + 1, format_path((*path, key)),
                            f"duplicate key (first at line {first})")
                )  # fmt: skip
            out[key] = _walk(loader, value_node, (*path, key), file, marks, numbers, problems, within)
        return out
    if isinstance(node, yaml.SequenceNode):
        within |= {id(node)}
        return [
            _walk(loader, item, (*path, i), file, marks, numbers, problems, within) for i, item in enumerate(node.value)
        ]
    value = _scalar(loader, node, refuse)
    if isinstance(value, int | float) and not isinstance(value, bool):
        numbers[path] = node.value
    return value


def _scalar(loader: yaml.SafeLoader, node: yaml.Node, refuse: Callable[[str], None]) -> Any:
    """A scalar's value; ``None`` after a problem: a tag that cannot build it (``!!int abc``, ``2026-02-30``,
    ``!!binary`` that is not base64), or a number no setting can hold (``.nan``, ``.inf``, 400 digits)."""
    try:
        value = loader.construct_object(node)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:  # (binascii.Error is a ValueError)
        refuse(f"YAML: cannot read this {node.tag.rpartition(':')[2]} value: {getattr(exc, 'problem', None) or exc}")
        return None
    if isinstance(value, float) and not math.isfinite(value):
        refuse("numbers must be finite (not .nan or .inf)")
        return None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _LARGEST_INT:
        refuse(f"{str(value)[:20]}… is too large a number")
        return None
    return value


_LARGEST_INT = 2**63 - 1  # what SQLite stores, and far beyond any setting
