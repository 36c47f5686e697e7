"""Reports: one self-contained HTML file (pictures inline, text escaped, the best value of a column marked)."""

from __future__ import annotations

import base64
import io
import math
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from reportcheck import assert_self_contained

from gradcam.errors import VisualizeError
from gradcam.render.report import Report


class Page(HTMLParser):
    """The parts of a page the tests look at: every tag with its attributes, the ids, and the text of each
    table cell (with whether it is bold) by column header."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.ids: set[str] = set()
        self.headers: list[str] = []
        self.cells: list[list[tuple[str, bool]]] = []
        self._where: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "th":
            self.headers.append("")
        if tag == "tr" and "tbody" in self._where:
            self.cells.append([])
        if tag == "td":
            self.cells[-1].append(("", False))
        if tag not in ("img", "meta", "br"):
            self._where.append(tag)

    def handle_endtag(self, tag):
        if tag in self._where:
            del self._where[len(self._where) - 1 - self._where[::-1].index(tag):]

    def handle_data(self, data):
        if self._where and self._where[-1] == "th":
            self.headers[-1] += data
        elif "td" in self._where:
            text, bold = self.cells[-1][-1]
            self.cells[-1][-1] = (text + data, bold or "strong" in self._where)

    def links(self) -> list[str]:
        return [value for _, attrs in self.tags for key, value in attrs.items() if key in ("src", "href")]

    def pictures(self) -> list[Image.Image]:
        return [Image.open(io.BytesIO(base64.b64decode(attrs["src"].split(",", 1)[1])))
                for tag, attrs in self.tags if tag == "img"]


def test_a_report_is_one_self_contained_file(tmp_path):
    photo = tmp_path / "in" / "tall.png"
    photo.parent.mkdir()
    Image.new("RGB", (300, 600), (10, 200, 30)).save(photo)
    jpeg = tmp_path / "in" / "small.jpg"
    Image.new("RGB", (40, 30), (200, 10, 30)).save(jpeg)
    wide = Image.fromarray(np.linspace(0, 255, 512 * 300 * 3).astype(np.uint8).reshape(300, 512, 3))
    array = np.full((80, 100, 3), 128, np.uint8)
    fractions = [0.0, 0.25, 0.5, 0.75, 1.0]
    report = (Report("Evaluation", "two methods")
              .text("Which maps are faithful.")
              .table(["method", "score"], [["a", 0.5], ["b", 0.25]], caption="scores", directions={"score": "lower"})
              .curves("deletion", {"a": (fractions, [1, 0.5, 0.3, 0.2, 0.1]),
                                   "b": (fractions, [1, 0.8, 0.6, 0.4, 0.2])}, x_label="fraction", y_label="score")
              .gallery("maps", [("wide", wide), ("array", array), ("tall", photo), ("small", str(jpeg))]))
    out = tmp_path / "out" / "report.html"
    assert report.save(out) == out
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # one file, no temp left
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert_self_contained(page, text)
    assert {"#section-1", "#section-2", "#section-3"} <= set(page.links())  # the contents
    sizes = [(p.size, p.format) for p in page.pictures()]
    assert sizes == [((700, 400), "PNG"), ((256, 150), "PNG"), ((100, 80), "PNG"), ((128, 256), "PNG"),
                     ((40, 30), "PNG")]  # thumbnails at most 256 px, never enlarged
    imgs = [attrs for tag, attrs in page.tags if tag == "img"]
    assert [(int(a["width"]), int(a["height"])) for a in imgs] == [s for s, _ in sizes]
    assert np.asarray(page.pictures()[2].convert("RGB"))[0, 0].tolist() == [128, 128, 128]


def test_text_is_escaped(tmp_path):
    evil = '<script>alert("x")</script>'
    report = (Report(evil, evil).text(evil)
              .table(["m", evil], [[evil, 1.0]], caption=evil)
              .gallery(evil, [(evil, np.zeros((4, 4, 3), np.uint8))]))
    text = report.save(tmp_path / "r.html").read_text(encoding="utf-8")
    page = Page(text)
    assert "script" not in [tag for tag, _ in page.tags]
    assert "<script>" not in text and text.count("&lt;script&gt;") >= 8
    assert [a["alt"] for tag, a in page.tags if tag == "img"] == [evil]  # the attribute reads back as written


def test_the_best_value_per_column_is_marked():
    rows = [["a", 0.30, 0.9, 5, 1.0], ["b", 0.10, float("nan"), 7, 1.0], ["c", 0.20, 0.4, 6, 1.0]]
    report = Report("t").table(["method", "deletion", "insertion", "count", "same"], rows,
                               directions={"deletion": "lower", "insertion": "higher", "same": "higher"})
    page = Page(report.html())
    assert page.headers == ["method", "deletion ↓", "insertion ↑", "count", "same ↑"]
    bold = {page.headers[j]: [row[j][0] for row in page.cells if row[j][1]] for j in range(5)}
    assert bold == {"method": [], "deletion ↓": ["0.1000"], "insertion ↑": ["0.9000"], "count": [],
                    "same ↑": []}  # NaN is never best; a column of equal values has no best
    assert page.cells[1][2][0] == "nan" and math.isnan(rows[1][2])


def test_bad_arguments_are_refused():
    with pytest.raises(VisualizeError, match="directions"):
        Report("t").table(["a"], [[1]], directions={"b": "lower"})
    with pytest.raises(VisualizeError, match="directions"):
        Report("t").table(["a"], [[1]], directions={"a": "smaller"})
    with pytest.raises(VisualizeError, match="row 1 has 1 cells"):
        Report("t").table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(VisualizeError, match="3 x values and 2 y values"):
        Report("t").curves("c", {"s": ([0, 1, 2], [0, 1])})
    with pytest.raises(VisualizeError, match="no pictures"):
        Report("t").gallery("g", [])
