"""Writer threads behind the model: a bounded queue keeps memory flat, and an error in a job is raised
again in the caller."""

from __future__ import annotations

import queue
import threading
from typing import Callable


class Writer:
    """Runs jobs on ``threads`` threads behind the model (in order when there is one); at most ``maxsize``
    wait, so memory stays flat. After a job fails no new job starts, and :meth:`put` or :meth:`close`
    raises its exception."""

    def __init__(self, maxsize: int, threads: int = 1):
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._error: BaseException | None = None
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(max(1, threads))]
        for thread in self._threads:
            thread.start()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is None:
                try:
                    job()
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                    self._error = self._error or exc

    def put(self, job: Callable[[], None]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(job)

    def close(self) -> None:
        self.stop()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Let the queued jobs finish (or be skipped after an error) and the threads end."""
        for thread in self._threads:
            if thread.is_alive():
                self._queue.put(None)
        for thread in self._threads:
            thread.join()
