"""The Ray Data engine: a whole data set explained on one machine's cores or on a cluster, with the same rows
and pictures as the local folder job (:mod:`.local`), because every batch goes through the same
:class:`~gradcam.apps.pipeline.step.ExplainStep`.

The driver lists the images (a folder, a glob, files, a CSV or Parquet list of paths, any URI pyarrow's
filesystems open) and drops those a resumed job already did; Ray Data reads and decodes them in parallel tasks
(the preprocessing there too), explains them on a pool of actors (one step per actor, the model loaded once;
one GPU each where the cluster has GPUs) that draw and write the pictures atomically, and streams each batch's
rows back to the driver, which appends them to ``manifest.jsonl`` as they come (a killed job keeps every
finished row) and writes ``manifest.csv`` and ``manifest.parquet`` at the end.

Ray is an optional extra (``pip install 'gradcam[ray]'``): it is imported only when this engine runs."""

from __future__ import annotations

import inspect
import json
import logging
import os
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from gradcam.apps.device import batch_size_for
from gradcam.apps.explainer import DEFAULT_MODEL
from gradcam.apps.pipeline.decode import decode, filesystem, is_uri
from gradcam.apps.pipeline.local import WRITERS, FolderSummary, find_images, input_roots
from gradcam.apps.pipeline.manifest import FIELDS, Manifest, done_paths, plain_settings, read_manifest
from gradcam.apps.pipeline.step import ExplainStep
from gradcam.errors import GradCAMError, OptionError
from gradcam.io.images import IMAGE_SUFFIXES
from gradcam.render.files import FolderSink, atomic_write, mirrored_names

INSTALL = "pip install 'gradcam[ray]'"
LISTS = (".csv", ".parquet", ".pq")  # a file of paths, one per row (the column "path", else the first)
EMBEDDED_OBJECT_STORE = 512 * 1024**2  # bytes: enough for a few batches in flight; Ray spills beyond it
DECODE_CPUS = 0.5  # not the actors' (1): Ray Data then keeps decoding in tasks of its own, beside the model
CALLS_PER_ACTOR = 2  # batches in an actor at once: one in the model while the other's pictures are drawn
JSON_COLUMNS = ("top5", "files")  # nested values, as JSON text in the Parquet manifest (as in the CSV)


def import_ray():
    """Ray and Ray Data, or an OptionError that says what to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise OptionError(f"--engine ray needs Ray Data: {INSTALL} ({exc})") from None
    return ray


# ---------------------------------------------------------------------------------------------- the inputs

def list_inputs(inputs: Sequence[str | os.PathLike]) -> tuple[list[str], dict[str, str]]:
    """The images of ``inputs`` (files, folders, glob patterns, ``.csv``/``.parquet`` lists of paths, and any
    of them as a URI pyarrow opens, e.g. ``s3://bucket/val/``), each once, and each one's output name (its
    path under the inputs' common folder, as the local job names it)."""
    files, roots = [], []
    for item in map(str, inputs):
        if item.lower().endswith(LISTS):
            listed = read_list(item)
            files += listed
            roots += [_parent(p) for p in listed]
        elif is_uri(item):
            files += _list_uri(item)
            roots.append(_uri_root(item))
        else:
            files += find_images([item])
            roots += input_roots([item])
    files = list(dict.fromkeys(files))
    if not any(is_uri(f) for f in files + roots):
        return files, mirrored_names(files, roots)
    base = posixpath.commonpath([_bare(r) for r in roots]) if roots else ""
    return files, {f: posixpath.relpath(_bare(f), base) if base else _bare(f) for f in files}


def read_list(item: str) -> list[str]:
    """The paths a CSV or Parquet file lists (its "path" column, else its first); relative ones are taken
    from the list's folder."""
    import pyarrow.csv
    import pyarrow.parquet

    fs, path = filesystem(item)
    with fs.open_input_file(path) as f:
        table = pyarrow.csv.read_csv(f) if item.lower().endswith(".csv") else pyarrow.parquet.read_table(f)
    if table.num_columns == 0:
        raise OptionError(f"{item}: lists no paths (expected a column 'path')")
    column = table.column("path" if "path" in table.column_names else 0).to_pylist()
    folder = _parent(item)
    return [p if is_uri(p) or os.path.isabs(p) else _join(folder, p) for p in map(str, column) if p]


def _list_uri(item: str) -> list[str]:
    """A URI's image files: one file, a folder's (recursively), or a glob pattern's in its last part."""
    from fnmatch import fnmatch

    from pyarrow import fs as pafs

    scheme = item.split("://", 1)[0] + "://"
    pattern = None
    if any(c in item.rsplit("/", 1)[-1] for c in "*?["):
        item, pattern = item.rsplit("/", 1)
    filesystem, path = pafs.FileSystem.from_uri(item)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.File and pattern is None:
        return [item]
    if info.type != pafs.FileType.Directory:
        raise OptionError(f"{item}: no such file or folder")
    found = filesystem.get_file_info(pafs.FileSelector(path, recursive=pattern is None))
    bare = item.rstrip("/")
    prefix = bare[: len(bare) - len(path.rstrip("/"))] if bare.endswith(path.rstrip("/")) else scheme

    def wanted(name: str) -> bool:
        return fnmatch(name, pattern) if pattern else Path(name).suffix.lower() in IMAGE_SUFFIXES

    return sorted(prefix + f.path for f in found if f.type == pafs.FileType.File and wanted(f.base_name))


def _uri_root(item: str) -> str:
    last = item.rsplit("/", 1)
    return last[0] if any(c in last[-1] for c in "*?[") or Path(last[-1]).suffix else item.rstrip("/")


def _bare(item: str) -> str:
    """A path or URI as a POSIX path without its scheme (for naming only)."""
    text = str(item).split("://", 1)[-1] if is_uri(item) else os.path.abspath(item).replace(os.sep, "/")
    return "/" + text.lstrip("/")


def _parent(item: str) -> str:
    return item.rsplit("/", 1)[0] if is_uri(item) else os.path.dirname(os.path.abspath(item))


def _join(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}" if is_uri(folder) else os.path.join(folder, name)


# ---------------------------------------------------------------------------------------------- the tasks

class _ShownSink(FolderSink):
    """The job's folder, written by its absolute path (a worker's working folder is not the driver's), with
    the files named in the rows as the user gave the folder (so the rows are the local job's)."""

    def __init__(self, directory: str, shown: str):
        super().__init__(directory)
        self.shown = shown

    def put(self, name: str, item) -> Path:
        super().put(name, item)
        return Path(self.shown) / name


def settle_actor(threads: int | None, cwd: str | None) -> None:
    """An actor's process made ready for its step: ``threads`` torch threads, and the driver's working folder
    ``cwd`` where this node has it (a relative model, weights or annotation path then means what it meant to
    the command; a cluster's worker otherwise starts where ``ray start`` ran)."""
    import torch

    if threads:
        torch.set_num_threads(max(1, min(int(threads), os.cpu_count() or 1)))
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)


class ExplainActor:
    """A Ray Data actor: the job's :class:`ExplainStep` built once (the model loaded once, on the actor's GPU
    where it has one), called on each batch of decoded images; the rows come back as an Arrow table."""

    def __init__(self, out: str, shown: str, settings: dict, threads: int | None = None, cwd: str | None = None,
                 writers: int = WRITERS):
        settle_actor(threads, cwd)
        self.step = ExplainStep(_ShownSink(out, shown), **settings)
        self.step.writers = max(1, min(writers, os.cpu_count() or 1))  # as the local job's writer threads
        self.step.settings  # the settings key (the weights' fingerprint) once, before batches come in threads

    def __call__(self, batch: dict):
        columns = self.step({"path": [str(p) for p in batch["path"]], "name": [str(n) for n in batch["name"]],
                             "image": images(batch), "x": batch["x"], "error": list(batch["error"])})
        return rows_table([dict(zip(columns, values)) for values in zip(*columns.values())])


def images(batch: dict) -> list[np.ndarray]:
    """A decoded batch's pictures, (H, W, 3) uint8 each (a 1×1 black one where the image could not be read)."""
    return [np.frombuffer(p, np.uint8).reshape(int(h), int(w), 3) if h else np.zeros((1, 1, 3), np.uint8)
            for p, h, w in zip(batch["pixels"], batch["height"], batch["width"])]


def rows_table(rows: list[dict]):
    """Manifest rows as an Arrow table with one fixed schema (nested values as JSON text)."""
    import pyarrow as pa

    columns = {key: [row.get(key) for row in rows] for key in FIELDS}
    for key in JSON_COLUMNS:
        columns[key] = [None if v is None else json.dumps(v, ensure_ascii=False) for v in columns[key]]
    return pa.Table.from_pydict(columns, schema=_schema())


def table_rows(table) -> list[dict]:
    """An Arrow table of :func:`rows_table` back as the manifest's rows (an error row has only its own keys,
    as the local job writes it)."""
    rows = []
    for row in table.to_pylist():
        for key in JSON_COLUMNS:
            row[key] = None if row[key] is None else json.loads(row[key])
        if row["status"] == "error" and row["layer"] is None:
            row = {k: row[k] for k in ("path", "status", "error", "model", "method", "settings")}
        rows.append(row)
    return rows


def _schema():
    import pyarrow as pa

    types = {"rank": pa.int64(), "class_index": pa.int64(), "probability": pa.float64()}
    return pa.schema([(key, types.get(key, pa.string())) for key in FIELDS])


# ---------------------------------------------------------------------------------------------- the job

def explain_ray(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    address: str | None = None,
    actors: int | None = None,
    threads: int | None = None,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    model: Any = DEFAULT_MODEL,
    method: str | Sequence[str] = "gradcam",
    weights: Any = None,
    device: Any = None,
    batch_size: int | None = None,
    save: Sequence[str] = ("overlay",),
    save_maps: bool = False,
    format: str = "png",
    resume: bool = False,
    progress_bar: bool | None = None,
    on_error: Callable[[str, str], None] | None = None,
    **options: Any,
) -> FolderSummary:
    """Explain every image of ``inputs`` on Ray Data into ``out`` (a folder every worker sees): the pictures of
    the local folder job, and its ``manifest.jsonl`` and ``manifest.csv`` with the same rows, plus
    ``manifest.parquet``. ``options``: the step's (layer, target, top_k, normalize, colormap, alpha and a
    method's own).

    ``address``: a running cluster's (``ray start --head`` prints it; ``"auto"``: the one on this machine);
    without it Ray starts here, in this process, with ``num_cpus`` (default: all) and ``object_store_memory``
    bytes (default 512 MiB; Ray spills to disk beyond). When Ray is already initialised it is used as it is.
    ``actors``: models in the pool (default: one per GPU, else one per 4 CPUs), ``threads``: torch threads
    per actor (default: the CPUs shared among the actors), ``batch_size``: images per batch (default: 64 on
    GPU actors, else 16). ``resume``: skip the images already in
    ``out/manifest.jsonl`` with the same settings (model weights included), as the local job does."""
    ray = import_ray()
    if (batch_size is not None and batch_size < 1) or (actors is not None and actors < 1):
        raise OptionError(f"batch_size and actors must be >= 1, got {batch_size} and {actors}")
    settings = dict(model=model, method=method, weights=weights, device=device, save=save, save_maps=save_maps,
                    format=format, **options)
    step = ExplainStep(out, **settings)  # the settings checked and keyed here, before anything starts
    files, names = list_inputs(inputs)
    if not files:
        raise OptionError(f"no image files in {', '.join(map(str, inputs))} "
                          f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    out = Path(out)
    done_before = (done_paths(out / "manifest.jsonl", step.settings, step.methods, step.setting_values)
                   if resume else set())
    todo = [f for f in files if f not in done_before]
    summary = FolderSummary(total=len(files), skipped=len(files) - len(todo))
    book = Manifest(out, resume, plain_settings(step.setting_values))
    summary.manifest = book.jsonl
    started = bool(todo) and not ray.is_initialized()  # nothing left to do: no Ray either
    start = time.perf_counter()
    try:
        if started:
            start_ray(ray, address, num_cpus, object_store_memory, progress_bar)
        if todo:
            data = _plan(ray, todo, names, step, settings, out, actors, threads, batch_size, progress_bar)
            _collect(data, book, summary, on_error)
    except Exception as exc:
        raise user_error(exc) from None
    finally:
        book.close()
        if started:
            ray.shutdown()
    write_parquet(out)
    summary.seconds = time.perf_counter() - start
    return summary


def start_ray(ray, address, num_cpus, object_store_memory, progress_bar) -> None:
    """Join the cluster at ``address``, or start Ray here (``address="local"``: never a cluster that happens to
    run on this machine)."""
    quiet = progress_bar is False
    if quiet:
        logging.getLogger("ray").setLevel(logging.WARNING)
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        return
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING,
             object_store_memory=object_store_memory or EMBEDDED_OBJECT_STORE)


def _plan(ray, todo, names, step, settings, out, actors, threads, batch_size, progress_bar):
    """The data set: paths -> decode tasks -> the actors' steps (rows)."""
    import pyarrow as pa

    show_progress(ray, progress_bar)
    pool = actor_pool(ray, settings.get("device"), actors, threads)
    batch_size = batch_size or batch_size_for(pool.device)
    sources = [f if is_uri(f) else os.path.abspath(f) for f in todo]
    table = pa.table({"path": todo, "source": sources, "name": [names[f] for f in todo]})
    data = decoded(ray, table, step.bundle.preprocess, batch_size)
    actor_settings = {**settings, "device": pool.device}
    return data.map_batches(ExplainActor, fn_constructor_args=(str(out.resolve()), str(out), actor_settings,
                                                               pool.threads, os.getcwd(), pool.writers),
                            batch_size=batch_size, batch_format="numpy", **pool.options(ray, overlapping=True))


def show_progress(ray, progress_bar: bool | None) -> None:
    """Ray Data's progress bars and its plan's line, unless ``progress_bar`` is False."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress_bar is not False
    context.print_on_execution_start = progress_bar is not False


@dataclass
class Pool:
    """The actors' pool: how many, torch threads and CPUs each, whether each has a GPU, and the device the
    steps get (``cuda`` on a GPU, else the one asked for)."""

    size: int
    threads: int
    cpus: float
    gpus: int
    device: Any

    @property
    def writers(self) -> int:
        """Threads that draw each batch's pictures in an actor: on a GPU the model leaves the actor's CPU threads
        to the drawing (the part of an image's time a GPU does not shorten), on a CPU the model needs them."""
        return max(WRITERS, self.threads) if self.gpus else WRITERS

    def options(self, ray, overlapping: bool = False) -> dict:
        """``map_batches``'s resources for the pool; ``overlapping``: each actor runs :data:`CALLS_PER_ACTOR`
        calls at once, in threads (for a step that serialises its model half itself, as ``ExplainStep`` does),
        where this Ray Data has the options for it (2.60 has); else one call at a time."""
        strategy = ray.data.ActorPoolStrategy
        threaded = {"max_concurrent_calls_per_actor", "enable_true_multi_threading"}
        calls = ({"max_concurrent_calls_per_actor": CALLS_PER_ACTOR, "enable_true_multi_threading": True,
                  "max_tasks_in_flight_per_actor": CALLS_PER_ACTOR + 1}  # one batch waits: memory stays bounded
                 if overlapping and threaded <= set(inspect.signature(strategy).parameters) else {})
        return {"num_cpus": self.cpus, "num_gpus": 1 if self.gpus else 0, "compute": strategy(size=self.size, **calls)}


def actor_pool(ray, device: Any, actors: int | None, threads: int | None) -> Pool:
    """The pool on this cluster: one actor per GPU where there are GPUs (and the device is not the CPU),
    else one per 4 CPUs (or ``actors``); the CPUs shared among them, with room left for decoding."""
    resources = ray.cluster_resources()
    cpus = resources.get("CPU", 1)
    gpus = int(resources.get("GPU", 0)) if str(device or "cuda").startswith("cuda") else 0
    actors = actors or gpus or max(1, int(cpus) // 4)
    threads = threads or max(1, int(cpus) // actors)
    actor_cpus = min(1.0, max(0.1, (cpus - DECODE_CPUS) / actors))  # room left for decoding, even on 1 CPU
    return Pool(actors, threads, actor_cpus, gpus, "cuda" if gpus else device)


def decoded(ray, table, preprocess, batch_size: int):
    """The images of ``table`` (columns "path", "source", "name" and a step's own) read and decoded in Ray Data
    tasks (:func:`~.decode.decode`, no torch there), in blocks of ``batch_size`` rows or more."""
    rows = max(batch_size, -(-table.num_rows // 1000))  # at most ~1000 read blocks: decode tasks spread, few objects
    data = ray.data.from_arrow([table.slice(i, rows) for i in range(0, table.num_rows, rows)])
    return data.map_batches(decode, fn_kwargs={"preprocess": preprocess}, batch_size=batch_size,
                            batch_format="numpy", num_cpus=DECODE_CPUS)


def _collect(data, book: Manifest, summary: FolderSummary, on_error) -> None:
    """The rows as each batch's come back: appended to the manifest, each image counted once."""
    for table in data.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=1):
        rows = table_rows(table)
        book.append(rows)
        failed: dict[str, str] = {}
        for row in rows:
            if row["status"] == "error":
                failed.setdefault(row["path"], row["error"])
        for message in failed.values():
            summary.errors += [message][: max(0, 20 - len(summary.errors))]
            if on_error:
                on_error(message, "")
        summary.failed += len(failed)
        summary.done += len({row["path"] for row in rows} - set(failed))


def user_error(exc: Exception) -> Exception:
    """A usage error raised in a worker, as it was raised (not wrapped in Ray's errors)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, GradCAMError):
            return seen
        seen = seen.__cause__ or getattr(seen, "cause", None)
    return exc


def write_parquet(out: Path) -> Path:
    """``manifest.parquet`` from ``manifest.jsonl`` (the same rows, nested values as JSON text), atomically."""
    import pyarrow.parquet as pq

    table = rows_table(list(read_manifest(out / "manifest.jsonl")))
    return atomic_write(out / "manifest.parquet", lambda fp: pq.write_table(table, fp))

