"""Reports: one self-contained HTML file (inline CSS, every picture a ``data:`` URI, no script, no
external font or link) that reads offline. Sections (tables, charts, galleries) in order, with a table of
contents of in-page anchors; all text is escaped."""

from __future__ import annotations

import html
import math
import numbers
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from gradcam.errors import VisualizeError
from gradcam.io.images import load_image
from gradcam.render.files import atomic_write, png_data_url
from gradcam.render.pictures import fit, render_figure

THUMBNAIL = 256  # a gallery picture's long side at most, in pixels
CHART_INCHES, CHART_DPI = (7.0, 4.0), 100  # a chart is 700 × 400 pixels
ARROWS = {"lower": "↓", "higher": "↑"}  # the better direction of a table's column

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --rule: #d1d9e0; --tint: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 64rem; padding: 2rem 1.5rem 4rem; color: var(--ink); line-height: 1.5;
       font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { margin: 0; font-size: 1.9rem; } h2 { margin: 2.5rem 0 .75rem; font-size: 1.3rem; }
.subtitle { margin: .25rem 0 0; color: var(--muted); }
nav { margin: 1.5rem 0; padding: .75rem 1.25rem; background: var(--tint); border-radius: 6px; }
nav ol { margin: .25rem 0; padding-left: 1.25rem; } a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; padding: 2.5rem 0 .75rem; font-weight: 600; }
th, td { padding: .35rem .8rem; border-bottom: 1px solid var(--rule); text-align: left; }
.num { text-align: right; }
thead th { border-bottom: 2px solid var(--ink); } tbody tr:nth-child(even) { background: var(--tint); }
td strong { color: #1a7f37; }
.chart { max-width: 100%; height: auto; }
.gallery { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figure img { display: block; border-radius: 4px; }
figcaption { font-size: .85rem; color: var(--muted); max-width: 256px; overflow-wrap: anywhere; }
"""


class Report:
    """A page built section by section; :meth:`save` writes it. Every method returns the report, so that
    calls chain: ``Report("title").text("…").table(…).save("report.html")``."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title, self.subtitle = str(title), str(subtitle)
        self._parts: list[str] = []  # HTML of each block, in order
        self._contents: list[tuple[str, str]] = []  # (anchor, heading) of each titled section

    def text(self, paragraph: str) -> Report:
        """A paragraph."""
        self._parts.append(f"<p>{_esc(paragraph)}</p>")
        return self

    def table(self, columns: Sequence[str], rows: Sequence[Sequence], *, caption: str = "",
              directions: Mapping[str, str] | None = None) -> Report:
        """A table; floats shown to 4 decimals. ``directions``: {column: "lower" | "higher"}, the better
        direction, marked ↓ / ↑ in the header, and the best value of that column in bold (unless all are equal)."""
        columns = [str(c) for c in columns]
        directions = dict(directions or {})
        unknown = [c for c in directions if c not in columns]
        bad = {c: d for c, d in directions.items() if d not in ARROWS}
        if unknown or bad:
            raise VisualizeError(f"table directions must map columns of {columns} to 'lower' or 'higher', "
                                 f"got {directions}")
        rows = [list(row) for row in rows]
        for i, row in enumerate(rows):
            if len(row) != len(columns):
                raise VisualizeError(f"table row {i} has {len(row)} cells, expected {len(columns)} ({columns})")
        best = {j: _best([row[j] for row in rows], directions[c]) for j, c in enumerate(columns) if c in directions}
        head = "".join(_head(c, directions.get(c), bool(rows) and all(_is_number(row[j]) for row in rows))
                       for j, c in enumerate(columns))
        body = "".join("<tr>" + "".join(_cell(v, best.get(j) is not None and _number(v) == best[j])
                                        for j, v in enumerate(row)) + "</tr>" for row in rows)
        table = (f"<table>{f'<caption>{_esc(caption)}</caption>' if caption else ''}"
                 f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return self._section(caption, table, heading=False) if caption else self._add(table)

    def curves(self, title: str, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
               x_label: str = "", y_label: str = "") -> Report:
        """A line chart, one line per series ({name: (x values, y values)}), as an inline PNG."""
        if not series:
            raise VisualizeError(f"curves {title!r}: no series to draw")
        fig = Figure(figsize=CHART_INCHES, dpi=CHART_DPI, layout="constrained")
        ax = fig.subplots()
        for name, (x, y) in series.items():
            x, y = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
            if len(x) != len(y):
                raise VisualizeError(f"curves {title!r}: series {name!r} has {len(x)} x values and {len(y)} y values")
            ax.plot(x, y, marker="o" if len(x) <= 12 else None, markersize=3, linewidth=1.8, label=_plain(name))
        ax.set_xlabel(_plain(x_label))
        ax.set_ylabel(_plain(y_label))
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(frameon=False)
        chart = render_figure(fig)
        return self._section(title, _img(chart, title, "chart"))

    def gallery(self, title: str, items: Sequence[tuple[str, Any]]) -> Report:
        """Pictures side by side, each with its caption: a PIL image, an (H, W, 3) uint8 array or a path to
        a PNG or JPEG, shown at most :data:`THUMBNAIL` pixels on its long side."""
        if not items:
            raise VisualizeError(f"gallery {title!r}: no pictures")
        figures = []
        for caption, picture in items:
            thumbnail = fit(load_image(picture), THUMBNAIL)
            figures.append(f"<figure>{_img(thumbnail, caption)}<figcaption>{_esc(caption)}</figcaption></figure>")
        return self._section(title, f'<div class="gallery">{"".join(figures)}</div>')

    def html(self) -> str:
        """The page as text."""
        contents = "".join(f'<li><a href="#{anchor}">{_esc(heading)}</a></li>' for anchor, heading in self._contents)
        nav = f"<nav><strong>Contents</strong><ol>{contents}</ol></nav>" if len(self._contents) > 1 else ""
        subtitle = f'<p class="subtitle">{_esc(self.subtitle)}</p>' if self.subtitle else ""
        body = "\n".join(self._parts)
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{_esc(self.title)}</title><style>{CSS}</style></head>\n"
                f"<body><header><h1>{_esc(self.title)}</h1>{subtitle}</header>\n{nav}\n<main>\n{body}\n</main>"
                "</body></html>\n")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path`` atomically (UTF-8)."""
        page = self.html().encode()
        return atomic_write(path, lambda fp: fp.write(page))

    def _section(self, title: str, content: str, *, heading: bool = True) -> Report:
        """A section listed in the contents under ``title`` (shown as its heading unless ``heading`` is False:
        a table's caption is its title)."""
        anchor = f"section-{len(self._contents) + 1}"  # unique by construction, whatever the titles
        self._contents.append((anchor, str(title)))
        shown = f"<h2>{_esc(title)}</h2>" if heading else ""
        return self._add(f'<section id="{anchor}">{shown}{content}</section>')

    def _add(self, part: str) -> Report:
        self._parts.append(part)
        return self


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _plain(text: str) -> str:
    """Text for matplotlib as it is (a ``$`` is not mathtext)."""
    return str(text).replace("$", r"\$")


def _img(picture: Image.Image, alt: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return (f'<img{cls} src="{png_data_url(picture)}" width="{picture.width}" height="{picture.height}" '
            f'alt="{_esc(alt)}">')


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(value: Any) -> float | None:
    """A finite real number's value, else None (text, None, NaN, booleans)."""
    return float(value) if _is_number(value) and math.isfinite(value) else None


def _best(values: Sequence[Any], direction: str) -> float | None:
    """The best finite number among ``values``; None where all are equal (nothing stands out)."""
    found = [v for v in map(_number, values) if v is not None]
    if not found or min(found) == max(found):
        return None
    return min(found) if direction == "lower" else max(found)


def _head(column: str, direction: str | None, numeric: bool) -> str:
    cls = ' class="num"' if numeric else ""
    if direction is None:
        return f"<th{cls}>{_esc(column)}</th>"
    return f'<th{cls} title="{direction} is better">{_esc(column)} {ARROWS[direction]}</th>'


def _cell(value: Any, best: bool) -> str:
    """A table cell: a float to 4 decimals, a number right-aligned, the best in bold."""
    text = f"{float(value):.4f}" if isinstance(value, (float, np.floating)) else "" if value is None else str(value)
    text = f"<strong>{_esc(text)}</strong>" if best else _esc(text)
    return f'<td class="num">{text}</td>' if _is_number(value) else f"<td>{text}</td>"
