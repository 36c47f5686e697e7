"""The README's examples run as written: its library block, then each line of its command-line block (but
`gradcam serve`, which does not return), on the bundled model, in a folder holding the files they name."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

from gradcam.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
skdata = pytest.importorskip("skimage.data")


def block(heading: str, language: str) -> str:
    """The first ``language`` code block after the README's ``## heading``."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(f"\n## {heading}\n"):]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """cat.jpg and photos/ (two photos) in the working directory, as the examples name them."""
    Image.fromarray(skdata.chelsea()).save(tmp_path / "cat.jpg")
    (tmp_path / "photos").mkdir()
    Image.fromarray(skdata.chelsea()).save(tmp_path / "photos" / "chelsea.jpg")
    Image.fromarray(skdata.coffee()).save(tmp_path / "photos" / "coffee.jpg")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_library_example_runs_as_written(folder):
    scope: dict = {}
    exec(compile(block("Library", "python"), str(README), "exec"), scope)
    assert scope["result"].label == "Egyptian cat" and scope["result"].probability == pytest.approx(0.799, abs=0.005)
    assert scope["out"].maps.shape == (1, 224, 224) and scope["out"].targets.tolist() == [285]
    assert sorted(p.name for p in (folder / "out").iterdir()) == [
        f"cat.jpg.gradcam.{kind}.png" for kind in ("figure", "grayscale", "heatmap", "overlay")]


def test_the_command_line_example_runs_as_written(folder, capsys):
    lines = [line.split("#")[0].strip() for line in block("Command line", "sh").splitlines()]
    commands = [shlex.split(line) for line in lines if line and not line.startswith("gradcam serve")]
    assert len(commands) >= 4 and all(c[0] == "gradcam" for c in commands)
    for command in commands:
        assert main(command[1:]) == 0, (command, capsys.readouterr().err)
    assert (folder / "gradcam-out" / "cat.jpg.gradcam.overlay.png").exists()
    assert len(list((folder / "maps").glob("*.overlay.png"))) == 6  # two photos, three classes each
    assert (folder / "gradcam-out" / "cat.jpg.methods.figure.png").exists()
