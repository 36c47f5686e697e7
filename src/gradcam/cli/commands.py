"""The ``gradcam`` command: parse, plan, run, print. No maths and no loop over inputs here."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from gradcam.apps.analyses.audit import audit_folder
from gradcam.apps.analyses.compare import compare
from gradcam.apps.analyses.evaluate import evaluate
from gradcam.apps.analyses.sweep import sweep
from gradcam.apps.explainer import DEFAULT_MODEL
from gradcam.apps.pipeline.job import TASK_OPTIONS, plan_job
from gradcam.apps.pipeline.local import find_images
from gradcam.apps.pipeline.step import PICTURES
from gradcam.cli.parser import build_parser
from gradcam.engine.layers import auto_layer, auto_layer_reason, candidate_layers, parse_layers
from gradcam.engine.methods import describe_methods, list_methods, method_info
from gradcam.engine.targets import class_spec
from gradcam.errors import GradCAMError, ImageError, LayerError, OptionError
from gradcam.models.sources import list_sources, load_model


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
    """Parse, plan, run, print: the job (:mod:`gradcam.apps.pipeline.job`) decides what the inputs are and loops."""
    task_options = [f"--{n.replace('_', '-')}" for n in TASK_OPTIONS if getattr(args, n) not in (None, False)]
    if args.task == "classification" and task_options:
        raise OptionError(f"{task_options[0].replace('classes', 'class')} needs --task (e.g. --task detection); "
                          "for a classifier, --target picks the class")
    classes = None if args.classes is None else [class_spec(c) for c in args.classes.split(",") if c.strip()]
    layer = parse_layers(args.layer)
    job = plan_job(args.images, model=args.model, weights=args.weights, device=args.device, task=args.task,
                   method=args.method, layer=layer, target=class_spec(args.target), top_k=args.top_k,
                   normalize=args.normalize, colormap=args.colormap, alpha=args.alpha, classes=classes,
                   box=args.box, min_score=args.min_score, reference=args.reference, negative=args.negative,
                   smooth=args.smooth, noise=args.noise, augment=args.augment, max_channels=args.max_channels,
                   progress=not args.quiet, precision=args.precision, memory_format=args.memory_format)
    for name, why in job.skipped:
        print(f"skipped {name}: {why}", file=sys.stderr)
    few = all(Path(item).is_file() for item in args.images)  # a few files: every picture, no manifest
    said = []  # the automatic layer, said once: which and why

    def on_result(path, results, written):
        if args.quiet:
            return
        first = results[0]
        if job.kind == "images" and layer is None and first.layer and not said:
            said.append(first.layer)
            tqdm.write(f"automatic layer {first.layer}: {auto_layer_reason(job.bundle.module, job.bundle.probe())}")
        tqdm.write(f"{path}{describe(job.kind, first)} -> " + ", ".join(str(p) for p in written[:limit])
                   + (" …" if len(written) > limit else ""))

    limit = 10**9 if job.kind == "images" else 3  # an image's few pictures all; a clip's many frames not
    def on_error(message, detail):
        tqdm.write((detail if args.debug else "") + f"error: {message}", file=sys.stderr)

    summary = job.run(args.out, on_result=on_result, on_error=on_error, batch_size=args.batch_size,
                      workers=args.workers, save=args.save or (list(PICTURES) if few else ["overlay"]),
                      save_maps=args.save_maps, format=args.format, manifest=args.manifest or args.resume or not few,
                      resume=args.resume, progress_bar=not args.quiet and None)  # None: a bar on a terminal only
    if job.kind == "images" and (summary.failed or summary.skipped or not few):
        skipped = f", {summary.skipped} already done" if summary.skipped else ""
        print(f"{summary.total} images: {summary.done} explained, {summary.failed} failed{skipped} "
              f"({summary.images_per_second:.1f} images/s)"
              + (f"; manifest {summary.manifest}" if summary.manifest else ""), file=sys.stderr)
    return FAILED if summary.failed else OK


def describe(kind: str, result) -> str:
    """What one explained input's line says after its path: the class (and rank), or a task's captions."""
    if hasattr(result, "captions"):
        more = " …" if len(result.captions) > 5 else ""
        return f": {kind}, layer {result.layer}: " + "; ".join(result.captions[:5]) + more
    rank = f" top{result.rank}" if getattr(result, "rank", None) else ""
    layer = f", layer {result.layer}" if result.layer else ""
    return f"{rank}: {result.label} ({result.probability:.1%}){layer}"


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
    print(f"rows: {result.save(args.out)['evaluation']}")
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
    print(f"rows: {result.save(args.out)['audit']}")
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
    from gradcam.apps.synthetic.train import train

    metrics = train(args.data, args.out, arch=args.arch, epochs=args.epochs, image_size=args.image_size,
                    val_split=args.val_split, freeze_backbone=args.freeze, batch_size=args.batch_size,
                    seed=args.seed, device=args.device, log=lambda m: tqdm.write(m))
    print(f"saved {args.out} (train accuracy {metrics['train_accuracy']:.3f}, "
          f"val accuracy {metrics['val_accuracy']:.3f}); explain with: gradcam explain IMAGE --checkpoint {args.out}")
    return OK


def cmd_make_shapes(args) -> int:
    from gradcam.apps.synthetic.shapes import make_shapes

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

