"""Micro-batching: one worker thread owns the scorer and scores queued images together."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import torch

from ..errors import InputError, StateError

# A scorer's call: normalised images (B, 3, H, W) -> (scores (B,), maps (B, H, W)).
ScoreFn = Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray]]
_STOP = object()


class MicroBatcher:
    """Scores images submitted from any thread in batches of up to ``max_batch``, on one worker thread.

    The worker takes the first queued image, then waits at most ``max_wait_s``
    for more (up to ``max_batch``), scores them in one call of ``score`` and
    resolves each image's future with its ``(score, map)``. The scorer is only
    ever called from the worker, so it needs no locking. ``on_batch(size)`` is
    called after each batch (for metrics).
    """

    def __init__(
        self,
        score: ScoreFn,
        max_batch: int = 16,
        max_wait_s: float = 0.005,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise InputError(f"max_batch must be >= 1 and max_wait_s >= 0, got {max_batch}, {max_wait_s}")
        self.score, self.max_batch, self.max_wait_s, self.on_batch = score, max_batch, max_wait_s, on_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> MicroBatcher:
        """Start the worker thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="indad-batcher", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float | None = 10.0) -> None:
        """Score what is queued, then stop the worker."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def pending(self) -> int:
        """Images queued and not yet taken by the worker (about: other threads may be adding)."""
        return self._queue.qsize()

    def submit(self, image: torch.Tensor) -> Future:
        """A future of ``(score, map)`` for one normalised image ``(3, H, W)``."""
        if self._thread is None:
            raise StateError("the batcher is not running: call start() first")
        future: Future = Future()
        self._queue.put((image, future))
        return future

    def _next_batch(self) -> tuple[list[tuple[torch.Tensor, Future]], bool]:
        """The next batch (blocking for its first image), and whether the worker was asked to stop."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._next_batch()
            batch = [(image, future) for image, future in batch if future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                with torch.inference_mode():
                    scores, maps = self.score(torch.stack([image for image, _ in batch]))
            except Exception as exc:  # the batch's requests get the error; the worker keeps serving
                for _, future in batch:
                    future.set_exception(exc)
                continue
            if self.on_batch is not None:  # counted before any of its requests can be answered
                self.on_batch(len(batch))
            for (_, future), score, amap in zip(batch, scores, maps, strict=True):
                future.set_result((float(score), np.asarray(amap)))
