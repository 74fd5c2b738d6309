"""Prometheus text exposition of the daemon's own numbers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Metric = tuple[str, str, str, Iterable[tuple[Mapping[str, str], float]]]
"""(name, type, help, [(labels, value), …])"""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    """Exact: integers as integers, floats with every digit (``%g`` would round a timestamp to 1.79568e+09)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render_metrics(metrics: Iterable[Metric]) -> str:
    lines: list[str] = []
    for name, kind, help_text, samples in metrics:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            number = _number(value)
            lines.append(f"{name}{{{label_text}}} {number}" if label_text else f"{name} {number}")
    return "\n".join(lines) + "\n"
