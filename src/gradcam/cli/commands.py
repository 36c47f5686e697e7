"""The ``gradcam`` command: parse, plan, run, print. No maths and no loop over inputs here.

The arguments are parsed before anything heavy loads (``gradcam --help`` does not import torch); each
command imports what it needs."""

from __future__ import annotations

import sys
import traceback
import warnings
from pathlib import Path
from typing import Sequence

from gradcam.choices import DEFAULT_MODEL, PICTURES
from gradcam.cli.concepts import cmd_concepts
from gradcam.cli.inputs import check_inputs, check_methods, check_ray, model_of, progress
from gradcam.cli.listings import cmd_layers, cmd_methods, cmd_models
from gradcam.cli.parser import build_parser
from gradcam.errors import GradCAMError, ImageError, OptionError, PreprocessingGuess

OK, FAILED, USAGE, FLAGGED = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 done, 1 some image failed (or an unexpected error), 2 a usage error, 3 a check failed
    (``--fail-on-flag``)."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = _note
    warnings.simplefilter("always", PreprocessingGuess)  # every run says what it guessed
    command = {"explain": cmd_explain, "compare": cmd_compare, "evaluate": cmd_evaluate, "audit": cmd_audit,
               "sanity": cmd_sanity, "sweep": cmd_sweep, "serve": cmd_serve,
               "train": cmd_train, "make-shapes": cmd_make_shapes, "layers": cmd_layers,
               "models": cmd_models, "methods": cmd_methods, "concepts": cmd_concepts}
    try:
        return command[args.command](args)
    except ImageError as exc:  # an image that cannot be read: a failed image, not a usage error
        return fail(exc, args.debug, status=FAILED)
    except GradCAMError as exc:  # a bad model, weights file, layer, class or option: the same for every image
        return fail(exc, args.debug, status=USAGE)
    except Exception as exc:  # anything else still gets one line; --debug shows the traceback
        return fail(exc, args.debug, status=FAILED, kind=type(exc).__name__)


def fail(exc: BaseException | str, debug: bool, status: int, kind: str = "") -> int:
    """One line on stderr (the traceback too with --debug); returns the exit status."""
    if debug and isinstance(exc, BaseException):
        traceback.print_exception(exc)
    print(f"error: {kind + ': ' if kind else ''}{exc}", file=sys.stderr)
    return status


_shown = warnings.showwarning


def _note(message, category, *args, **kwargs) -> None:
    """A guess gradcam made (a model file's preprocessing) is one line; other warnings as Python shows them."""
    if issubclass(category, PreprocessingGuess):
        print(f"note: {message}", file=sys.stderr)
    else:
        _shown(message, category, *args, **kwargs)


def cmd_explain(args) -> int:
    """Parse, plan, run, print: the job (:mod:`gradcam.apps.pipeline.job`) decides what the inputs are and loops."""
    from tqdm.auto import tqdm

    from gradcam.apps.pipeline.job import TASK_OPTIONS, plan_job
    from gradcam.apps.tasks import parse_box
    from gradcam.engine.layers import auto_layer_reason, parse_layers
    from gradcam.engine.targets import class_spec

    task_options = [f"--{n.replace('_', '-')}" for n in TASK_OPTIONS if getattr(args, n) not in (None, False)]
    if args.task == "classification" and task_options:
        raise OptionError(f"{task_options[0].replace('classes', 'class')} needs --task (e.g. --task detection); "
                          "for a classifier, --target picks the class")
    if args.method != "all":
        check_methods([args.method])
    check_ray(args)
    check_inputs(args.images, uris=args.engine == "ray")
    classes = None if args.classes is None else [class_spec(c) for c in args.classes.split(",") if c.strip()]
    layer = parse_layers(args.layer)
    job = plan_job(args.images, model=model_of(args), weights=args.weights, device=args.device, task=args.task,
                   method=args.method, layer=layer, target=class_spec(args.target), top_k=args.top_k,
                   normalize=args.normalize, colormap=args.colormap, alpha=args.alpha, classes=classes,
                   box=None if args.box is None else parse_box(args.box), min_score=args.min_score,
                   reference=args.reference, negative=args.negative, smooth=args.smooth, noise=args.noise,
                   augment=args.augment, max_channels=args.max_channels, masks=args.masks,
                   progress=not args.quiet,
                   precision=args.precision, memory_format=args.memory_format)
    for name, why in job.skipped:
        print(f"skipped {name}: {why}", file=sys.stderr)
    few = args.engine == "local" and all(Path(item).is_file() for item in args.images)  # every picture, no manifest
    said = []  # the automatic layer, said once: which and why
    limit = 10**9 if job.kind == "images" else 3  # an image's few pictures all; a clip's many frames not

    def on_result(path, results, written):
        if args.quiet:
            return
        first = results[0]
        if job.kind == "images" and layer is None and first.layer and not said:
            said.append(first.layer)
            tqdm.write(f"automatic layer {first.layer}: {auto_layer_reason(job.bundle.module, job.bundle.probe())}")
        tqdm.write(f"{path}{describe(job.kind, first)} -> " + ", ".join(str(p) for p in written[:limit])
                   + (" …" if len(written) > limit else ""))

    def on_error(message, detail):
        tqdm.write((detail if args.debug else "") + f"error: {message}", file=sys.stderr)

    summary = job.run(args.out, on_result=on_result, on_error=on_error, batch_size=args.batch_size,
                      workers=args.workers, save=args.save or (list(PICTURES) if few else ["overlay"]),
                      save_maps=args.save_maps, format=args.format, manifest=args.manifest or args.resume or not few,
                      resume=args.resume, progress_bar=progress(args), engine=args.engine, address=args.address)
    if job.kind == "images" and (summary.failed or summary.skipped or not few):
        skipped = f", {summary.skipped} already done" if summary.skipped else ""
        rate = f" ({summary.images_per_second:.1f} images/s)" if summary.done else ""
        print(f"{summary.total} images: {summary.done} explained, {summary.failed} failed{skipped}{rate}"
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
    from gradcam.apps.analyses.compare import compare
    from gradcam.engine.targets import class_spec

    if len(args.models) < 2:
        raise OptionError(f"--models: compare needs two or more models, got {len(args.models)} "
                          "(one model: gradcam explain)")
    check_inputs(args.images)
    [method] = check_methods([args.method])
    result = compare(args.images, args.models, method=method, target=class_spec(args.target), device=args.device)
    for spec, why in result.skipped:
        print(f"skipped {spec}: {why}", file=sys.stderr)
    if len(result.models) < 2:
        print(f"error: only {len(result.models)} of the {len(args.models)} models could be loaded "
              f"({', '.join(result.models)}): nothing to compare", file=sys.stderr)
        return FAILED
    for _, why in result.failed:
        print(f"error: {why}", file=sys.stderr)
    written = result.save(args.out)
    for i, stem in enumerate(result.stems):
        found = ", ".join(f"{m}: {c[i].label} ({c[i].probability:.1%})" for m, c in zip(result.models, result.columns))
        print(f"{stem}: {found}")
    print(f"figure: {written['figure']}")
    return FAILED if result.failed else OK


def cmd_evaluate(args) -> int:
    from gradcam.apps.analyses.evaluate import evaluate
    from gradcam.apps.pipeline.local import find_images
    from gradcam.engine.layers import parse_layers
    from gradcam.engine.targets import class_spec

    methods = check_methods(args.methods, allow_all=True)
    check_ray(args)
    check_inputs(args.images, uris=args.engine == "ray")
    if args.engine == "ray":  # also a CSV or Parquet list of paths, and URIs
        from gradcam.apps.pipeline.ray_engine import list_inputs

        files = list_inputs(args.images)[0]
    else:
        files = find_images(args.images)
    result = evaluate(files, model=model_of(args), weights=args.weights, device=args.device, methods=methods,
                      layer=parse_layers(args.layer), target=class_spec(args.target), steps=args.steps,
                      score=args.score, batch_size=args.batch_size, metrics=args.metrics, progress=progress(args),
                      precision=args.precision, engine=args.engine, address=args.address)
    for method, why in result.skipped:
        print(f"skipped {method}: {why}", file=sys.stderr)
    for _, why in result.failed:
        print(f"error: {why}", file=sys.stderr)
    print(f"{result.model}, {len(files) - len(result.failed)} image(s), {args.steps} steps, {args.score}")
    print(result.table())
    written = result.save(args.out)
    print(f"rows: {written['evaluation']}\nsummary: {written['summary']}\nreport: {written['report']}")
    return FAILED if result.failed else OK


def cmd_sanity(args) -> int:
    from gradcam.apps.analyses.sanity import sanity
    from gradcam.apps.pipeline.local import find_images
    from gradcam.engine.layers import parse_layers
    from gradcam.engine.targets import class_spec

    methods = check_methods(args.methods, allow_all=True)
    check_inputs(args.images)
    files = find_images(args.images)
    result = sanity(files, model=model_of(args), weights=args.weights, device=args.device, methods=methods,
                    layer=parse_layers(args.layer), target=class_spec(args.target), orders=args.orders,
                    depth=args.depth, threshold=args.threshold, seed=args.seed, batch_size=args.batch_size,
                    progress=progress(args))
    for _, why in result.failed:
        print(f"error: {why}", file=sys.stderr)
    print(f"{result.model}, {len(result.images)} image(s), verdict at the top {result.depth} layers random")
    print(result.table())
    print(result.summary())
    written = result.save(args.out)
    print(f"rows: {written['sanity']}\nsummary: {written['summary']}\nreport: {written['report']}")
    return flag_status(args, result.flagged, result.failed)


def flag_status(args, flagged, failed) -> int:
    """3 when something is flagged and ``--fail-on-flag`` asks for it, else 1 when an image failed, else 0."""
    if flagged and args.fail_on_flag:
        return FLAGGED
    return FAILED if failed else OK


def cmd_audit(args) -> int:
    from gradcam.apps.analyses.audit import audit_folder
    from gradcam.engine.layers import parse_layers

    [method] = check_methods([args.method])
    check_ray(args)
    check_inputs([args.folder])
    files = None
    if args.files is not None:
        try:
            files = [line.strip() for line in args.files.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise OptionError(f"--files {args.files}: cannot read it ({exc.strerror})") from None
    if args.tolerance < 0:
        raise OptionError(f"--tolerance must be >= 0 pixels, got {args.tolerance}")
    result = audit_folder(args.folder, args.annotations, model=model_of(args), weights=args.weights, device=args.device,
                          method=method, layer=parse_layers(args.layer), batch_size=args.batch_size,
                          threshold=args.threshold, split=None if files is not None else args.split, files=files,
                          masks=args.masks, tolerance=args.tolerance, engine=args.engine, address=args.address,
                          progress=progress(args))
    for _, why in result.failed:
        print(f"error: {why}", file=sys.stderr)
    print(f"{len(result.names)} image(s) ({result.split}): {result.summary()}")
    flagged = result.flagged
    if flagged:
        print(f"right for the wrong reasons ({len(flagged)}): {', '.join(flagged[:10])}"
              + (", ..." if len(flagged) > 10 else ""))
    written = result.save(args.out)
    print(f"rows: {written['audit']}\nsummary: {written['summary']}\nreport: {written['report']}")
    return flag_status(args, flagged and result.suspicious, result.failed)


def cmd_sweep(args) -> int:
    from gradcam.apps.analyses.sweep import sweeps
    from gradcam.engine.targets import class_spec

    if args.layers and args.every_stage:
        raise OptionError("give --layers or --every-stage, not both")
    check_inputs(args.images)
    [method] = check_methods([args.method])
    for image, result in zip(args.images, sweeps(args.images, model=model_of(args), weights=args.weights,
                                                 device=args.device, layers=args.layers, method=method,
                                                 target=class_spec(args.target))):
        written = result.save(args.out)
        print(f"{image}: {result.label} ({result.probability:.1%})")
        width = max(len(m.name) for m in result.layers)
        for m in result.layers:
            size = f"{m.size[0]}×{m.size[1]}"
            print(f"  {m.name:<{width}}  {size:>9}  -> {written[m.name]}")
        print(f"  figure: {written['figure']}")
    return OK


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from gradcam.web import KEEP_ALIVE, create_app
    except ImportError as exc:
        raise OptionError(f"the web app needs its extra: pip install 'gradcam[web]' ({exc})") from None
    app = create_app(args.models or [DEFAULT_MODEL], weights=args.weights and str(args.weights), device=args.device)
    print(f"gradcam: serving on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_keep_alive=KEEP_ALIVE)
    return OK


def cmd_train(args) -> int:
    from tqdm.auto import tqdm

    from gradcam.apps.synthetic.train import train

    metrics = train(args.data, args.out, arch=args.arch, epochs=args.epochs, image_size=args.image_size,
                    val_split=args.val_split, freeze_backbone=args.freeze, batch_size=args.batch_size,
                    seed=args.seed, device=args.device, progress=progress(args),
                    log=(lambda m: None) if args.quiet else (lambda m: tqdm.write(m)))
    print(f"saved {args.out} (train accuracy {metrics['train_accuracy']:.3f}, "
          f"val accuracy {metrics['val_accuracy']:.3f}); explain with: gradcam explain IMAGE --checkpoint {args.out}")
    return OK


def cmd_make_shapes(args) -> int:
    from gradcam.apps.synthetic.shapes import make_shapes

    root = make_shapes(args.out, n=args.n, size=args.size, seed=args.seed, shortcut=args.shortcut)
    print(f"{args.n} images in {root}/circle and {root}/square, boxes in {root}/boxes.json")
    return OK
