"""The ``gradcam`` command's arguments: every subcommand, its options, its help and its examples.

Nothing here imports torch: the arguments are parsed (and ``--help`` answered) first, and each command
imports what it needs after. The registries' names (methods, metrics, models) are checked by the command,
with the same one-line answer as a bad choice here."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from gradcam import __version__
from gradcam.choices import (
    DEFAULT_MODEL,
    DEVICES,
    MEMORY_FORMATS,
    NORMALIZATIONS,
    PICTURE_FORMATS,
    PICTURES,
    PRECISIONS,
    TASKS,
)
from gradcam.cli.examples import EXAMPLES
from gradcam.errors import suggest


class Help(argparse.RawDescriptionHelpFormatter):
    """The examples as written, and each option's default after its help (unless the help says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" not in text and action.default not in (None, False, argparse.SUPPRESS)
                and action.option_strings):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """A usage error is one line that names the argument, with the closest names for a bad choice; exit 2."""

    def error(self, message: str):
        found = re.search(r"invalid choice: '?([^'\s]*)'? \(choose from (.*)\)", message)
        if found:
            word, names = found.group(1), [n.strip(" '") for n in found.group(2).split(",")]
            message = (message[: found.start()] + f"unknown {word!r}; choose from {', '.join(names)}."
                       + suggest(word, names))
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gradcam", description="Grad-CAM heatmaps: which part of the image made the model decide.",
                    epilog=EXAMPLES[""], formatter_class=Help)
    parser.add_argument("--version", action="version", version=f"gradcam {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                                   epilog=EXAMPLES[name], formatter_class=Help, parents=[common])

    ex = command("explain", "explain images (or clips, volumes, signals) and write pictures")
    ex.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns")
    add_model_options(ex)
    ex.add_argument("--method", default="gradcam", metavar="METHOD",
                    help="a method (gradcam methods lists them), or all: every method that applies, one "
                    "comparison figure per image (default: gradcam)")
    ex.add_argument("--layer", help="target layer name (default: automatic); several separated by commas")
    ex.add_argument("--target", help="class to explain: an index or a name (default: the prediction)")
    ex.add_argument("--top-k", type=positive_int, metavar="K", help="explain the K best classes of each image")
    ex.add_argument("--task", default="classification", choices=("classification", *TASKS),
                    help="what the model's output is (default: classification): segmentation (a class over its "
                    "predicted pixels), detection (one map per object), embedding (similarity to --reference), "
                    "binary (one sigmoid), multilabel (one map per label present), regression")
    ex.add_argument("--class", dest="classes", metavar="CLASS",
                    help="for --task: the class (segmentation, a detection's label, binary 1/0, the regression "
                    "output's index) or the labels (multilabel), names or indices separated by commas")
    ex.add_argument("--box", metavar="X0,Y0,X1,Y1",
                    help="detection: the object overlapping this box (in the image's pixels), not every object")
    ex.add_argument("--min-score", type=unit_float, metavar="S",
                    help="detection: objects scoring at least S (default 0.5); multilabel: labels with p >= S")
    ex.add_argument("--reference", metavar="IMAGE", help="embedding: the image whose embedding to match")
    ex.add_argument("--negative", action="store_true", help="regression: explain what drives the output down")
    ex.add_argument("--normalize", default="minmax", choices=NORMALIZATIONS, help="how the map is scaled")
    ex.add_argument("--colormap", default="jet", help="any matplotlib colormap name")
    ex.add_argument("--alpha", type=unit_float, default=0.5, help="overlay opacity in [0, 1]")
    ex.add_argument("--smooth", type=int, default=0, metavar="N", help="average over N noisy copies (SmoothGrad)")
    ex.add_argument("--noise", type=float, default=0.15, metavar="S",
                    help="noise σ for --smooth, a fraction of the input range")
    ex.add_argument("--augment", action="store_true", help="also average over the flipped image")
    ex.add_argument("--max-channels", type=positive_int, metavar="N",
                    help="scorecam: only the N channels of largest mean activation (Faster Score-CAM)")
    ex.add_argument("--masks", type=positive_int, metavar="N",
                    help="rise: the number of random masks (default 4000; fewer: faster, noisier)")
    ex.add_argument("--precision", default="fp32", choices=PRECISIONS,
                    help="the forward pass in fp32, bf16 or fp16 (autocast), or auto: bf16 where the "
                    "device runs it natively (a CPU with AVX-512 BF16/AMX, a CUDA GPU), else fp32")
    ex.add_argument("--memory-format", default="auto", choices=MEMORY_FORMATS,
                    help="the input's layout: auto (channels-last for convolution networks), channels_last, contiguous")
    ex.add_argument("--batch-size", type=positive_int, default=None,
                    help="images per forward pass (default: 16 on a CPU, 64 on a GPU)")
    ex.add_argument("--workers", type=int, default=0, metavar="W",
                    help="background processes decoding images (0: in the main process)")
    ex.add_argument("--save", type=picture_list, metavar="KINDS",
                    help="pictures to write: overlay,heatmap,grayscale,figure or all "
                    "(default: all for image files, overlay for folders and globs)")
    ex.add_argument("--save-maps", action="store_true", help="also write the raw maps as .npy")
    ex.add_argument("--format", default="png", choices=PICTURE_FORMATS,
                    help="picture files: png (lossless), jpg or webp (several times cheaper to encode)")
    ex.add_argument("--manifest", action="store_true",
                    help="write manifest.jsonl/.csv (always for folders and globs)")
    ex.add_argument("--resume", action="store_true", help="skip images already done with the same settings")
    ex.add_argument("--engine", default="local", choices=("local", "ray"),
                    help="where the images are explained: local (this process) or ray (Ray Data: the same rows and "
                    "pictures, plus manifest.parquet; needs gradcam[ray]); a CSV or Parquet list of paths, or any "
                    "URI pyarrow opens (s3://...), is an input there")
    ex.add_argument("--address", metavar="HOST:PORT",
                    help="--engine ray: join this Ray cluster (ray start --head prints it; default: start Ray here)")
    ex.add_argument("--quiet", action="store_true", help="no progress bar, no line per image")
    ex.add_argument("--out", default="gradcam-out", type=Path, help="output folder")

    cmp = command("compare", "several models on the same images, one grid figure")
    cmp.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns")
    cmp.add_argument("--models", required=True, type=comma_list, metavar="M1,M2,...",
                     help="two or more, comma-separated: NAME, timm/NAME, NAME=WEIGHTS_PATH or NAME:random")
    cmp.add_argument("--method", default="gradcam", metavar="METHOD", help="the method every model is explained by")
    cmp.add_argument("--target", help="one class for every model (default: each model's own prediction)")
    cmp.add_argument("--device", choices=DEVICES, help="default: cuda when available, else cpu")
    cmp.add_argument("--out", default="gradcam-out", type=Path, help="where the figure and pictures go")

    ev = command("evaluate", "how faithful each method's maps are: deletion, insertion, Average Drop, "
                 "against random maps")
    ev.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns")
    add_model_options(ev)
    ev.add_argument("--methods", default=["gradcam"], type=comma_list, metavar="M1,M2",
                    help="comma-separated methods, or all (default: gradcam)")
    ev.add_argument("--layer", help="target layer(s), separated by commas (default: automatic)")
    ev.add_argument("--target", help="class to explain (default: the prediction)")
    ev.add_argument("--steps", type=positive_int, default=20, help="deletion/insertion steps")
    ev.add_argument("--score", default="probability", choices=["probability", "logit"],
                    help="the class score the metrics follow")
    ev.add_argument("--metrics", type=comma_list, metavar="M1,M2",
                    help="comma-separated metric names (default: every registered faithfulness metric: "
                    "deletion, confidence and those plugins add)")
    ev.add_argument("--batch-size", type=positive_int, default=8, help="images per batch")
    ev.add_argument("--precision", default="fp32", choices=PRECISIONS,
                    help="the model's passes (the maps and the metrics' perturbed copies) in fp32, bf16 or fp16, "
                    "or auto: bf16 where the hardware runs it natively (about 2x faster on such a CPU)")
    add_engine_options(ev, "scored")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--out", default="gradcam-out", type=Path,
                    help="where evaluation.csv, summary.json and report.html go")

    au = command("audit", "is the model right for the right reasons? maps of the true class against the "
                 "objects' boxes or masks, or against their class's average map")
    au.add_argument("folder", metavar="DIR", help="the images, and boxes.json as make-shapes writes it")
    au.add_argument("--annotations", "--boxes", dest="annotations", type=Path, metavar="JSON",
                    help='{"path": {"class": NAME, "box": [x0, y0, x1, y1] or "mask": "mask.png"}, ...} (default: '
                    "DIR/boxes.json; with none, and no --masks, each map is compared with its class's average)")
    au.add_argument("--masks", type=Path, metavar="MASK_DIR",
                    help="mask PNGs mirroring the images (MASK_DIR/circle/0001.png for DIR/circle/0001.jpg); the "
                    "class from the image's sub-folder")
    add_model_options(au)
    au.add_argument("--split", default="auto", choices=("auto", "val", "all"),
                    help="which images: val, the held-out images a checkpoint of gradcam train names; all, every "
                    "image; auto: val for such a checkpoint, else all")
    au.add_argument("--files", type=Path, metavar="LIST",
                    help="a text file of the images to audit, one path (relative to DIR) per line")
    au.add_argument("--method", default="gradcam", metavar="METHOD", help="the method whose maps are audited")
    au.add_argument("--layer", help="target layer(s), separated by commas (default: automatic)")
    au.add_argument("--tolerance", type=float, default=0, metavar="PX",
                    help="a map's peak within PX pixels of the object (in the model's input) is on it (TorchRay: "
                    "15 at 224 px; default 0)")
    au.add_argument("--threshold", type=unit_float, default=0.5,
                    help="flag the model when more than this share of its right answers point off the object")
    au.add_argument("--batch-size", type=positive_int, default=32, help="images per batch")
    add_engine_options(au, "audited")
    au.add_argument("--fail-on-flag", action="store_true", help="exit status 3 when the model is flagged")
    au.add_argument("--quiet", action="store_true", help="no progress bar")
    au.add_argument("--out", default="gradcam-out", type=Path,
                    help="where audit.csv, summary.json and report.html go")

    sa = command("sanity", "do the maps follow the model? re-initialise its layers from the top and watch each "
                 "method's maps change (Adebayo et al., 2018)")
    sa.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns")
    add_model_options(sa)
    sa.add_argument("--methods", default=["gradcam", "guided-backprop"], type=comma_list, metavar="M1,M2",
                    help="comma-separated methods, or all (default: gradcam,guided-backprop)")
    sa.add_argument("--layer", help="target layer(s), separated by commas (default: automatic)")
    sa.add_argument("--target", help="class to explain (default: the prediction)")
    sa.add_argument("--orders", default=["top_down", "independent"], type=comma_list, metavar="O1,O2",
                    help="top_down (cascading), independent, bottom_up (default: top_down,independent)")
    sa.add_argument("--depth", type=positive_int,
                    help="the verdict's depth: how many top layers are random (default: half the layers)")
    sa.add_argument("--threshold", type=unit_float, default=0.3,
                    help="a method passes when its mean rank correlation at that depth is below this")
    sa.add_argument("--seed", type=int, default=42, help="the seed of the new random weights")
    sa.add_argument("--batch-size", type=positive_int, default=8, help="images per batch")
    sa.add_argument("--fail-on-flag", action="store_true", help="exit status 3 when a method fails the check")
    sa.add_argument("--quiet", action="store_true", help="no progress bar")
    sa.add_argument("--out", default="gradcam-out", type=Path,
                    help="where sanity.csv, summary.json and report.html go")

    sw = command("sweep", "one model's maps at many layers, shallow to deep")
    sw.add_argument("images", nargs="+", metavar="IMAGE", help="image files (one figure each)")
    add_model_options(sw)
    sw.add_argument("--layers", type=comma_list, help="comma-separated layer names (default: --every-stage)")
    sw.add_argument("--every-stage", action="store_true", help="one layer per resolution stage (the default)")
    sw.add_argument("--method", default="gradcam", metavar="METHOD", help="the method of every layer's map")
    sw.add_argument("--target", help="class to explain (default: the prediction)")
    sw.add_argument("--out", default="gradcam-out", type=Path, help="where the maps and figures go")

    co = command("concepts", "Deep Feature Factorization: the concepts a layer sees in each image, each one's "
                 "region, share and top classes")
    co.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns")
    add_model_options(co)
    co.add_argument("--layer", help="the layer to factorise (default: automatic); the one that feeds the classifier "
                    "names each concept's classes")
    co.add_argument("--concepts", type=positive_int, default=5, metavar="K", help="concepts per image")
    co.add_argument("--top-classes", type=positive_int, default=2, metavar="N", help="classes named per concept")
    co.add_argument("--format", default="png", choices=PICTURE_FORMATS, help="picture files: png, jpg or webp")
    co.add_argument("--out", default="gradcam-out", type=Path,
                    help="where the pictures (IMAGE.dff.concepts.png) and concepts.csv go")

    serve = command("serve", "the web app and HTTP API (needs gradcam[web])")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="the port to listen on")
    serve.add_argument("--model", action="append", dest="models", metavar="NAME",
                       help=f"a model to offer (repeatable; default: {DEFAULT_MODEL})")
    serve.add_argument("--weights", type=Path, help="local weights for the first --model")
    serve.add_argument("--device", choices=DEVICES, help="default: cuda when available, else cpu")

    tr = command("train", "train a classifier on a folder of classes")
    tr.add_argument("data", metavar="DATA_DIR", help="one sub-folder of images per class")
    tr.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    tr.add_argument("--arch", default="efficientnet_lite0", choices=["efficientnet_lite0", "small-cnn"],
                    help="the network: the bundled ImageNet Lite0 with a new head, or a small CNN from scratch")
    tr.add_argument("--epochs", type=positive_int, default=5, help="passes over the training images")
    tr.add_argument("--image-size", type=positive_int, help="default: 224 (efficientnet_lite0), 96 (small-cnn)")
    tr.add_argument("--val-split", type=float, default=0.2, help="the share of each class held out for validation")
    tr.add_argument("--batch-size", type=positive_int, default=32, help="images per step")
    tr.add_argument("--seed", type=int, default=0, help="the split's, the shuffling's and the initial weights' seed")
    tr.add_argument("--device", choices=DEVICES, help="default: cuda when available, else cpu")
    tr.add_argument("--quiet", action="store_true", help="no progress bar, no line per epoch")
    frozen = tr.add_mutually_exclusive_group()
    frozen.add_argument("--freeze-backbone", dest="freeze", action="store_true", default=True,
                        help="train the new head only (the default)")
    frozen.add_argument("--fine-tune", dest="freeze", action="store_false", help="train every layer")

    shapes = command("make-shapes", "a synthetic circles-vs-squares dataset with boxes")
    shapes.add_argument("out", metavar="DIR", help="the folder to write (DIR/circle, DIR/square, DIR/boxes.json)")
    shapes.add_argument("--n", type=positive_int, default=400, help="images in all, half of each class")
    shapes.add_argument("--size", type=positive_int, default=96, help="each image's side in pixels")
    shapes.add_argument("--seed", type=int, default=0, help="the same seed draws the same images")
    shapes.add_argument("--shortcut", action="store_true",
                        help="a red or blue square in a corner that tells the class (to try `gradcam audit`)")

    layers = command("layers", "list the candidate target layers of a model (its architecture only: no download)")
    add_model_options(layers)
    layers.add_argument("--grep", metavar="TEXT", help="only the layers whose name contains TEXT")
    layers.add_argument("--stages", action="store_true", help="only one layer per resolution stage (what sweep uses)")
    command("models", "list the models by source and task, and which run offline here")
    command("methods", "list the methods")
    return parser


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="model name: NAME, timm/NAME, NAME:random (seeded random weights), file.py:Class, a "
                        "checkpoint folder (gradcam models lists them)")
    parser.add_argument("--checkpoint", dest="model", metavar="DIR", help="a model folder written by `gradcam train`")
    parser.add_argument("--weights", type=Path, help="local weights file (.pth or .safetensors)")
    parser.add_argument("--device", choices=DEVICES, help="default: cuda when available, else cpu")
    files = parser.add_argument_group("a model file's preprocessing (.onnx, .keras: what the file does not say)")
    files.add_argument("--input-size", type=positive_int, metavar="PX", help="the side of its square input")
    files.add_argument("--mean", type=three_floats, metavar="R,G,B", help="per-channel mean of pixels in [0, 1]")
    files.add_argument("--std", type=three_floats, metavar="R,G,B", help="per-channel std of pixels in [0, 1]")
    files.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                       help="whether it takes (N, H, W, C) images (default: as its input says)")


def add_engine_options(parser: argparse.ArgumentParser, done: str) -> None:
    """--engine and --address of a command whose per-batch step runs here or on Ray Data."""
    parser.add_argument("--engine", default="local", choices=("local", "ray"),
                        help=f"where the images are {done}: local (this process) or ray (Ray Data, on this machine's "
                        "cores or a cluster: the same numbers; needs gradcam[ray])")
    parser.add_argument("--address", metavar="HOST:PORT", help="--engine ray: join this Ray cluster (ray start "
                        "--head prints it; default: start Ray here)")


def three_floats(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers R,G,B, got {text!r}")
    return values


def comma_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def picture_list(text: str) -> list[str]:
    kinds = list(PICTURES) if text == "all" else [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in PICTURES]
    if unknown or not kinds:
        word = unknown[0] if unknown else text
        raise argparse.ArgumentTypeError(f"unknown picture {word!r}; choose from {', '.join(PICTURES)} or all."
                                         + suggest(word, PICTURES))
    return kinds


def unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value
