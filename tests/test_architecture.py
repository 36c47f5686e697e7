"""The rooms and their arrows (import-linter contracts in pyproject.toml) and the cost of importing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_rooms_import_one_way_and_no_package_has_cycles():
    """cli, web -> apps -> render | models | metrics -> engine -> errors; no import cycle among siblings."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def _new_modules(code: str) -> set[str]:
    """The top-level packages that ``code`` loads beyond ``import torch``."""
    script = ("import sys, torch\nbefore = set(sys.modules)\n" + code +
              "\nprint(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_the_engine_and_the_metrics_load_no_image_plotting_or_model_zoo_library():
    heavy = {"PIL", "matplotlib", "torchvision", "timm", "tqdm", "fastapi", "safetensors"}
    assert not _new_modules("import gradcam.engine\nimport gradcam.engine.methods") & heavy
    assert not _new_modules("import gradcam.metrics") & heavy


def test_ruff_passes():
    """The lint of pyproject.toml ([tool.ruff]: pyflakes, pycodestyle at 120 columns, import order)."""
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run([str(ruff), "check", "--no-cache", "src", "tests", "benchmarks", "examples"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_import_gradcam_is_lazy():
    loaded = _new_modules("import gradcam")
    assert not loaded & {"PIL", "matplotlib", "torchvision", "timm", "fastapi"}
    assert _new_modules("import gradcam\ngradcam.explain") >= {"PIL", "matplotlib"}  # loaded on first use
