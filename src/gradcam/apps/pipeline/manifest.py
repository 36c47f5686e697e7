"""The manifest of a folder job: ``manifest.jsonl``, one JSON object per image and method, appended whole
(a killed job leaves complete lines), and ``manifest.csv`` rebuilt from it; the settings key that tells
whether a finished row can be trusted on resume, and ``manifest.settings.json``, the settings themselves
(so that a resume with other settings names what differs)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Sequence

from gradcam.errors import OptionError
from gradcam.render.files import atomic_write, save_json

FIELDS = ["path", "status", "error", "model", "method", "layer", "rank", "class_index", "label",
          "probability", "top5", "files", "settings"]


class Manifest:
    """``manifest.jsonl``, one JSON object per line, appended whole with one write (a killed job leaves
    complete lines); at the end, a resumed job's rows replace the old rows of the images it redid (one
    image, one set of rows), and ``manifest.csv`` is rebuilt from it. Both are rewritten atomically."""

    def __init__(self, directory: Path, resume: bool, settings: dict | None = None):
        self.jsonl, self.csv = directory / "manifest.jsonl", directory / "manifest.csv"
        directory.mkdir(parents=True, exist_ok=True)
        self.resume = resume
        self._before = sum(1 for _ in read_manifest(self.jsonl)) if resume else 0
        if settings is not None:
            save_json(settings, directory / SETTINGS)
        fresh = 0 if resume else os.O_TRUNC  # a new job starts a new manifest: no stale rows to trust
        self._fd = os.open(self.jsonl, os.O_WRONLY | os.O_CREAT | os.O_APPEND | fresh, 0o666)

    def append(self, rows: list[dict]) -> None:
        os.write(self._fd, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode())

    def close(self) -> None:
        os.close(self._fd)
        if self.resume:
            rows = list(read_manifest(self.jsonl))
            old, new = rows[: self._before], rows[self._before:]
            redone = {row.get("path") for row in new}
            kept = [row for row in old if row.get("path") not in redone] + new
            if len(kept) != len(rows):
                atomic_write(self.jsonl, lambda fp: fp.write(
                    "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in kept).encode()))
        atomic_write(self.csv, self._write_csv)

    def _write_csv(self, fp) -> None:
        text = io.TextIOWrapper(fp, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in read_manifest(self.jsonl):
            writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
        text.flush()
        text.detach()


def read_manifest(path: Path):
    """The rows of a manifest.jsonl, skipping a line cut short by a kill."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


SETTINGS = "manifest.settings.json"


def plain_settings(settings: dict) -> dict:
    """The settings as JSON values (a tuple as a list, anything else as its text)."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def settings_key(settings: dict) -> str:
    """A short hash of the named settings: what every manifest row carries."""
    return hashlib.sha1(json.dumps(plain_settings(settings), sort_keys=True).encode()).hexdigest()[:12]


def done_paths(jsonl: Path, settings: str, methods: Sequence[str], values: dict | None = None) -> set[str]:
    """Paths with an "ok" row for every method under the same settings. A manifest written with other
    settings (another model or weights, method, layer, target, picture options) is an OptionError that
    names each setting that differs, with both values (from ``manifest.settings.json``): its pictures have
    the same names as the new ones would, so mixing the two would make it ambiguous."""
    ok: dict[str, set] = {}
    for row in read_manifest(jsonl):
        if row.get("settings") != settings:
            raise OptionError(f"--resume: {jsonl} was written with other settings: {_differences(jsonl, values)}; "
                              "run without --resume to start again, or write to another --out")
        if row.get("status") == "ok":
            ok.setdefault(row["path"], set()).add(row.get("method"))
    return {path for path, found in ok.items() if found >= set(methods)}


def _differences(jsonl: Path, values: dict | None) -> str:
    """'method gradcam (now hirescam), alpha 0.5 (now 0.3)'; the kinds of setting when the old ones are unknown."""
    try:
        before = json.loads((jsonl.parent / SETTINGS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        before = None
    if not isinstance(before, dict) or values is None:
        return "model weights, method, layer, target or picture options"
    now = plain_settings(values)
    changed = [f"{key} {json.dumps(before.get(key))} (now {json.dumps(now.get(key))})"
               for key in sorted(set(before) | set(now)) if before.get(key) != now.get(key)]
    return ", ".join(changed) or "the same settings, hashed by an older version"
