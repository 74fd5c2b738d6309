"""YAML with positions: plain data plus the file:line:col of every value, and duplicate keys caught.

PyYAML keeps marks on its node tree but drops them when it builds Python objects, and it silently keeps the
last of two equal keys. Walking the node tree ourselves keeps both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from alphawatch.daemon.errors import Problem

Path = tuple[str | int, ...]

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Located:
    """A parsed document and where each of its values came from."""

    data: Any
    file: str
    marks: dict[Path, tuple[int, int]]

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
    problems: list[Problem] = []
    if node is None:
        return Located(None, file, marks), problems
    data = _walk(loader, node, (), file, marks, problems)
    return Located(data, file, marks), problems


def _walk(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: Path,
    file: str,
    marks: dict[Path, tuple[int, int]],
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
            out[key] = _walk(loader, value_node, (*path, key), file, marks, problems, within)
        return out
    if isinstance(node, yaml.SequenceNode):
        within |= {id(node)}
        return [_walk(loader, item, (*path, i), file, marks, problems, within) for i, item in enumerate(node.value)]
    return _scalar(loader, node, refuse)


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
