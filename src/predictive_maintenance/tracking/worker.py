"""One background thread owning every MLflow call of a ``kedro run``.

``import mlflow`` and a new sqlite store's migrations cost seconds: done on this thread, they
overlap the pipeline instead of delaying it. Work runs in submission order; :meth:`Worker.drain`
waits, bounded, for what was submitted.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class Worker:
    """A daemon thread running submitted callables in order (their errors are theirs to handle:
    one that raises is dropped, the thread goes on)."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[], None]) -> None:
        self._queue.put(work)

    def drain(self, timeout: float) -> bool:
        """Waits for everything submitted so far; ``False`` when ``timeout`` passed first."""
        done = threading.Event()
        self._queue.put(done.set)
        return done.wait(timeout)

    def stop(self) -> None:
        """Ends the thread after the work already submitted."""
        self._queue.put(None)

    @property
    def on_worker_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _loop(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            try:
                work()
            except Exception:  # submitted work guards itself
                continue
