"""One job: what the user gave (images, files, folders or globs; clips, volumes, signals; a task; one method
or ``all``) planned once — the model loaded, the kind of input and the methods that apply decided — then
run into a folder of pictures (and, for images, a manifest). The command line and the web app parse,
plan, run and print: the loops over inputs are here, not there."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from gradcam.apps.explainer import DEFAULT_MODEL
from gradcam.apps.media import explain_clip, explain_signal, explain_volume, media_kind
from gradcam.apps.model_cache import bundle_on_device
from gradcam.apps.pipeline.local import FolderSummary, explain_folder, find_images, input_roots
from gradcam.apps.tasks import TASKS, explain_task
from gradcam.engine.methods import applicable_methods, list_methods, method_options
from gradcam.errors import ImageError, OptionError, TargetError
from gradcam.models.bundle import ModelBundle
from gradcam.render.files import mirrored_names

MEDIA = {"clip": explain_clip, "volume": explain_volume, "signal": explain_signal}
ENGINES = ("local", "ray")  # where an image job runs: this process, or Ray Data (here or on a cluster)
TASK_OPTIONS = ("classes", "box", "min_score", "reference", "negative")  # what a task takes besides the class


@dataclass
class Job:
    """A planned job: ``kind`` is "images", "clip", "volume", "signal" or a task ("detection", …);
    ``methods`` those that run (``all``: every method that applies), ``skipped`` (method, why) the others."""

    inputs: list[str]
    kind: str
    bundle: ModelBundle
    methods: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    model: Any = DEFAULT_MODEL
    weights: Any = None
    device: Any = None
    options: dict = field(default_factory=dict)

    def run(self, out: str | Path, *, on_result: Callable[[str, list, list[Path]], None] | None = None,
            on_error: Callable[[str, str], None] | None = None, engine: str = "local", address: str | None = None,
            **run_options: Any) -> FolderSummary:
        """Explain every input into ``out``. ``on_result(path, results, files)`` after each explained input
        (each rank of an image), ``on_error(message, detail)`` for each that failed; the rest go on.
        ``engine``: "local" (this process, :mod:`.local`) or "ray" (Ray Data, :mod:`.ray_engine`: started here,
        or the cluster at ``address``; images only, the same rows and pictures, ``on_result`` not called).
        ``run_options``: how an image job runs (batch_size, workers, save, save_maps, manifest, resume,
        progress_bar; the ray engine's actors, threads, num_cpus, object_store_memory)."""
        check_engine(engine, address)
        if self.kind != "images" and engine != "local":
            raise OptionError(f"--engine {engine} explains images; {self.kind} inputs run on the local engine")
        if self.kind == "images":
            accepted = set().union(*(method_options(m) for m in self.methods))
            any_method = set().union(*(method_options(m) for m in list_methods()))
            options = {k: v for k, v in self.options.items()
                       if v is not None and (k in accepted or k not in any_method)}
            if engine == "ray":
                from gradcam.apps.pipeline.ray_engine import explain_ray

                run_options = {k: v for k, v in run_options.items() if k not in ("workers", "manifest")}
                return explain_ray(self.inputs, out, address=address, model=self.model, weights=self.weights,
                                   device=self.device, method=self.methods, on_error=on_error, **options,
                                   **run_options)
            return explain_folder(self.inputs, out, model=self.model, weights=self.weights, device=self.device,
                                  method=self.methods, on_result=on_result, on_error=on_error, **options,
                                  **run_options)
        return self._each(Path(out), on_result, on_error, run_options.get("format", "png"))

    def _each(self, out: Path, on_result, on_error, format: str) -> FolderSummary:
        """Clips, volumes, signals or a task's images, one at a time: the pictures and the map of each."""
        files = list(self.inputs) if self.kind in MEDIA else find_images(self.inputs)
        names = mirrored_names(files, input_roots(self.inputs)) if self.kind not in MEDIA else {}
        summary, start = FolderSummary(total=len(files)), time.perf_counter()
        option = {k: v for k, v in self.options.items() if k in _ITEM_OPTIONS[self.kind in MEDIA]}
        for item in files:
            try:
                if self.kind in MEDIA:
                    result = MEDIA[self.kind](item, model=self.bundle, method=self.methods[0], **option)
                    written = result.save(out, format=format)
                else:
                    result = explain_task(item, model=self.bundle, task=self.kind, method=self.methods[0], **option)
                    written = result.save(out, names[item], format=format)
            except (ImageError, TargetError) as exc:
                summary.failed += 1
                message = str(exc) if str(item) in str(exc) else f"{item}: {exc}"
                summary.errors.append(message)
                if on_error:
                    on_error(message, traceback.format_exc())
                continue
            summary.done += 1
            if on_result:
                on_result(str(item), [result], list(written.values()))
        summary.seconds = time.perf_counter() - start
        return summary


def check_engine(engine: str, address: str | None = None) -> None:
    """An engine of :data:`ENGINES`, and an ``address`` only for Ray's."""
    if engine not in ENGINES:
        raise OptionError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "local" and address:
        raise OptionError("--address is the Ray cluster's: give it with --engine ray")


_ITEM_OPTIONS = {True: ("layer", "target", "colormap", "alpha"),  # clips, volumes, signals
                 False: ("layer", "classes", "box", "min_score", "reference", "negative", "colormap", "alpha")}


def plan_job(inputs: Sequence[str], *, model: Any = DEFAULT_MODEL, weights: Any = None, device: Any = None,
             task: str = "classification", method: str = "gradcam", **options: Any) -> Job:
    """The job for ``inputs``: the model loaded once (on ``device``), the inputs' kind (images, or the
    clips, volumes or signals the model takes, or a task's images), and the methods (``"all"``: those that
    apply to this model, the others with the reason they do not). ``options`` go where they apply: a
    method's (smooth, max_channels, precision, …), the map's (layer, target, top_k, normalize, colormap,
    alpha) and a task's (classes, box, min_score, reference, negative)."""
    bundle, _ = bundle_on_device(model, weights, device)
    inputs = [str(item) for item in inputs]
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    if task != "classification":
        if task not in TASKS:
            raise OptionError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
        if method == "all" or given.get("top_k") or given.get("target") is not None:
            raise OptionError("--task takes --class (not --target), and neither --top-k nor --method all")
        return Job(inputs, task, bundle, [method], model=model, weights=weights, device=device, options=options)
    kind = media_kind(inputs, bundle) or "images"
    methods, skipped = [method], []
    if method == "all":  # every method that applies to this model; say why the others do not
        methods, skipped = applicable_methods(list_methods(), bundle, options.get("layer"), bundle.probe())
    options = {k: v for k, v in options.items() if k not in TASK_OPTIONS}
    return Job(inputs, kind, bundle, methods, skipped, model=model, weights=weights, device=device, options=options)
