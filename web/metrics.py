"""Prometheus text exposition of the daemon's own numbers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Metric = tuple[str, str, str, Iterable[tuple[Mapping[str, str], float]]]
"""(name, type, help, [(labels, value), …])"""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(metrics: Iterable[Metric]) -> str:
    lines: list[str] = []
    for name, kind, help_text, samples in metrics:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}")
    return "\n".join(lines) + "\n"
