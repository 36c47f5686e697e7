"""The ``gradcam`` command's arguments: every subcommand, its options, its help and its examples."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradcam import __version__
from gradcam.apps.explainer import DEFAULT_MODEL
from gradcam.apps.pipeline.step import PICTURES
from gradcam.apps.tasks import TASKS, parse_box
from gradcam.engine.functional import NORMALIZATIONS
from gradcam.engine.layers import parse_layers
from gradcam.engine.methods import list_methods
from gradcam.engine.precision import MEMORY_FORMATS, PRECISIONS
from gradcam.errors import OptionError
from gradcam.metrics import list_metrics
from gradcam.render.files import PICTURE_FORMATS

EXAMPLES = """examples:
  gradcam explain cat.jpg                         # bundled EfficientNet-Lite0, predicted class
  gradcam explain photos/*.jpg --out maps --top-k 3
  gradcam explain val/ --out maps --workers 2 --resume    # a folder: overlays, manifest, progress
  gradcam explain cat.jpg --target "tiger cat" --normalize max --colormap inferno
  gradcam explain cat.jpg --method all --max-channels 64   # every method, one comparison figure
  gradcam explain xray.png --model resnet50 --weights my_resnet50.pth --layer layer4
  gradcam explain street.jpg --model fasterrcnn_resnet50_fpn_v2 --task detection --min-score 0.7
  gradcam explain street.jpg --model deeplabv3_resnet50 --task segmentation --class car
  gradcam explain a.jpg --model my_net.py:Embedder --weights e.pth --task embedding --reference b.jpg
  gradcam layers --model resnet50                 # candidate layers, the automatic one marked
  gradcam compare cat.jpg --models resnet50,vgg19,timm/xception41
  gradcam sweep cat.jpg --every-stage
  gradcam evaluate photos/ --methods gradcam,hirescam,layercam   # which maps are faithful to the model
  gradcam audit shapes/ --checkpoint shapes-model  # right for the right reasons? (boxes.json)
  gradcam serve                                   # the web app on http://127.0.0.1:8000/
  gradcam make-shapes shapes/ && gradcam train shapes/ --arch small-cnn --epochs 10 --out shapes-model
  gradcam explain shapes/circle/0000.png --checkpoint shapes-model
  gradcam models
"""


COMPARE_EXAMPLES = """examples:
  gradcam compare cat.jpg dog.jpg --models resnet50,vgg19,timm/xception41
  gradcam compare cat.jpg --models efficientnet_lite0,resnet50=my_resnet50.pth --target "tiger cat"
  gradcam sweep cat.jpg --model resnet50 --every-stage
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcam",
        description="Grad-CAM heatmaps: which part of the image made the model decide.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gradcam {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks")

    ex = commands.add_parser("explain", help="explain images and write pictures", epilog=EXAMPLES,
                             formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
    ex.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns")
    add_model_options(ex)
    ex.add_argument("--method", default="gradcam", choices=[*list_methods(), "all"], metavar="METHOD",
                    help="gradcam (default), one of: " + ", ".join(list_methods()[1:])
                    + "; or all (one comparison figure per image)")
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
    ex.add_argument("--box", type=box_arg, metavar="X0,Y0,X1,Y1",
                    help="detection: the object overlapping this box (in the image's pixels), not every object")
    ex.add_argument("--min-score", type=unit_float, metavar="S",
                    help="detection: objects scoring at least S (default 0.5); multilabel: labels with p >= S")
    ex.add_argument("--reference", metavar="IMAGE", help="embedding: the image whose embedding to match")
    ex.add_argument("--negative", action="store_true", help="regression: explain what drives the output down")
    ex.add_argument("--normalize", default="minmax", choices=NORMALIZATIONS, help="map scaling (default: minmax)")
    ex.add_argument("--colormap", default="jet", help="any matplotlib colormap name (default: jet)")
    ex.add_argument("--alpha", type=unit_float, default=0.5, help="overlay opacity in [0, 1] (default: 0.5)")
    ex.add_argument("--smooth", type=int, default=0, metavar="N", help="average over N noisy copies (SmoothGrad)")
    ex.add_argument("--noise", type=float, default=0.15, metavar="S",
                    help="noise σ for --smooth, a fraction of the input range (default: 0.15)")
    ex.add_argument("--augment", action="store_true", help="also average over the flipped image")
    ex.add_argument("--max-channels", type=positive_int, metavar="N",
                    help="scorecam: only the N channels of largest mean activation (Faster Score-CAM)")
    ex.add_argument("--precision", default="fp32", choices=PRECISIONS,
                    help="the forward pass in fp32 (default), bf16 or fp16 (autocast), or auto: bf16 where the "
                    "device runs it natively (a CPU with AVX-512 BF16/AMX, a CUDA GPU), else fp32")
    ex.add_argument("--memory-format", default="auto", choices=MEMORY_FORMATS,
                    help="the input's layout: auto (channels-last for convolution networks), channels_last, contiguous")
    ex.add_argument("--batch-size", type=positive_int, default=16, help="images per forward pass (default: 16)")
    ex.add_argument("--workers", type=int, default=0, metavar="W",
                    help="background processes decoding images (default: 0, in the main process)")
    ex.add_argument("--save", type=picture_list, metavar="KINDS",
                    help="pictures to write: overlay,heatmap,grayscale,figure or all "
                    "(default: all for image files, overlay for folders and globs)")
    ex.add_argument("--save-maps", action="store_true", help="also write the raw maps as .npy")
    ex.add_argument("--format", default="png", choices=PICTURE_FORMATS,
                    help="picture files: png (default, lossless), jpg or webp (several times cheaper to encode)")
    ex.add_argument("--manifest", action="store_true",
                    help="write manifest.jsonl/.csv (always for folders and globs)")
    ex.add_argument("--resume", action="store_true", help="skip images already done with the same settings")
    ex.add_argument("--quiet", action="store_true", help="no progress bar, no line per image")
    ex.add_argument("--out", default="gradcam-out", type=Path, help="output folder (default: gradcam-out)")

    cmp = commands.add_parser("compare", help="several models on the same images, one grid figure",
                              parents=[common], epilog=COMPARE_EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    cmp.add_argument("images", nargs="+", metavar="IMAGE")
    cmp.add_argument("--models", required=True, type=comma_list,
                     help="comma-separated: NAME, timm/NAME, NAME=WEIGHTS_PATH or NAME:random")
    cmp.add_argument("--method", default="gradcam", choices=list_methods(), metavar="METHOD")
    cmp.add_argument("--target", help="one class for every model (default: each model's own prediction)")
    cmp.add_argument("--device", choices=["cpu", "cuda"])
    cmp.add_argument("--out", default="gradcam-out", type=Path)

    ev = commands.add_parser("evaluate", help="how faithful each method's maps are: deletion, insertion, "
                             "Average Drop, against random maps", parents=[common])
    ev.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns")
    add_model_options(ev)
    ev.add_argument("--methods", default=["gradcam"], type=comma_list, metavar="M1,M2",
                    help="comma-separated methods, or all (default: gradcam)")
    ev.add_argument("--layer", type=parse_layers, help="target layer(s) (default: automatic)")
    ev.add_argument("--target", help="class to explain (default: the prediction)")
    ev.add_argument("--steps", type=positive_int, default=20, help="deletion/insertion steps (default: 20)")
    ev.add_argument("--score", default="probability", choices=["probability", "logit"],
                    help="the class score the metrics follow (default: probability)")
    ev.add_argument("--metrics", type=comma_list, metavar="M1,M2",
                    help="comma-separated metrics (default: every faithfulness metric: "
                    + ", ".join(list_metrics("faithfulness")) + "; plugins add theirs)")
    ev.add_argument("--batch-size", type=positive_int, default=8, help="images per batch (default: 8)")
    ev.add_argument("--out", default="gradcam-out", type=Path, help="where evaluation.csv goes (default: gradcam-out)")

    au = commands.add_parser("audit", help="is the model right for the right reasons? maps of the true class "
                             "against the objects' boxes", parents=[common])
    au.add_argument("folder", metavar="DIR", help="the images, and boxes.json as make-shapes writes it")
    au.add_argument("--annotations", type=Path, metavar="JSON",
                    help='{"path": {"class": NAME, "box": [x0, y0, x1, y1]}, ...} (default: DIR/boxes.json)')
    add_model_options(au)
    au.add_argument("--method", default="gradcam", choices=list_methods(), metavar="METHOD")
    au.add_argument("--layer", type=parse_layers, help="target layer(s) (default: automatic)")
    au.add_argument("--threshold", type=unit_float, default=0.5,
                    help="flag the model when more than this share of its right answers point off the object")
    au.add_argument("--batch-size", type=positive_int, default=32, help="images per batch (default: 32)")
    au.add_argument("--out", default="gradcam-out", type=Path, help="where audit.csv goes (default: gradcam-out)")

    sw = commands.add_parser("sweep", help="one model's maps at many layers, shallow to deep", parents=[common])
    sw.add_argument("image", metavar="IMAGE")
    add_model_options(sw)
    sw.add_argument("--layers", type=comma_list, help="comma-separated layer names (default: --every-stage)")
    sw.add_argument("--every-stage", action="store_true", help="one layer per resolution stage (the default)")
    sw.add_argument("--method", default="gradcam", choices=list_methods(), metavar="METHOD")
    sw.add_argument("--target", help="class to explain (default: the prediction)")
    sw.add_argument("--out", default="gradcam-out", type=Path)

    serve = commands.add_parser("serve", help="the web app and HTTP API (needs gradcam[web])", parents=[common])
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", action="append", dest="models", metavar="NAME",
                       help=f"a model to offer (repeatable; default: {DEFAULT_MODEL})")
    serve.add_argument("--weights", type=Path, help="local weights for the first --model")
    serve.add_argument("--device", choices=["cpu", "cuda"])

    tr = commands.add_parser("train", help="train a classifier on a folder of classes", parents=[common])
    tr.add_argument("data", metavar="DATA_DIR", help="one sub-folder of images per class")
    tr.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    tr.add_argument("--arch", default="efficientnet_lite0", choices=["efficientnet_lite0", "small-cnn"])
    tr.add_argument("--epochs", type=positive_int, default=5)
    tr.add_argument("--image-size", type=positive_int, help="default: 224 (efficientnet_lite0), 96 (small-cnn)")
    tr.add_argument("--val-split", type=float, default=0.2)
    tr.add_argument("--batch-size", type=positive_int, default=32)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", choices=["cpu", "cuda"])
    frozen = tr.add_mutually_exclusive_group()
    frozen.add_argument("--freeze-backbone", dest="freeze", action="store_true", default=True,
                        help="train the new head only (the default)")
    frozen.add_argument("--fine-tune", dest="freeze", action="store_false", help="train every layer")

    shapes = commands.add_parser("make-shapes", help="a synthetic circles-vs-squares dataset with boxes",
                                 parents=[common])
    shapes.add_argument("out", metavar="DIR")
    shapes.add_argument("--n", type=positive_int, default=400)
    shapes.add_argument("--size", type=positive_int, default=96)
    shapes.add_argument("--seed", type=int, default=0)
    shapes.add_argument("--shortcut", action="store_true",
                        help="a white square in a corner that tells the class (to try `gradcam audit`)")

    layers = commands.add_parser("layers", help="list the candidate target layers of a model", parents=[common])
    add_model_options(layers)
    commands.add_parser("models", help="list the model names", parents=[common])
    commands.add_parser("methods", help="list the methods", parents=[common])
    return parser


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"model name (default: {DEFAULT_MODEL}); timm/<name> for timm")
    parser.add_argument("--checkpoint", dest="model", metavar="DIR", help="a model folder written by `gradcam train`")
    parser.add_argument("--weights", type=Path, help="local weights file (.pth or .safetensors)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")


def comma_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def picture_list(text: str) -> list[str]:
    kinds = list(PICTURES) if text == "all" else [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in PICTURES]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"unknown picture {unknown[0] if unknown else text!r}; "
                                         f"choose from {', '.join(PICTURES)} or all")
    return kinds


def box_arg(text: str) -> list[float]:
    try:
        return parse_box(text)
    except OptionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value
