"""The ``gradcam`` command: parse, call the pipeline, print. No maths here."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from gradcam import __version__
from gradcam.apps.audit import audit_folder
from gradcam.apps.batch import explain_folder, find_images, input_roots
from gradcam.apps.compare import compare
from gradcam.apps.device import bundle_on_device
from gradcam.apps.evaluate import evaluate
from gradcam.apps.explainer import DEFAULT_MODEL
from gradcam.apps.media import explain_clip, explain_signal, explain_volume, media_kind
from gradcam.apps.step import PICTURES
from gradcam.apps.sweep import sweep
from gradcam.apps.tasks import TASKS, explain_task, parse_box
from gradcam.engine.functional import NORMALIZATIONS
from gradcam.engine.layers import auto_layer, auto_layer_reason, candidate_layers, parse_layers
from gradcam.engine.methods import applicable_methods, describe_methods, list_methods, method_info, method_options
from gradcam.engine.precision import MEMORY_FORMATS, PRECISIONS
from gradcam.engine.targets import class_spec
from gradcam.errors import GradCAMError, ImageError, LayerError, OptionError, TargetError
from gradcam.metrics import list_metrics
from gradcam.models.sources import list_sources, load_model
from gradcam.render.files import PICTURE_FORMATS, mirrored_names

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


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 done, 1 some image failed (or an unexpected error), 2 a usage error."""
    args = build_parser().parse_args(argv)
    command = {"explain": cmd_explain, "compare": cmd_compare, "evaluate": cmd_evaluate, "audit": cmd_audit,
               "sweep": cmd_sweep, "serve": cmd_serve,
               "train": cmd_train, "make-shapes": cmd_make_shapes, "layers": cmd_layers,
               "models": cmd_models, "methods": cmd_methods}
    try:
        return command[args.command](args)
    except ImageError as exc:  # an image that cannot be read: a failed image, not a usage error
        return fail(exc, args.debug, status=FAILED)
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
    layer = parse_layers(args.layer)
    target = class_spec(args.target)
    task_options = [f"--{n.replace('_', '-')}" for n in ("classes", "box", "min_score", "reference", "negative")
                    if getattr(args, n) not in (None, False)]
    if args.task != "classification":
        return explain_tasks(args, layer)
    if task_options:
        raise OptionError(f"{task_options[0].replace('classes', 'class')} needs --task (e.g. --task detection); "
                          "for a classifier, --target picks the class")
    kind = media_kind(args.images, bundle_on_device(args.model, args.weights, args.device)[0])
    if kind is not None:
        return explain_media(args, kind, layer, target)
    methods = [args.method]
    if args.method == "all":  # every method that applies to this model; say why the others do not
        bundle, _ = bundle_on_device(args.model, args.weights, args.device)
        methods, skipped = applicable_methods(list_methods(), bundle, layer, bundle.probe())
        for name, why in skipped:
            print(f"skipped {name}: {why}", file=sys.stderr)
    options = {"smooth": args.smooth, "noise": args.noise, "augment": args.augment,
               "max_channels": args.max_channels, "progress": not args.quiet,
               "precision": args.precision, "memory_format": args.memory_format}
    accepted = set().union(*(method_options(m) for m in methods))
    job = all(Path(item).is_file() for item in args.images)  # a few files: every picture, no manifest
    save = args.save or (list(PICTURES) if job else ["overlay"])
    bar = not args.quiet and None  # None: a progress bar on a terminal only

    said = []  # the automatic layer, said once: which and why

    def on_result(path, results, written):
        if not args.quiet:
            first = results[0]
            if layer is None and first.layer and not said:
                bundle, _ = bundle_on_device(args.model, args.weights, args.device)  # the job's, cached
                said.append(first.layer)
                tqdm.write(f"automatic layer {first.layer}: {auto_layer_reason(bundle.module, bundle.probe())}")
            rank = f" top{first.rank}" if first.rank else ""
            layer_name = f", layer {first.layer}" if first.layer else ""
            tqdm.write(f"{path}{rank}: {first.label} ({first.probability:.1%}){layer_name} -> "
                       + ", ".join(str(p) for p in written))

    def on_error(message, detail):
        tqdm.write((detail if args.debug else "") + f"error: {message}", file=sys.stderr)

    summary = explain_folder(
        args.images, args.out, model=args.model, weights=args.weights, device=args.device, method=methods,
        layer=layer, target=target, top_k=args.top_k, normalize=args.normalize, colormap=args.colormap,
        alpha=args.alpha, batch_size=args.batch_size, workers=args.workers, save=save, save_maps=args.save_maps,
        format=args.format,
        manifest=args.manifest or args.resume or not job, resume=args.resume, progress_bar=bar,
        on_result=on_result, on_error=on_error,
        **{k: v for k, v in options.items() if k in accepted and v is not None},
    )
    if summary.failed or summary.skipped or not job:
        skipped = f", {summary.skipped} already done" if summary.skipped else ""
        print(f"{summary.total} images: {summary.done} explained, {summary.failed} failed{skipped} "
              f"({summary.images_per_second:.1f} images/s)"
              + (f"; manifest {summary.manifest}" if summary.manifest else ""), file=sys.stderr)
    return FAILED if summary.failed else OK


def explain_media(args, kind: str, layer, target) -> int:
    """Each clip (a video file or a folder of frames), volume or signal explained: an overlay video and
    key frames, slice pictures, or a signal plot, and the map; one that fails is reported, the rest go on."""
    bundle, _ = bundle_on_device(args.model, args.weights, args.device)
    explain = {"clip": explain_clip, "volume": explain_volume, "signal": explain_signal}[kind]
    failed = 0
    for item in args.images:
        try:
            result = explain(item, model=bundle, method=args.method, layer=layer, target=target,
                             colormap=args.colormap, alpha=args.alpha)
            written = result.save(args.out, format=args.format)
        except ImageError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        if not args.quiet:
            print(f"{item}: {result.label} ({result.probability:.1%}), layer {result.layer} -> "
                  + ", ".join(str(p) for p in list(written.values())[:3]) + (" …" if len(written) > 3 else ""))
    return FAILED if failed else OK


def explain_tasks(args, layer) -> int:
    """Each image explained for ``--task``: pictures and maps; one that fails is reported, the rest go on."""
    if args.method == "all" or args.top_k or args.target is not None:
        raise OptionError("--task takes --class (not --target), and neither --top-k nor --method all")
    bundle, _ = bundle_on_device(args.model, args.weights, args.device)
    classes = None if args.classes is None else [class_spec(c) for c in args.classes.split(",") if c.strip()]
    failed, files = 0, find_images(args.images)
    names = mirrored_names(files, input_roots(args.images))
    for item in files:
        try:
            result = explain_task(item, model=bundle, task=args.task, method=args.method, layer=layer,
                                  classes=classes, box=args.box, min_score=args.min_score, reference=args.reference,
                                  negative=args.negative, colormap=args.colormap, alpha=args.alpha)
            written = result.save(args.out, names[item], format=args.format)
        except (ImageError, TargetError) as exc:
            failed += 1
            print(f"error: {item}: {exc}", file=sys.stderr)
            continue
        if not args.quiet:
            print(f"{item}: {args.task}, layer {result.layer}: " + "; ".join(result.captions[:5])
                  + (" …" if len(result.captions) > 5 else "") + " -> "
                  + ", ".join(str(p) for p in list(written.values())[:3]) + (" …" if len(written) > 3 else ""))
    return FAILED if failed else OK


def cmd_compare(args) -> int:
    result = compare(args.images, args.models, method=args.method, target=class_spec(args.target), device=args.device)
    for spec, why in result.skipped:
        print(f"skipped {spec}: {why}", file=sys.stderr)
    for _, why in result.failed:
        print(f"error: {why}", file=sys.stderr)
    written = result.save(args.out)
    for i, stem in enumerate(result.stems):
        found = ", ".join(f"{m}: {c[i].label} ({c[i].probability:.1%})" for m, c in zip(result.models, result.columns))
        print(f"{stem}: {found}")
    print(f"figure: {written['figure']}")
    return FAILED if result.failed else OK


def cmd_evaluate(args) -> int:
    methods = list_methods() if args.methods == ["all"] else args.methods
    unknown = [m for m in methods if m not in list_methods()]
    if unknown:
        raise OptionError(f"unknown method {unknown[0]!r}; choose from {', '.join(list_methods())} or all")
    files = find_images(args.images)
    result = evaluate(files, model=args.model, weights=args.weights, device=args.device, methods=methods,
                      layer=args.layer, target=class_spec(args.target), steps=args.steps, score=args.score,
                      batch_size=args.batch_size, metrics=args.metrics)
    for method, why in result.skipped:
        print(f"skipped {method}: {why}", file=sys.stderr)
    for _, why in result.failed:
        print(f"error: {why}", file=sys.stderr)
    print(f"{result.model}, {len(files) - len(result.failed)} image(s), {args.steps} steps, {args.score}")
    print(result.table())
    print(f"rows: {result.save(args.out)}")
    return FAILED if result.failed else OK


def cmd_audit(args) -> int:
    result = audit_folder(args.folder, args.annotations, model=args.model, weights=args.weights, device=args.device,
                          method=args.method, layer=args.layer, batch_size=args.batch_size, threshold=args.threshold)
    for _, why in result.failed:
        print(f"error: {why}", file=sys.stderr)
    print(f"{len(result.names)} image(s): {result.summary()}")
    flagged = result.flagged
    if flagged:
        print(f"right for the wrong reasons ({len(flagged)}): {', '.join(flagged[:10])}"
              + (", ..." if len(flagged) > 10 else ""))
    print(f"rows: {result.save(args.out)}")
    return FAILED if result.failed else OK


def cmd_sweep(args) -> int:
    if args.layers and args.every_stage:
        raise OptionError("give --layers or --every-stage, not both")
    result = sweep(args.image, model=args.model, weights=args.weights, device=args.device, layers=args.layers,
                   method=args.method, target=class_spec(args.target))
    written = result.save(args.out)
    print(f"{args.image}: {result.label} ({result.probability:.1%})")
    for m in result.layers:
        print(f"  {m.name:<32} {m.size[0]}×{m.size[1]:<6} -> {written[m.name]}")
    print(f"figure: {written['figure']}")
    return OK


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from gradcam.web import create_app
    except ImportError as exc:
        raise OptionError(f"the web app needs its extra: pip install 'gradcam[web]' ({exc})") from None
    app = create_app(args.models or [DEFAULT_MODEL], weights=args.weights and str(args.weights), device=args.device)
    print(f"gradcam: serving on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return OK


def cmd_train(args) -> int:
    from gradcam.apps.train import train

    metrics = train(args.data, args.out, arch=args.arch, epochs=args.epochs, image_size=args.image_size,
                    val_split=args.val_split, freeze_backbone=args.freeze, batch_size=args.batch_size,
                    seed=args.seed, device=args.device, log=lambda m: tqdm.write(m))
    print(f"saved {args.out} (train accuracy {metrics['train_accuracy']:.3f}, "
          f"val accuracy {metrics['val_accuracy']:.3f}); explain with: gradcam explain IMAGE --checkpoint {args.out}")
    return OK


def cmd_make_shapes(args) -> int:
    from gradcam.apps.shapes import make_shapes

    root = make_shapes(args.out, n=args.n, size=args.size, seed=args.seed, shortcut=args.shortcut)
    print(f"{args.n} images in {root}/circle and {root}/square, boxes in {root}/boxes.json")
    return OK


def cmd_layers(args) -> int:
    bundle = load_model(args.model, args.weights, device=args.device)
    x = bundle.probe()
    try:
        chosen, why = auto_layer(bundle.module, x), auto_layer_reason(bundle.module, x)
    except LayerError as exc:
        chosen, why = None, str(exc)
    print(f"{'layer':<40} {'output shape':<24} {'layout':<15} note")
    for info in candidate_layers(bundle.module, x):
        notes = ["<- automatic"] if info.name == chosen else []
        notes += ["pooling"] if info.pooling else []
        notes += ["not a map of the input"] if info.layout is None else []
        notes += [f"runs {info.calls}x"] if info.calls > 1 else []
        layout = info.layout.kind if info.layout is not None else "-"
        print(f"{info.name:<40} {str(info.shape[1:]):<24} {layout:<15} {' '.join(notes)}")
    print(f"automatic layer: {chosen} ({why})" if chosen else f"automatic layer: none: {why}")
    return OK


def cmd_models(args) -> int:
    for source in list_sources():
        for name in source.names() if source.names else []:
            print(name)
    for source in list_sources():  # what a source takes beyond the names it lists
        if not source.names:
            print(f"{source.description or source.name}")
    return OK


def cmd_methods(args) -> int:
    for name, description in describe_methods().items():
        info = method_info(name)
        needs = [label for key, label in (("single_layer", "one layer"), ("needs_linear_head", "GAP+linear head"),
                                          ("class_free", "class-free"), ("uses_gradients", "gradients"))
                 if info[key]] + ([] if info["needs_layer"] else ["no layer"])
        print(f"{name:<18} {description}  [{', '.join(needs + [info['output_kind']])}]")
    return OK


if __name__ == "__main__":
    sys.exit(main())
