"""A writer thread behind the model: jobs run in order, a bounded queue keeps memory flat, and an error in a
job is raised again in the caller."""

from __future__ import annotations

import queue
import threading
from typing import Callable


class Writer:
    """Runs jobs in order on one thread behind the model; at most ``maxsize`` wait, so memory stays flat.
    An exception in a job is raised again by :meth:`close`."""

    def __init__(self, maxsize: int):
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is None:
                try:
                    job()
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                    self._error = exc

    def put(self, job: Callable[[], None]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(job)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
