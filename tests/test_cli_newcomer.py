"""The command line as a newcomer meets it: each item one test, through the command itself — right file
lists, honest manifests, usage errors that name the argument, `NAME:random` everywhere, no download to list
layers, compare's own spelling, an audit of the held-out images with class names, progress on long
commands, help that helps, and `--help` before torch loads."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradcam.cli import build_parser, main

skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skdata.chelsea()).resize((160, 106)).save(folder / "cat.jpg", quality=92)
    Image.fromarray(skdata.coffee()).resize((160, 120)).save(folder / "coffee.png")
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def test_each_rank_names_its_own_files(tmp_path, capsys, photos):
    status, out, err = run(capsys, "explain", photos / "cat.jpg", photos / "coffee.png", "--top-k", "3",
                           "--save", "overlay", "--out", tmp_path)
    assert status == 0, err
    lines = [line for line in out.splitlines() if " top" in line]
    assert len(lines) == 6
    for line in lines:
        rank = re.search(r" top(\d)", line).group(1)
        files = line.split(" -> ")[1].split(", ")
        assert len(files) == 1 and f".top{rank}." in files[0] and Path(line.split(" top")[0]).name in files[0]


def test_a_resumed_image_has_one_row_and_a_resume_with_other_settings_names_them(tmp_path, capsys, photos):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(photos / "cat.jpg").save(folder / "a.jpg")
    (folder / "b.jpg").write_bytes((photos / "cat.jpg").read_bytes()[:300])  # cut short: fails
    out = tmp_path / "out"
    assert run(capsys, "explain", folder, "--out", out)[0] == 1
    for _ in range(2):  # fixed, then resumed twice: its error row is replaced, not kept beside the new one
        Image.open(photos / "coffee.png").convert("RGB").save(folder / "b.jpg")
        status, _, err = run(capsys, "explain", folder, "--out", out, "--resume")
        assert status == 0, err
    found = rows(out)
    assert sorted((r["path"], r["status"]) for r in found) == [(str(folder / n), "ok") for n in ("a.jpg", "b.jpg")]
    with open(out / "manifest.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2
    status, _, err = run(capsys, "explain", folder, "--out", out, "--resume", "--alpha", "0.3", "--colormap", "magma")
    assert status == 2 and err.count("\n") == 1
    assert 'alpha 0.5 (now 0.3)' in err and 'colormap "jet" (now "magma")' in err and "method" not in err.split(":")[2]


def test_a_path_that_does_not_exist_is_a_usage_error_and_nothing_is_written(tmp_path, capsys):
    status, out, err = run(capsys, "explain", tmp_path / "nosuch.jpg", "--out", tmp_path / "o")
    assert status == 2 and "nosuch.jpg: no such file or folder" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    assert run(capsys, "explain", tmp_path / "*.jpg", "--out", tmp_path / "o")[0] == 2  # a glob that matches nothing
    assert not (tmp_path / "o").exists()


def test_no_rate_is_printed_when_nothing_was_explained(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    status, _, err = run(capsys, "explain", tmp_path / "in", "--out", tmp_path / "o")
    assert status == 1 and "1 images: 0 explained, 1 failed; manifest" in err and "images/s" not in err


def test_name_random_works_wherever_a_model_is_named(tmp_path, capsys, photos):
    status, out, err = run(capsys, "layers", "--model", "resnet18:random", "--grep", "layer4")
    assert status == 0, err
    assert "layer4 " in out and "<- automatic" in out and all("layer4" in line for line in out.splitlines()[1:-1])
    status, out, err = run(capsys, "explain", photos / "cat.jpg", "--model", "resnet18:random", "--out", tmp_path)
    assert status == 0, err
    assert (tmp_path / "cat.jpg.gradcam.overlay.png").is_file() and "layer layer4" in out
    import gradcam

    first, second = gradcam.load_model("resnet18:random"), gradcam.load_model("resnet18:random")
    assert first.name == "resnet18:random"  # seeded: the same weights each time
    assert all(np.array_equal(a, b) for a, b in zip(first.module.state_dict().values(),
                                                    second.module.state_dict().values()))


def test_layers_builds_the_architecture_without_downloading(capsys, monkeypatch):
    import torchvision.models._api as api

    def no_download(*args, **kwargs):
        raise AssertionError("gradcam layers downloaded weights")

    monkeypatch.setattr(api, "load_state_dict_from_url", no_download)
    status, out, err = run(capsys, "layers", "--model", "resnet18", "--stages")
    assert status == 0, err
    listed = [line.split()[0] for line in out.splitlines()[1:-1]]
    assert "layer4" in listed and "layer4.0.conv1" not in listed and len(listed) <= 6


def test_compare_needs_two_models_and_says_its_own_spelling_offline(tmp_path, capsys, photos, monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise OSError("no network")  # as a machine with no access to the model hub

    status, _, err = run(capsys, "compare", photos / "cat.jpg", "--models", "efficientnet_lite0", "--out", tmp_path)
    assert status == 2 and "two or more models" in err
    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    status, _, err = run(capsys, "compare", photos / "cat.jpg", "--models", "efficientnet_lite0,resnet18",
                         "--out", tmp_path)
    assert status == 1
    assert "resnet18=PATH" in err and "--weights" not in err and "nothing to compare" in err
    assert not list(tmp_path.glob("*.png"))


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory):
    """A small CNN trained one epoch on 40 shapes (8 held out): enough to audit, not to trust."""
    root = tmp_path_factory.mktemp("audit")
    assert main(["make-shapes", str(root / "data"), "--n", "40", "--size", "48"]) == 0
    assert main(["train", str(root / "data"), "--arch", "small-cnn", "--epochs", "1", "--image-size", "48",
                 "--out", str(root / "model"), "--quiet"]) == 0
    return root / "data", root / "model"


def test_audit_takes_the_held_out_images_or_a_list_and_writes_class_names(tmp_path, capsys, shapes_model):
    data, model = shapes_model
    held = json.loads((model / "config.json").read_text())["val_files"]
    status, out, err = run(capsys, "audit", data, "--checkpoint", model, "--out", tmp_path)
    assert status == 0, err
    assert out.startswith(f"{len(held)} image(s) (held out): ") and len(held) == 8
    with open(tmp_path / "audit.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert sorted(r["image"] for r in table) == sorted(Path(f).relative_to(data).as_posix() for f in held)
    assert {r["label"] for r in table} | {r["predicted"] for r in table} <= {"circle", "square"}
    assert all(r["label"] == ("circle", "square")[int(r["label_index"])] for r in table)
    listed = tmp_path / "list.txt"
    listed.write_text("circle/0000.png\nsquare/0001.png\n")
    status, out, _ = run(capsys, "audit", data, "--checkpoint", model, "--files", listed, "--out", tmp_path)
    assert status == 0 and out.startswith("2 image(s) (listed): ")
    status, out, _ = run(capsys, "audit", data, "--checkpoint", model, "--split", "all", "--out", tmp_path)
    assert status == 0 and out.startswith("40 image(s) (all): ")


def test_long_commands_show_progress_over_their_units_of_work(tmp_path, capsys, photos, shapes_model):
    from gradcam.apps.analyses.evaluate import evaluate
    from gradcam.apps.pipeline.local import explain_folder
    from gradcam.apps.pipeline.step import ExplainStep
    from gradcam.apps.synthetic.train import train
    from gradcam.io.images import load_image

    evaluate([photos / "cat.jpg", photos / "coffee.png"], methods=["gradcam", "hirescam"], steps=2,
             metrics=["confidence"], progress=True)
    assert "evaluate" in capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]
    explain_folder([photos / "cat.jpg"], tmp_path / "all", method=["gradcam", "hirescam", "layercam"],
                   progress_bar=True)
    bar = capsys.readouterr().err.replace("\r", "\n")
    assert "0/3" in bar and "3/3" in bar and "map" in bar  # one image, three methods: a bar over the maps
    step = ExplainStep(tmp_path / "step", method=["gradcam", "hirescam", "layercam"])
    moved = []
    step.explain(["cat.jpg"], step.bundle.preprocess.batch([load_image(photos / "cat.jpg")]), done=moved.append)
    assert moved == [1, 1, 1]  # the bar moves after each method, not once at the end
    data, _ = shapes_model
    train(data, tmp_path / "m", arch="small-cnn", epochs=2, image_size=48, batch_size=16, progress=True,
          log=lambda m: None)
    bar = capsys.readouterr().err.replace("\r", "\n")
    assert "4/4" in bar and "epoch 2/2" in bar  # 32 training images, 2 batches × 2 epochs


@pytest.mark.parametrize("argv, fragment", [
    (["explain", "x.jpg", "--method", "gradcm"], "Did you mean: 'gradcam'"),
    (["explain", "x.jpg", "--alpha", "2"], "argument --alpha: expected a number in [0, 1], got 2"),
    (["explain", "x.jpg", "--normalize", "mnmax"], "unknown 'mnmax'; choose from minmax, max, none. Did you mean"),
    (["explain", "x.jpg", "--task", "detect"], "Did you mean: 'detection'"),
    (["evaluate", "x.jpg", "--methods", "gradcam,hirecam"], "Did you mean: 'hirescam'"),
    (["explain", "x.jpg", "--save", "overlya"], "Did you mean: 'overlay'"),
])
def test_every_choice_answers_in_one_line_with_the_closest_names(capsys, argv, fragment):
    status, _, err = run(capsys, *argv)
    assert status == 2 and err.count("\n") == 1 and fragment in err, err
    assert "usage:" not in err


def test_help_for_every_option_defaults_shown_and_examples_per_command():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    examples = set()
    for name, command in commands.items():
        for action in command._actions:
            if action.dest != "help":
                assert action.help, f"{name} {(action.option_strings or [action.dest])[0]} has no help"
        text = command.format_help()
        assert "examples:" in text and f"gradcam {name}" in text.split("examples:")[1], name
        examples.add(text.split("examples:")[1])
        for action in command._actions:
            if action.option_strings and action.default not in (None, False, "==SUPPRESS==") and action.help:
                flat = " ".join(text.split())
                assert f"default: {action.default}" in flat or "default" in action.help, (name, action.dest)
    assert len(examples) == len(commands)  # each command its own
    assert "(default: 5)" in " ".join(commands["train"].format_help().split())


def test_models_are_grouped_by_source_and_task_with_what_runs_offline(capsys):
    status, out, _ = run(capsys, "models")
    assert status == 0
    assert out.startswith("bundled: ") and "offline here: efficientnet_lite0" in out
    assert re.search(r"classification \(\d+\): alexnet", out) and re.search(r"detection \(\d+\): ", out)
    assert "NAME:random" in out and "timm/<name>" in out


def test_sweep_takes_several_images_and_lines_up_its_columns(tmp_path, capsys, photos):
    status, out, err = run(capsys, "sweep", photos / "cat.jpg", photos / "coffee.png", "--model", "resnet18:random",
                           "--out", tmp_path)
    assert status == 0, err
    assert out.count("figure: ") == 2 and (tmp_path / "cat.jpg.sweep.figure.png").is_file()
    assert (tmp_path / "coffee.png.sweep.figure.png").is_file()
    arrows = [line.index("->") for line in out.splitlines() if "->" in line]
    assert len(arrows) >= 8 and len(set(arrows)) == 1


def test_help_answers_before_torch_loads():
    code = ("import sys\nfrom gradcam.cli import main\ntry:\n    main(['explain', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint('torch' in sys.modules, 'PIL' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False False", done.stdout


def test_chromium_is_installed_only_when_missing_and_upgrades_nothing():
    recipe = (Path(__file__).parents[1] / "Makefile").read_text().split("\nchromium:")[1].split("\n\n")[0]
    assert recipe.index("command -v chromium") < recipe.index("apt-get install")
    assert all("--no-upgrade" in line for line in recipe.splitlines() if "apt-get install" in line)
    assert "echo" in recipe.split("apt-get install")[0]  # it says so before it installs
