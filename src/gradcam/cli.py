"""The ``gradcam`` command: parse, call the pipeline, print. No maths here."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import GradCAMError, OptionError
from .functional import NORMALIZATIONS
from .io import IMAGE_SUFFIXES, image_stem, load_image, save_png
from .layers import auto_layer, candidate_layers
from .methods import describe_methods, list_methods, method_options
from .models import list_models, load_model
from .pipeline import DEFAULT_MODEL, Explainer, compare_methods

EXAMPLES = """examples:
  gradcam explain cat.jpg                         # bundled EfficientNet-Lite0, predicted class
  gradcam explain photos/*.jpg --out maps --top-k 3
  gradcam explain cat.jpg --target "tiger cat" --normalize max --colormap inferno
  gradcam explain cat.jpg --method all --max-channels 64   # every method, one comparison figure
  gradcam explain xray.png --model resnet50 --weights my_resnet50.pth --layer layer4
  gradcam layers --model resnet50                 # candidate layers, the automatic one marked
  gradcam models
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
    ex.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    add_model_options(ex)
    ex.add_argument("--method", default="gradcam", choices=[*list_methods(), "all"], metavar="METHOD",
                    help="gradcam (default), one of: " + ", ".join(list_methods()[1:])
                    + "; or all (one comparison figure per image)")
    ex.add_argument("--layer", help="target layer name (default: automatic); several separated by commas")
    ex.add_argument("--target", help="class to explain: an index or a name (default: the prediction)")
    ex.add_argument("--top-k", type=positive_int, metavar="K", help="explain the K best classes of each image")
    ex.add_argument("--normalize", default="minmax", choices=NORMALIZATIONS, help="map scaling (default: minmax)")
    ex.add_argument("--colormap", default="jet", help="any matplotlib colormap name (default: jet)")
    ex.add_argument("--alpha", type=unit_float, default=0.5, help="overlay opacity in [0, 1] (default: 0.5)")
    ex.add_argument("--smooth", type=int, default=0, metavar="N", help="average over N noisy copies (SmoothGrad)")
    ex.add_argument("--noise", type=float, default=0.15, metavar="S",
                    help="noise σ for --smooth, a fraction of the input range (default: 0.15)")
    ex.add_argument("--augment", action="store_true", help="also average over the flipped image")
    ex.add_argument("--max-channels", type=positive_int, metavar="N",
                    help="scorecam: only the N channels of largest mean activation (Faster Score-CAM)")
    ex.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass (default: 8)")
    ex.add_argument("--out", default="gradcam-out", type=Path, help="output folder (default: gradcam-out)")

    layers = commands.add_parser("layers", help="list the candidate target layers of a model", parents=[common])
    add_model_options(layers)
    commands.add_parser("models", help="list the model names", parents=[common])
    commands.add_parser("methods", help="list the methods", parents=[common])
    return parser


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default: {DEFAULT_MODEL}); timm/<name> for timm")
    parser.add_argument("--weights", type=Path, help="local weights file (.pth or .safetensors)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 done, 1 some image failed (or an unexpected error), 2 a usage error."""
    args = build_parser().parse_args(argv)
    command = {"explain": cmd_explain, "layers": cmd_layers, "models": cmd_models, "methods": cmd_methods}
    try:
        return command[args.command](args)
    except GradCAMError as exc:  # a bad model, weights file, layer, class or option: the same for every image
        return fail(exc, args.debug, status=USAGE)
    except Exception as exc:  # anything else still gets one line; --debug shows the traceback
        return fail(exc, args.debug, status=FAILED, kind=type(exc).__name__)


OK, FAILED, USAGE = 0, 1, 2


def fail(exc: BaseException | str, debug: bool, status: int, kind: str = "") -> int:
    """One line on stderr (the traceback too with --debug); returns the exit status."""
    if debug and isinstance(exc, BaseException):
        traceback.print_exception(exc)
    print(f"error: {kind + ': ' if kind else ''}{exc}", file=sys.stderr)
    return status


def cmd_explain(args) -> int:
    layer = args.layer.split(",") if args.layer and "," in args.layer else args.layer
    target = int(args.target) if args.target and args.target.lstrip("-").isdigit() else args.target
    methods = list_methods() if args.method == "all" else [args.method]
    options = {"smooth": args.smooth, "noise": args.noise, "augment": args.augment,
               "max_channels": args.max_channels, "progress": True}
    explainers = [
        Explainer(args.model, weights=args.weights, device=args.device, method=method, layer=layer,
                  normalize=args.normalize, colormap=args.colormap, alpha=args.alpha,
                  **{k: v for k, v in options.items() if k in method_options(method) and v is not None})
        for method in methods
    ]
    files = expand(args.images)
    if not files:
        raise OptionError(f"no image files in {', '.join(args.images)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    failed, stems = 0, unique_stems(files)
    for start in range(0, len(files), args.batch_size):
        batch = []
        for path in files[start : start + args.batch_size]:
            try:
                batch.append((path, load_image(path)))
            except (GradCAMError, OSError) as exc:  # reported and skipped; the rest goes on
                failed += 1
                message = exc if str(path) in str(exc) else f"{path}: {exc}"
                fail(message, args.debug, FAILED)
        if batch:
            explain_batch(explainers, batch, stems, target, args)
    if failed:
        print(f"{failed} of {len(files)} images failed", file=sys.stderr)
    return FAILED if failed else OK


def explain_batch(explainers, batch, stems, target, args) -> None:
    """Explain, save and report one batch with every method; one comparison figure when several."""
    pictures, names = [im for _, im in batch], [stems[p] for p, _ in batch]
    per_method = [explainer.explain(pictures, target, top_k=args.top_k, stems=names) for explainer in explainers]
    per_image = len(per_method[0]) // len(batch)
    for i, (path, _) in enumerate(batch):
        for j in range(i * per_image, (i + 1) * per_image):
            results = [found[j] for found in per_method]
            written = [p for result in results for p in result.save(args.out).values()]
            if len(results) > 1:
                stem = names[i] + (f"_top{results[0].rank}" if results[0].rank else "")
                written.append(save_png(compare_methods(results), args.out / f"{stem}_methods.png"))
            first = results[0]
            rank = f" top{first.rank}" if first.rank else ""
            layer = f", layer {first.layer}" if first.layer else ""
            print(f"{path}{rank}: {first.label} ({first.probability:.1%}){layer} -> "
                  + ", ".join(str(p) for p in written))


def expand(items: Sequence[str]) -> list[str]:
    """Files as given; a folder becomes its image files, sorted."""
    files = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files += sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(item)
    return files


def unique_stems(files: Sequence[str]) -> dict[str, str]:
    """Output stems; a stem seen twice gets a number so no file overwrites another."""
    stems, seen = {}, {}
    for path in files:
        stem = image_stem(path)
        seen[stem] = seen.get(stem, 0) + 1
        stems[path] = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
    return stems


def cmd_layers(args) -> int:
    bundle = load_model(args.model, args.weights, device=args.device)
    x = bundle.preprocess.batch([load_blank(bundle.preprocess.size)]).to(next(bundle.module.parameters()).device)
    chosen = auto_layer(bundle.module, x)
    print(f"{'layer':<40} {'output shape (C, h, w)':<24} note")
    for info in candidate_layers(bundle.module, x):
        notes = ["<- automatic"] if info.name == chosen else []
        notes += ["pooling"] if info.pooling else []
        notes += [f"runs {info.calls}x"] if info.calls > 1 else []
        print(f"{info.name:<40} {str(info.shape[1:]):<24} {' '.join(notes)}")
    return OK


def load_blank(size: int):
    from PIL import Image

    return Image.new("RGB", (size, size), (128, 128, 128))


def cmd_models(args) -> int:
    for name in list_models():
        print(name)
    print("timm/<name>   any timm model (see timm.list_models())")
    return OK


def cmd_methods(args) -> int:
    for name, description in describe_methods().items():
        print(f"{name:<18} {description}")
    return OK


if __name__ == "__main__":
    sys.exit(main())
