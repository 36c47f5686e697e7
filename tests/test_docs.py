"""The documentation site (mkdocs.yml, docs/) builds with --strict, loads nothing from the network, and every
link of the built pages and of the README points at something that exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("material")
pytest.importorskip("mkdocstrings_handlers.python")
pytest.importorskip("mkdocs_jupyter")

ROOT = Path(__file__).resolve().parents[1]

# The attributes through which a page loads something (a link's href only when the link loads a resource).
LOADS = {"script": ("src",), "img": ("src", "srcset"), "source": ("src", "srcset"), "iframe": ("src",),
         "audio": ("src",), "video": ("src", "poster"), "embed": ("src",), "object": ("data",),
         "input": ("src",), "track": ("src",)}
LINK_LOADS = {"stylesheet", "icon", "shortcut", "preload", "modulepreload", "prefetch", "manifest",
              "apple-touch-icon", "mask-icon", "import"}
REMOTE = re.compile(r"^(https?:)?//", re.IGNORECASE)
CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])(?:https?:)?//""", re.IGNORECASE)
JS_IMPORT = re.compile(r"""import\s*\(\s*['"]https?://""", re.IGNORECASE)


class Refs(HTMLParser):
    """Every (tag, attribute, value) of a page that loads a resource, every <a href>, and every id."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.loads: list[tuple[str, str, str]] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for name in LOADS.get(tag, ()):
            if attrs.get(name):
                for value in attrs[name].split(",") if name == "srcset" else [attrs[name]]:
                    self.loads.append((tag, name, value.strip().split(" ")[0]))
        if tag == "link" and attrs.get("href") and LINK_LOADS & set(attrs.get("rel", "").lower().split()):
            self.loads.append((tag, "href", attrs["href"]))
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if attrs.get("style"):
            self.styles.append(attrs["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return out


def pages(site: Path) -> dict[Path, Refs]:
    parsed = {}
    for page in sorted(site.rglob("*.html")):
        refs = Refs()
        refs.feed(page.read_text(encoding="utf-8"))
        parsed[page] = refs
    return parsed


def test_the_site_has_every_page_the_nav_names(site):
    for page in ["index.html", "getting-started.html", "concepts.html", "benchmarks.html", "decisions.html",
                 "architecture.html", "development.html", "guides/cnns.html", "guides/transformers.html",
                 "guides/trust.html", "guides/web.html", "notebooks/tutorial.html", "notebooks/keras.html",
                 "reference/explaining.html", "reference/metrics.html", "search/search_index.js"]:
        assert (site / page).is_file(), page
    # the API reference is generated from the docstrings, not left empty
    api = (site / "reference" / "explaining.html").read_text(encoding="utf-8")
    assert "GradCAM" in api and "create_method" in api and "list_methods" in api
    # the notebooks render as pages: their code is there (not executed by the build)
    assert "import gradcam" in (site / "notebooks" / "tutorial.html").read_text(encoding="utf-8")


def test_no_page_loads_anything_from_the_network(site):
    remote = []
    for page, refs in pages(site).items():
        name = page.relative_to(site).as_posix()
        remote += [f"{name}: <{tag} {attr}={value}>" for tag, attr, value in refs.loads if REMOTE.match(value)]
        remote += [f"{name}: style {s[:80]!r}" for s in refs.styles if CSS_URL.search(s)]
        remote += [f"{name}: script import()" for _ in JS_IMPORT.finditer(page.read_text(encoding="utf-8"))]
    for css in site.rglob("*.css"):
        if CSS_URL.search(css.read_text(encoding="utf-8", errors="replace")):
            remote.append(f"{css.relative_to(site).as_posix()}: url() or @import from the network")
    assert not remote, "\n".join(remote[:20])


def test_every_local_link_and_resource_of_the_built_site_exists(site):
    parsed = pages(site)
    dead = []
    for page, refs in parsed.items():
        for value in [v for _, _, v in refs.loads] + refs.links:
            parts = urlsplit(value)
            if parts.scheme or parts.netloc or value.startswith(("mailto:", "javascript:", "data:")):
                continue
            base = site if parts.path.startswith("/") else page.parent  # 404.html links from the site's root
            target = (base / unquote(parts.path).lstrip("/")).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                dead.append(f"{page.relative_to(site).as_posix()} -> {value}")
            elif parts.fragment and target.suffix == ".html" and target in parsed \
                    and unquote(parts.fragment) not in parsed[target].ids:
                dead.append(f"{page.relative_to(site).as_posix()} -> {value} (no such anchor)")
    assert not dead, "\n".join(dead[:20])


def test_the_readme_links_into_the_repository_and_stays_short():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert "make test" in text and "make demo" in text
    dead = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        path = urlsplit(target).path
        if urlsplit(target).scheme or not path:
            continue
        if not (ROOT / unquote(path)).exists():
            dead.append(target)
    assert not dead, dead
