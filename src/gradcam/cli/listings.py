"""The listing commands: what a model's layers are (``gradcam layers``), which models each source offers
(``gradcam models``) and which methods are registered (``gradcam methods``)."""

from __future__ import annotations

from gradcam.cli.inputs import model_of
from gradcam.errors import OptionError

OK = 0


def cmd_layers(args) -> int:
    """The architecture's layers: built without pretrained weights (nothing is downloaded), or with --weights."""
    from gradcam.engine.layers import auto_layer, auto_layer_reason, candidate_layers, stage_layers
    from gradcam.errors import LayerError
    from gradcam.models.sources import load_model

    model = model_of(args)
    bundle = model if not isinstance(model, str) else load_model(model, args.weights, pretrained=False,
                                                                 device=args.device)
    x = bundle.probe()
    try:
        chosen, why = auto_layer(bundle.module, x), auto_layer_reason(bundle.module, x)
    except LayerError as exc:
        chosen, why = None, str(exc)
    stages = set(stage_layers(bundle.module, x)) if args.stages else None
    shown = [info for info in candidate_layers(bundle.module, x)
             if (args.grep is None or args.grep.casefold() in info.name.casefold())
             and (stages is None or info.name in stages)]
    if not shown:
        raise OptionError(f"no layer of {args.model} matches" + (f" --grep {args.grep!r}" if args.grep else "")
                          + (" --stages" if args.stages else ""))
    width = max(40, *(len(info.name) + 1 for info in shown))
    print(f"{'layer':<{width}} {'output shape':<24} {'layout':<15} note")
    for info in shown:
        notes = ["<- automatic"] if info.name == chosen else []
        notes += ["pooling"] if info.pooling else []
        notes += ["not a map of the input"] if info.layout is None else []
        notes += [f"runs {info.calls}x"] if info.calls > 1 else []
        layout = info.layout.kind if info.layout is not None else "-"
        print(f"{info.name:<{width}} {str(info.shape[1:]):<24} {layout:<15} {' '.join(notes)}")
    print(f"automatic layer: {chosen} ({why})" if chosen else f"automatic layer: none: {why}")
    return OK


def cmd_models(args) -> int:
    """Each source with what it takes, its names by task, and which of them run offline on this machine."""
    import textwrap

    from gradcam.models.sources import list_sources

    sources = list_sources()
    for source in [s for s in sources if s.names] + [s for s in sources if not s.names]:  # names first
        print(f"{source.name}: {source.description}" if source.description else source.name)
        groups = source.groups() if source.groups else {"": list(source.names())} if source.names else {}
        for task, names in groups.items():
            here = [n for n in names if source.offline is not None and source.offline(n)]
            head = f"  {task} ({len(names)})" if task else f"  ({len(names)})"
            print(textwrap.fill(", ".join(names), width=110, initial_indent=head + ": ", subsequent_indent="    "))
            if source.offline is not None:
                others = "" if len(here) == len(names) else "the others " if here else "all "
                print(f"    offline here: {', '.join(here) if here else 'none'}"
                      + (f"; {others}with --weights PATH or NAME:random" if others else ""))
    print("NAME:random (any name above): seeded random weights, offline (to try a pipeline, not to trust its maps)")
    return OK


def cmd_methods(args) -> int:
    from gradcam.engine.methods import describe_methods, method_info

    for name, description in describe_methods().items():
        info = method_info(name)
        needs = [label for key, label in (("single_layer", "one layer"), ("needs_linear_head", "GAP+linear head"),
                                          ("class_free", "class-free"), ("uses_gradients", "gradients"))
                 if info[key]] + ([] if info["needs_layer"] else ["no layer"])
        print(f"{name:<18} {description}  [{', '.join(needs + [info['output_kind']])}]")
    return OK

