"""Doors: a model source and a metric registered from a module outside the package work through
``load_model``, ``Explainer``, ``gradcam explain --model``, ``gradcam models`` and ``gradcam evaluate
--metrics``: in Python by importing the module, for the command line through the entry-point groups
``gradcam.sources`` and ``gradcam.metrics`` of an installed distribution (here a ``.dist-info`` folder on
the path, as pip leaves one)."""

from __future__ import annotations

import csv
import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gradcam
from gradcam.apps.analyses.evaluate import evaluate
from gradcam.errors import ModelError
from gradcam.metrics import registry as metrics_registry
from gradcam.models.sources import registry as sources_registry

PLUGIN = '''
"""A toy plugin: the model source "toy/<classes>" and the metric "peak-share"."""
import torch
from torch import nn

from gradcam.metrics import register_metric
from gradcam.models import ModelBundle, Preprocess
from gradcam.models.sources import register_source


class ToyNet(nn.Module):
    def __init__(self, classes):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


@register_source("toy", description="toy/<classes>: a seeded two-layer CNN")
def load(spec, *, weights=None, pretrained=True):
    classes = int(spec)
    return ModelBundle(ToyNet(classes), Preprocess(size=32), [f"class{i}" for i in range(classes)], f"toy/{spec}")


@register_metric("peak-share", columns={"peak_share": "higher"})
class PeakShare:
    """The share of each map's total held by its peak position."""

    def __init__(self, model, *, score="probability"):
        self.model = model

    def __call__(self, x, maps, targets=None):
        flat = torch.as_tensor(maps).flatten(1).clamp_min(0)
        return {"peak_share": flat.amax(1) / flat.sum(1).clamp_min(1e-12)}
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The plugin module and the .dist-info folder that declares its entry points, on a fresh folder."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "toy_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[gradcam.sources]\ntoy = toy_plugin\n\n"
                                           "[gradcam.metrics]\ntoy = toy_plugin\n")
    return root


@pytest.fixture
def imported(plugin, monkeypatch):
    """The plugin imported in this process (as a user's own module is), removed again afterwards."""
    monkeypatch.syspath_prepend(str(plugin))
    sources, metrics = dict(sources_registry._SOURCES), dict(metrics_registry._METRICS)
    module = importlib.import_module("toy_plugin")
    yield module
    sys.modules.pop("toy_plugin", None)
    sources_registry._SOURCES.clear()
    sources_registry._SOURCES.update(sources)
    metrics_registry._METRICS.clear()
    metrics_registry._METRICS.update(metrics)


def test_an_outside_source_loads_by_its_prefix_and_explains(imported):
    bundle = gradcam.load_model("toy/3")
    assert isinstance(bundle.module, imported.ToyNet) and bundle.labels == ["class0", "class1", "class2"]
    assert not bundle.module.training and bundle.name == "toy/3"
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    result = gradcam.Explainer("toy/3").explain([picture])[0]
    assert result.label in bundle.labels and result.heatmap.shape == (40, 48)
    assert "toy" in [source.name for source in gradcam.models.sources.list_sources()]


def test_an_unknown_prefix_names_the_sources_there_are():
    with pytest.raises(ModelError, match="unknown model 'nosuch/3'") as error:
        gradcam.load_model("nosuch/3")
    assert "timm/<name>" in str(error.value) and "\n" not in str(error.value)


def test_an_outside_metric_is_a_column_of_evaluate(imported, tmp_path):
    picture = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(picture)
    result = evaluate([picture], model="toy/2", metrics=["peak-share", "confidence"])
    assert result.columns[-3:] == ("peak_share", "average_drop", "increase_in_confidence")
    row = next(r for r in result.rows if r["method"] == "gradcam")
    maps = gradcam.Explainer("toy/2").cam(gradcam.load_model("toy/2").preprocess.batch([Image.open(picture)])).maps
    flat = maps.flatten(1)
    assert row["peak_share"] == pytest.approx(float(flat.amax(1)[0] / flat.sum(1)[0]), rel=1e-5)
    assert "peak_share ↑" in result.table()


def _cli(plugin: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    script = str(Path(sys.executable).with_name("gradcam"))
    return subprocess.run([script, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_the_command_line_finds_plugins_through_their_entry_points(plugin, tmp_path):
    picture = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(picture)
    models = _cli(plugin, "models", cwd=tmp_path)
    assert models.returncode == 0 and "toy/<classes>" in models.stdout, models.stderr
    explained = _cli(plugin, "explain", str(picture), "--model", "toy/4", "--out", "maps", cwd=tmp_path)
    assert explained.returncode == 0, explained.stderr
    assert (tmp_path / "maps" / "a.png.gradcam.overlay.png").is_file(), sorted(
        p.name for p in (tmp_path / "maps").iterdir())
    evaluated = _cli(plugin, "evaluate", str(picture), "--model", "toy/4", "--metrics", "peak-share",
                     "--out", "scores", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    with open(tmp_path / "scores" / "evaluation.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["image", "method", "class_index", "label", "peak_share"]
    assert "peak_share ↑" in evaluated.stdout
