"""The manifest of a folder job: ``manifest.jsonl``, one JSON object per image and method, appended whole
(a killed job leaves complete lines), and ``manifest.csv`` rebuilt from it; the settings key that tells
whether a finished row can be trusted on resume."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Sequence

from gradcam.errors import OptionError
from gradcam.render.files import atomic_write

FIELDS = ["path", "status", "error", "model", "method", "layer", "rank", "class_index", "label",
          "probability", "top5", "files", "settings"]


class Manifest:
    """``manifest.jsonl``, one JSON object per line, appended whole with one write (a killed job leaves
    complete lines); ``manifest.csv`` rebuilt from it at the end."""

    def __init__(self, directory: Path, resume: bool):
        self.jsonl, self.csv = directory / "manifest.jsonl", directory / "manifest.csv"
        directory.mkdir(parents=True, exist_ok=True)
        fresh = 0 if resume else os.O_TRUNC  # a new job starts a new manifest: no stale rows to trust
        self._fd = os.open(self.jsonl, os.O_WRONLY | os.O_CREAT | os.O_APPEND | fresh, 0o666)

    def append(self, rows: list[dict]) -> None:
        os.write(self._fd, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode())

    def close(self) -> None:
        os.close(self._fd)
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


def settings_key(*settings) -> str:
    text = json.dumps([str(s) if not isinstance(s, (int, float, str, bool, type(None), list)) else s
                       for s in settings], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def done_paths(jsonl: Path, settings: str, methods: Sequence[str]) -> set[str]:
    """Paths with an "ok" row for every method under the same settings. A manifest written with other
    settings (another model or weights, method, layer, target, picture options) is an OptionError: its
    pictures have the same names as the new ones would, so mixing the two would make it ambiguous."""
    ok: dict[str, set] = {}
    for row in read_manifest(jsonl):
        if row.get("settings") != settings:
            raise OptionError(f"--resume: {jsonl} was written with other settings (model weights, method, "
                              "layer, target or picture options); run without --resume to start again, "
                              "or write to another --out")
        if row.get("status") == "ok":
            ok.setdefault(row["path"], set()).add(row.get("method"))
    return {path for path, found in ok.items() if found >= set(methods)}
