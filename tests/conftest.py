"""Shared fixtures: configuration files in a temporary folder, and a webhook receiver on 127.0.0.1."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.http_receiver import Receiver
from tests.tls import certificate  # noqa: F401 - a fixture, shared by the TLS tests


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a YAML configuration (dedented) to tmp_path; returns its path."""

    def write(text: str, name: str = "monitor.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running
