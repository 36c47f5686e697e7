"""Reading a report back: its tags, anchors, pictures, headings and captions, and whether it is one
self-contained file."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

from PIL import Image


class Page(HTMLParser):
    """A report's tags, ids, image sources, section headings, table captions and figure captions."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.text = text
        self.tags, self.ids, self.images = [], set(), []
        self.headings, self.captions, self.figures = [], [], []
        self._into = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        self.ids |= {attrs["id"]} if "id" in attrs else set()
        self.images += [attrs["src"]] if tag == "img" else []
        self._into = {"h2": self.headings, "caption": self.captions, "figcaption": self.figures}.get(tag)
        if self._into is not None:
            self._into.append("")

    def handle_endtag(self, tag):
        self._into = None

    def handle_data(self, data):
        if self._into is not None:
            self._into[-1] += data

    def links(self) -> list[str]:
        return [v for _, attrs in self.tags for k, v in attrs.items() if k in ("src", "href")]

    def pictures(self) -> list[Image.Image]:
        return [Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) for src in self.images]


def assert_self_contained(page, text: str) -> None:
    """Every src / href a PNG data URI or an anchor of this page; no script, link, stylesheet import."""
    assert page.links()
    for link in page.links():
        assert link.startswith("data:image/png;base64,") or (link.startswith("#") and link[1:] in page.ids), link
    assert not [tag for tag, _ in page.tags if tag in ("script", "link", "iframe", "object", "embed")]
    assert "url(" not in text and "@import" not in text and "http" not in text
