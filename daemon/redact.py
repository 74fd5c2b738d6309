"""Secret values out of what a person may see: log lines, configuration errors, the configuration's digest."""

from __future__ import annotations

import json
from collections.abc import Iterable

MASK = "<secret>"
SHORTEST = 4
"""Shorter values are not masked: they would mask ordinary text, and a secret that short guards nothing."""


class Redactor:
    """Replaces each secret, as written and as JSON or ``repr`` escape it (a quote or a backslash in a secret),
    the longest first: a secret that begins another is never left half masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = {form for secret in secrets if len(secret) >= SHORTEST for form in _forms(secret)}
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


def _forms(secret: str) -> set[str]:
    return {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1]}
