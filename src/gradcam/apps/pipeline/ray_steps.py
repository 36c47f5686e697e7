"""Any per-batch step on Ray Data: an analysis's (evaluate's, audit's) step run on a pool of actors over a data
set's images, as :mod:`.ray_engine` runs the explain job's. The driver gives the inputs as columns ("path",
"name" and the step's own); Ray Data reads and decodes the images in tasks (:func:`~.decode.decode`), each
actor builds the step once (the model loaded once) and calls it on plain columns; each batch's rows come back
to the driver, in the order they finish, for it to gather.

Ray is an optional extra (``pip install 'gradcam[ray]'``): it is imported only when a step runs here."""

from __future__ import annotations

import os
import pickle
from typing import Any, Callable, Iterator, Mapping

from gradcam.apps.pipeline import ray_engine as engine


class StepActor:
    """A Ray Data actor: ``make(**settings)`` built once, called on each decoded batch ("path", "name", "image",
    "x", "error" and the step's own columns); its rows come back pickled, one per row of a binary column (a
    step's values are any Python objects: arrays, dicts)."""

    def __init__(self, make: Callable[..., Callable], settings: Mapping[str, Any], threads: int | None = None,
                 cwd: str | None = None):
        engine.settle_actor(threads, cwd)
        self.step = make(**settings)

    def __call__(self, batch: dict):
        import pyarrow as pa

        columns = {k: list(v) for k, v in batch.items() if k not in ("pixels", "height", "width", "x")}
        columns.update(path=[str(p) for p in batch["path"]], name=[str(n) for n in batch["name"]],
                       image=engine.images(batch), x=batch["x"], error=[str(e) for e in batch["error"]])
        found = self.step(columns)
        rows = [dict(zip(found, values)) for values in zip(*found.values())]
        return pa.table({"row": pa.array([pickle.dumps(row) for row in rows], pa.binary())})


def map_step(make: Callable[..., Callable], settings: Mapping[str, Any], inputs: Mapping[str, list], preprocess,
             *, address: str | None = None, actors: int | None = None, threads: int | None = None,
             num_cpus: int | None = None, object_store_memory: int | None = None, batch_size: int = 16,
             progress_bar: bool | None = None) -> Iterator[list[dict]]:
    """Each batch's rows of the step ``make(**settings)`` over ``inputs`` (columns: "path", a local path or a URI;
    "name"; any the step reads besides the images), the images preprocessed by ``preprocess``. Ray is joined at
    ``address``, or started here and stopped at the end (as :func:`~.ray_engine.explain_ray` does; an
    initialised Ray is used as it is); ``actors``, ``threads``: as there."""
    ray = engine.import_ray()
    started = not ray.is_initialized()
    try:
        if started:
            engine.start_ray(ray, address, num_cpus, object_store_memory, progress_bar)
        yield from _batches(ray, make, settings, inputs, preprocess, actors, threads, batch_size, progress_bar)
    except Exception as exc:
        raise engine.user_error(exc) from None
    finally:
        if started:
            ray.shutdown()


def _batches(ray, make, settings, inputs, preprocess, actors, threads, batch_size, progress_bar):
    import pyarrow as pa

    engine.show_progress(ray, progress_bar)
    pool = engine.actor_pool(ray, settings.get("device"), actors, threads)
    paths = [str(p) for p in inputs["path"]]
    sources = [p if engine.is_uri(p) else os.path.abspath(p) for p in paths]
    table = pa.table({**inputs, "path": paths, "source": sources})
    data = engine.decoded(ray, table, preprocess, batch_size)
    data = data.map_batches(StepActor, fn_constructor_args=(make, {**settings, "device": pool.device}, pool.threads,
                                                               os.getcwd()),
                            batch_size=batch_size, batch_format="numpy", **pool.options(ray))
    for table in data.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=1):
        yield [pickle.loads(row) for row in table.column("row").to_pylist()]
