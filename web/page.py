"""The live status page: rules and active alerts, refreshed by Server-Sent Events.

The page is static HTML; its script fetches the JSON API and writes every value with ``textContent``, so nothing
from a label or an error message is ever interpreted as HTML.
"""

from __future__ import annotations

import html
import json
from importlib import resources

from alphawatch.web.i18n import words


def render_page(language: str) -> str:
    text = words(language)
    template = resources.files("alphawatch.web").joinpath("static/index.html").read_text(encoding="utf-8")
    lang = "zh-Hant-TW" if language == "zh-TW" else "en"
    # the words go into a JSON block: escape "<" so no value can close the <script> element
    data = json.dumps(text, ensure_ascii=False).replace("<", "\\u003c")
    return (
        template.replace("{{lang}}", lang).replace("{{title}}", html.escape(text["title"])).replace("{{words}}", data)
    )
