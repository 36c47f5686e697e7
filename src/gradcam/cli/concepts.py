"""``gradcam concepts``: parse, run, print. The loop over images is :func:`gradcam.apps.concepts.save_concepts`."""

from __future__ import annotations

import sys

from gradcam.cli.inputs import check_inputs, model_of
from gradcam.errors import OptionError


def cmd_concepts(args) -> int:
    """One line per image (each concept's first class and share, the picture), then the table's path. Exit
    status as explain's: 1 when an image failed (one line each; the others are done), else 0."""
    from gradcam.apps.concepts import save_concepts
    from gradcam.apps.pipeline.local import find_images
    from gradcam.engine.layers import parse_layers

    check_inputs(args.images)
    layer = parse_layers(args.layer)
    if isinstance(layer, list):
        raise OptionError(f"--layer: concepts factorise one layer, got {len(layer)} ({args.layer})")
    files = find_images(args.images)
    if not files:
        raise OptionError(f"{', '.join(map(str, args.images))}: no image files")

    def on_result(found, path) -> None:
        named = [f"{classes[0][0] if classes else f'concept {i}'} {share:.0%}"
                 for i, (share, classes) in enumerate(zip(found.shares, found.classes))]
        print(f"{found.name}: {', '.join(named)} -> {path}")

    run = save_concepts(files, args.out, model=model_of(args), weights=args.weights, device=args.device, layer=layer,
                        concepts=args.concepts, top_classes=args.top_classes, format=args.format,
                        on_result=on_result, on_error=lambda message: print(f"error: {message}", file=sys.stderr))
    if run.done and not run.head:
        print(f"note: no classifier head takes layer {run.layer}'s channels, so the concepts have no classes "
              "(the layer that feeds the head names them: the automatic one, for most classifiers)", file=sys.stderr)
    if run.failed:
        print(f"{len(files)} images: {run.done} done, {len(run.failed)} failed", file=sys.stderr)
    if run.done:
        print(f"rows: {run.written['concepts.csv']} ({args.concepts} concepts per image at layer {run.layer})")
    return 1 if run.failed else 0
