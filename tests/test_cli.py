"""The `gradcam` command end to end in a temp dir: files, exit codes, one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gradcam
from gradcam.cli import main

skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skdata.chelsea()).save(folder / "chelsea.jpg", quality=92)
    Image.fromarray(skdata.coffee()).save(folder / "coffee.png")
    return folder


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_explain_writes_decodable_pngs_at_original_size(tmp_path, capsys, photos):
    status, out, err = run(capsys, "explain", photos / "chelsea.jpg", photos / "coffee.png", "--out", tmp_path)
    assert status == 0, err
    assert err == ""
    why, *lines = out.strip().splitlines()
    assert why.startswith("automatic layer bn2: the last channels-first feature map (7, 7)")  # said once
    assert len(lines) == 2
    assert "chelsea.jpg: " in lines[0] and "cat" in lines[0] and "%" in lines[0]
    assert "coffee.png: espresso" in lines[1]
    for source in ("chelsea.jpg", "coffee.png"):
        size = Image.open(photos / source).size
        for kind in ("grayscale", "heatmap", "overlay", "figure"):
            path = tmp_path / f"{source}.gradcam.{kind}.png"
            assert str(path) in out
            with Image.open(path) as im:
                im.load()
                assert im.format == "PNG"
                if kind != "figure":
                    assert im.size == size, (source, kind)
    assert len(list(tmp_path.iterdir())) == 8


def test_folder_with_a_bad_file_reports_it_and_does_the_rest(tmp_path, capsys, photos):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.jpg").write_text("this is not a JPEG")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    Image.open(photos / "chelsea.jpg").save(folder / "cat.jpg")
    Image.open(photos / "coffee.png").save(folder / "cup.png")
    status, out, err = run(capsys, "explain", folder, "--out", tmp_path / "out", "--batch-size", "2")
    assert status == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    assert "Traceback" not in err
    assert "3 images: 2 explained, 1 failed" in err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.overlay.png")) == ["cat.jpg.gradcam.overlay.png",
                                                                                 "cup.png.gradcam.overlay.png"]
    assert "notes" not in out


def test_debug_shows_the_traceback(tmp_path, capsys):
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    status, _, err = run(capsys, "explain", bad, "--out", tmp_path, "--debug")
    assert status == 1 and "Traceback" in err and "empty.png" in err


def test_target_top_k_and_options(tmp_path, capsys, photos):
    status, out, err = run(capsys, "explain", photos / "chelsea.jpg", "--out", tmp_path, "--top-k", "2",
                           "--normalize", "max", "--colormap", "inferno", "--alpha", "0.3")
    assert status == 0, err
    assert "top1" in out and "top2" in out
    assert (tmp_path / "chelsea.jpg.gradcam.top2.overlay.png").exists()
    status, out, err = run(capsys, "explain", photos / "chelsea.jpg", "--out", tmp_path, "--target", "281")
    assert status == 0 and ": tabby" in out, out
    status, out, err = run(capsys, "explain", photos / "chelsea.jpg", "--out", tmp_path, "--target", "Egyptian Cat")
    assert status == 0 and ": Egyptian cat" in out, out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--target", "tigr cat"], "tiger cat"),
        (["--target", "1000"], "1000"),
        (["--layer", "blocks.99"], "blocks.99"),
        (["--model", "no_such_model"], "no_such_model"),
        (["--weights", "missing.pth"], "missing.pth"),
        (["--colormap", "jett"], "jet"),
    ],
)
def test_bad_arguments_are_usage_errors_with_one_line(tmp_path, capsys, photos, argv, fragment):
    status, out, err = run(capsys, "explain", photos / "chelsea.jpg", "--out", tmp_path / "o", *argv)
    assert status == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "o").exists()


def test_argparse_usage_errors_exit_2(capsys, photos):
    for argv in (["explain"], ["explain", "x.jpg", "--alpha", "3"], ["frobnicate"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "--alpha" in capsys.readouterr().err
    status, _, err = run(capsys, "explain", photos / "chelsea.jpg", "--method", "nope")  # a registry's name
    assert status == 2 and "unknown method 'nope'" in err


def test_empty_folder_is_a_usage_error(tmp_path, capsys):
    status, _, err = run(capsys, "explain", tmp_path)
    assert status == 2 and "no image files" in err


def test_layers_lists_candidates_and_marks_the_automatic_one(capsys):
    status, out, _ = run(capsys, "layers")
    assert status == 0
    auto = [line for line in out.splitlines() if "<- automatic" in line]
    assert len(auto) == 1 and auto[0].split()[0] == "bn2" and "(1280, 7, 7)" in auto[0]
    assert "pooling" in out


def test_models_and_methods(capsys):
    status, out, _ = run(capsys, "models")
    assert status == 0
    names = set(re.split(r"[\s,]+", out))
    assert {"efficientnet_lite0", "resnet50", "vgg19", "densenet121", "convnext_tiny"} <= names
    status, out, _ = run(capsys, "methods")
    assert status == 0 and out.startswith("gradcam ") and "spatial mean" in out


def test_installed_console_script(tmp_path, photos):
    """The `gradcam` entry point itself: --help shows examples; exit codes reach the shell."""
    script = [str(Path(sys.executable).with_name("gradcam"))]
    shown = subprocess.run([*script, "explain", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "examples:" in shown.stdout
    done = subprocess.run([*script, "explain", str(photos / "chelsea.jpg"), "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    overlay = np.asarray(Image.open(tmp_path / "chelsea.jpg.gradcam.overlay.png"))
    assert overlay.shape == (300, 451, 3)


# The bundled model is a CNN: the methods that read a vision transformer's attention skip it (with the reason)
CNN_METHODS = [m for m in gradcam.list_methods() if m != "legrad"]


@pytest.mark.parametrize("method", CNN_METHODS)
def test_every_method_from_the_command_line(tmp_path, capsys, photos, method):
    status, out, err = run(capsys, "explain", photos / "chelsea.jpg", "--out", tmp_path, "--method", method,
                           "--max-channels", "2", "--masks", "40")
    assert status == 0, err
    names = {f"chelsea.jpg.{method}.{kind}.png" for kind in ("grayscale", "heatmap", "overlay", "figure")}
    assert {p.name for p in tmp_path.iterdir()} == names
    with Image.open(tmp_path / f"chelsea.jpg.{method}.overlay.png") as overlay:
        assert overlay.size == (451, 300)
    assert "cat" in out


def test_method_all_writes_one_comparison_figure(tmp_path, capsys, photos):
    status, out, err = run(capsys, "explain", photos / "chelsea.jpg", "--out", tmp_path, "--method", "all",
                           "--max-channels", "2", "--augment", "--masks", "40")
    assert status == 0, err
    assert str(tmp_path / "chelsea.jpg.methods.figure.png") in out
    with Image.open(tmp_path / "chelsea.jpg.methods.figure.png") as figure:
        figure.load()
        assert figure.width > 1000 and figure.height > 800  # 3 rows of 4 panels
    for method in CNN_METHODS:
        assert (tmp_path / f"chelsea.jpg.{method}.figure.png").exists(), method
    assert len(list(tmp_path.iterdir())) == 4 * len(CNN_METHODS) + 1
    assert "skipped legrad: legrad needs a vision transformer's attention blocks" in err


def test_method_all_skips_what_does_not_apply_and_says_why(tmp_path, capsys, photos):
    """At blocks.5 of the bundled model CAM does not apply (no GAP + linear right after it): skipped
    with its reason, every other method done, exit 0."""
    status, out, err = run(capsys, "explain", photos / "chelsea.jpg", "--out", tmp_path, "--method", "all",
                           "--layer", "blocks.5", "--max-channels", "2", "--masks", "40")
    assert status == 0, err
    assert "skipped cam: CAM needs global average pooling" in err and "blocks.5" in err
    assert "skipped gradcam" not in err
    figure = [p for p in tmp_path.rglob("*methods*.png")]
    assert len(figure) == 1


def test_bad_method_name_lists_the_valid_ones(capsys):
    status, _, err = run(capsys, "explain", "x.jpg", "--method", "gradcam+")
    assert status == 2 and err.count("\n") == 1
    assert "unknown method 'gradcam+'" in err and "gradcam++" in err and "guided-gradcam" in err
    assert "Did you mean: 'gradcam++'" in err or "Did you mean: 'gradcam', 'gradcam++'" in err


def test_precision_from_the_command_line(tmp_path, capsys, photos):
    status, out, err = run(capsys, "explain", photos / "chelsea.jpg", "--out", tmp_path, "--precision", "bf16",
                           "--memory-format", "channels_last")
    assert status == 0, err
    assert ": Egyptian cat" in out or ": tabby" in out or ": tiger cat" in out
    with pytest.raises(SystemExit):
        main(["explain", str(photos / "chelsea.jpg"), "--precision", "fp8"])
