"""What the arguments name, checked before anything heavy loads: the model (with a model file's
preprocessing options), the inputs, the methods, and whether to show progress."""

from __future__ import annotations

import glob
import os
from typing import Sequence

from gradcam.errors import OptionError, suggest

FILE_OPTIONS = ("input_size", "mean", "std", "channels_last")


def model_of(args):
    """``--model`` as given, or loaded here with a model file's preprocessing options when any is given."""
    options = {k: getattr(args, k) for k in FILE_OPTIONS if getattr(args, k, None) is not None}
    if not options:
        return args.model
    from gradcam.models.sources import find_source, load_model

    source, _ = find_source(str(args.model))
    if source.name not in ("onnx", "keras"):
        raise OptionError(f"--{next(iter(options)).replace('_', '-')} is for model files (.onnx, .keras), which do "
                          f"not say how their input is preprocessed; {args.model} does")
    return load_model(args.model, args.weights, device=args.device, **options)


def check_inputs(items: Sequence[str | os.PathLike], *, uris: bool = False) -> None:
    """Every input names a file, a folder or a glob pattern that matches something; else the usage error
    names it (before a model loads or a file is written). ``uris``: a URI (``s3://…``) is the engine's to read."""
    for item in map(str, items):
        if uris and "://" in item:
            continue
        if not os.path.exists(item) and not (glob.has_magic(item) and glob.glob(item, recursive=True)):
            raise OptionError(f"{item}: no such file or folder" if not glob.has_magic(item)
                              else f"{item}: the pattern matches no file")


def check_ray(args) -> None:
    """``--engine ray``: Ray Data is installed, else the one line that says what to install (before a model
    loads)."""
    if getattr(args, "engine", "local") == "ray":
        from gradcam.apps.pipeline.ray_engine import import_ray

        import_ray()


def check_methods(names: Sequence[str], *, allow_all: bool = False) -> list[str]:
    """The registered methods named (``all``: every one, where allowed); one line with the closest names else."""
    from gradcam.engine.methods import list_methods

    known = list_methods()
    if allow_all and list(names) == ["all"]:
        return known
    folded = {m.casefold(): m for m in known}
    for name in names:
        if name.casefold() not in folded:
            also = " or all" if allow_all else ""
            raise OptionError(f"unknown method {name!r}; choose from {', '.join(known)}{also}.{suggest(name, known)}")
    return [folded[n.casefold()] for n in names]


def progress(args) -> bool | None:
    """A progress bar on a terminal (None), none with --quiet."""
    return False if getattr(args, "quiet", False) else None
