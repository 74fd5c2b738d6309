"""The live status page: rules and active alerts, refreshed by Server-Sent Events.

The page is static HTML; its script fetches the JSON API and writes every value with ``textContent``, so nothing
from a label or an error message is ever interpreted as HTML.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from functools import cache
from importlib import resources

from alphawatch.web.i18n import words


def render_page(language: str) -> str:
    text = words(language)
    template = _template()
    lang = "zh-Hant-TW" if language == "zh-TW" else "en"
    # the words go into a JSON block: escape "<" so no value can close the <script> element
    data = json.dumps(text, ensure_ascii=False).replace("<", "\\u003c")
    return (
        template.replace("{{lang}}", lang).replace("{{title}}", html.escape(text["title"])).replace("{{words}}", data)
    )


@cache
def _template() -> str:
    return resources.files("alphawatch.web").joinpath("static/index.html").read_text(encoding="utf-8")


@cache
def page_headers() -> dict[str, str]:
    """Headers of the page: nothing but its own inline script and style may run (by their hashes), it talks only
    to its own origin, and no other site may frame it."""
    template = _template()
    script = re.search(r"<script>(.*?)</script>", template, re.S)
    style = re.search(r"<style>(.*?)</style>", template, re.S)
    assert script is not None, "static/index.html has one inline script"
    assert style is not None, "static/index.html has one inline style"
    policy = (
        f"default-src 'none'; script-src '{_sha256(script.group(1))}'; style-src '{_sha256(style.group(1))}';"
        " connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {"Cache-Control": "no-store", "Content-Security-Policy": policy, "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer"}  # fmt: skip


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
