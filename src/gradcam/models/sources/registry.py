"""The registry of model sources: where a model named on the command line or in ``load_model`` comes from.

A source is one module with a loader ``load(spec, *, weights=None, pretrained=True, **options) ->
ModelBundle`` registered by ``@register_source(...)``, saying which specs it takes: a name prefix
(``timm/…``: the loader gets what follows the slash), file suffixes (``.onnx``), or a ``claims(spec)``
test (a checkpoint folder, ``file.py:Class``, a torchvision name). It may also say which names it lists
(``gradcam models``) and which local files its weights come from (the fingerprint ``--resume`` and the
model cache compare). Sources of other packages come in through the entry-point group
``gradcam.sources`` (each entry point a module that registers its sources on import), as pytest finds
its plugins; in Python, importing the module that registers a source is enough.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from gradcam.errors import ModelError, suggest
from gradcam.models.bundle import ModelBundle
from gradcam.plugins import load_plugins

ENTRY_POINTS = "gradcam.sources"


@dataclass(frozen=True)
class Source:
    """One registered way to get a model: what it takes, how it loads, what it lists and fingerprints."""

    name: str
    load: Callable[..., ModelBundle]
    prefix: str | None = None
    suffixes: tuple[str, ...] = ()
    claims: Callable[[str], bool] | None = None
    names: Callable[[], Sequence[str]] | None = None
    files: Callable[[str, "Path | None"], list[Path]] | None = None
    description: str = ""
    groups: Callable[[], dict[str, Sequence[str]]] | None = None  # its names by task, for `gradcam models`
    offline: Callable[[str], bool] | None = None  # whether a name's pretrained weights are on this machine

    def weights_files(self, spec: str, weights: str | os.PathLike | None = None) -> list[Path]:
        """The local files this model's weights come from (a weights file, a checkpoint's files)."""
        if self.files is not None:
            return list(self.files(spec, None if weights is None else Path(weights)))
        return [Path(weights)] if weights is not None else []


_SOURCES: dict[str, Source] = {}


def register_source(prefix: str | None = None, *, name: str | None = None, suffixes: Sequence[str] = (),
                    claims: Callable[[str], bool] | None = None, names: Callable[[], Sequence[str]] | None = None,
                    files: Callable | None = None, description: str = "",
                    groups: Callable[[], dict[str, Sequence[str]]] | None = None,
                    offline: Callable[[str], bool] | None = None):
    """Register ``load(spec, *, weights=None, pretrained=True, **options) -> ModelBundle`` as a model
    source taking specs ``prefix/…`` (the loader gets what follows the slash), files ending in one of
    ``suffixes``, or specs for which ``claims(spec)`` is true. ``names()``: the names it lists in
    ``gradcam models`` (``groups()``: the same by task); ``files(spec, weights)``: the local files its weights
    come from; ``offline(name)``: whether its pretrained weights are on this machine. Registering a
    name again replaces the source (a plugin may override a built-in one)."""
    if prefix is None and not suffixes and claims is None:
        raise ModelError("register_source needs a prefix, suffixes or a claims(spec) test")
    if prefix is not None and (not prefix or "/" in prefix):
        raise ModelError(f"a source prefix is one word before the slash ('timm' for 'timm/...'), got {prefix!r}")
    suffixes = tuple(s.lower() if s.startswith(".") else f".{s.lower()}" for s in suffixes)

    def decorator(load: Callable[..., ModelBundle]) -> Callable[..., ModelBundle]:
        key = name or prefix or (suffixes[0].lstrip(".") if suffixes else load.__module__.rpartition(".")[2])
        _SOURCES[key] = Source(key, load, prefix, suffixes, claims, names, files, description, groups, offline)
        return load

    return decorator


def list_sources() -> list[Source]:
    """Every registered source, the built-in ones first, then those of installed plugins."""
    _load_plugins()
    return list(_SOURCES.values())


def find_source(spec: str) -> tuple[Source, str]:
    """(the source that takes ``spec``, the spec as its loader receives it): a prefix first, then a file
    suffix, then the first source that claims it; the installed plugins are asked when no built-in
    source takes it. A ModelError with close names when none does."""
    spec = str(spec).strip()
    for plugins in (False, True):
        if plugins:
            _load_plugins()
        found = _match(spec)
        if found is not None:
            return found
    listed = [n for source in _SOURCES.values() if source.names for n in source.names()]
    prefixes = [f"{s.prefix}/<name>" for s in _SOURCES.values() if s.prefix]
    suffixes = [x for s in _SOURCES.values() for x in s.suffixes]
    raise ModelError(f"unknown model {spec!r}.{suggest(spec, listed)} Known: the names `gradcam models` lists, "
                     f"{', '.join(prefixes)}"
                     + (f", files ending in {', '.join(suffixes)}" if suffixes else "")
                     + ", a checkpoint folder or file.py:Class.")


def _match(spec: str) -> tuple[Source, str] | None:
    head, slash, rest = spec.partition("/")
    sources = list(_SOURCES.values())
    for source in sources:
        if slash and source.prefix == head:
            return source, rest
    suffix = Path(spec).suffix.lower()
    for source in sources:
        if suffix and suffix in source.suffixes:
            return source, spec
    for source in sources:
        if source.claims is not None and source.claims(spec):
            return source, spec
    return None


def load_model(name: str = "efficientnet_lite0", weights: str | os.PathLike | None = None, *,
               pretrained: bool = True, device=None, **options) -> ModelBundle:
    """Build model ``name`` with its pretrained weights, a local weights file (``weights=PATH``) or random
    weights (``pretrained=False``), in eval mode on ``device``, with its preprocessing and class names.

    ``name``: 'efficientnet_lite0' (bundled, no download), a torchvision classifier ('resnet50'), video
    classifier ('r3d_18'), detector ('fasterrcnn_resnet50_fpn_v2': COCO labels, images in [0, 1]) or
    segmenter ('deeplabv3_resnet50': VOC labels), 'timm/<name>', 'ultralytics/<local .pt or .yaml>' (YOLO,
    images in [0, 1] at 640 px), the folder of a model trained by ``gradcam train``, your own network's
    class or function as 'my_models.py:Net3D' / 'package.module:build' (called with no arguments; random
    weights unless ``weights=``), or whatever a registered source takes (:func:`register_source`). A local
    file whose classifier has N outputs gives an N-class model (labels None). Any of them as ``NAME:random``:
    seeded random weights (seed 0, the caller's random state untouched), to try a pipeline offline.
    """
    if weights is not None and not Path(weights).is_file():
        raise ModelError(f"weights file not found: {weights}")
    spec = str(name).strip()
    base, random = _random(spec)
    if random and weights is not None:
        raise ModelError(f"{spec}: random weights and a weights file ({weights}); give one of them")
    source, given = find_source(base)
    if random:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            bundle = source.load(given, weights=None, pretrained=False, **options)
        bundle = replace(bundle, name=spec) if isinstance(bundle, ModelBundle) else bundle
    else:
        bundle = source.load(given, weights=weights, pretrained=pretrained, **options)
    if not isinstance(bundle, ModelBundle):
        raise ModelError(f"model source {source.name!r} returned a {type(bundle).__name__}, not a ModelBundle")
    bundle.module.eval()
    if device is not None:
        bundle.module.to(device)
    return bundle if bundle.name else replace(bundle, name=spec)


def list_models() -> list[str]:
    """The names the sources list: the bundled 'efficientnet_lite0' first, then torchvision's classifiers,
    video classifiers, detectors and segmenters, then any a plugin lists. Prefixed sources take more
    (``timm/<name>``: see timm.list_models(); ``ultralytics/<file>``): :func:`list_sources` says which."""
    return [n for source in list_sources() if source.names for n in source.names()]


def weights_files(name: str, weights: str | os.PathLike | None = None) -> list[Path]:
    """The local files a model's weights come from, as its source says: the weights file, a checkpoint
    folder's files, a model file."""
    base, random = _random(str(name).strip())
    if random:
        return []
    try:
        source, given = find_source(base)
    except ModelError:
        return [Path(weights)] if weights is not None else []
    return source.weights_files(given, weights)


def weights_stamp(name: str, weights: str | os.PathLike | None = None) -> tuple:
    """(path, size, mtime) of each local weights file: changes when a file is rewritten (cache keys)."""
    stamps = []
    for path in weights_files(name, weights):
        try:
            st = path.stat()
            stamps.append((str(path.resolve()), st.st_size, st.st_mtime_ns))
        except OSError:
            stamps.append((str(path), None, None))
    return tuple(stamps)


RANDOM = ":random"


def _random(spec: str) -> tuple[str, bool]:
    """(the spec without ``:random``, whether it asked for random weights)."""
    return (spec[: -len(RANDOM)], True) if spec.endswith(RANDOM) and len(spec) > len(RANDOM) else (spec, False)


def _load_plugins() -> None:
    load_plugins(ENTRY_POINTS, ModelError)
