"""A frame source inside ``indad serve MODEL --source SPEC``: ``POST /v1/trigger`` scores the next frame.

The stream's frames are scored by the service's own micro-batching worker (one model in memory, one thread
calling it), so uploads and frames share the model. Results go to ``OUT/results.jsonl`` and the sinks, as with
``indad stream``; ``GET /v1/stream`` gives the stream's counters.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import torch
from fastapi import FastAPI, Request

from ..export.model_file import ModelInfo
from ..inference.scorer import Scorer
from ..line.pipeline import Pictures, Pipeline, Publisher
from ..line.sources import FrameSource
from ..line.stream import StreamRunner, Triggers, trigger_id_of
from ..thresholds import Decision
from .batcher import MicroBatcher


class BatchedScorer:
    """A :class:`~indad.inference.scorer.Scorer` that scores through a running :class:`MicroBatcher`."""

    def __init__(self, batcher: MicroBatcher, scorer: Scorer) -> None:
        self.batcher, self.preprocess, self.thresholds = batcher, scorer.preprocess, scorer.thresholds
        self.header: dict[str, Any] = scorer.header
        self.model_info: ModelInfo = scorer.model_info

    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        results = [f.result() for f in [self.batcher.submit(image) for image in images]]
        return np.array([s for s, _ in results]), np.stack([m for _, m in results])


def attach_stream(
    app: FastAPI,
    scorer: Scorer,
    source: FrameSource,
    out: Path,
    every: int | None,
    decision: Decision,
    publisher: Publisher | None = None,
    pictures: Pictures = "defective",
) -> StreamRunner:
    """Score ``source`` while ``app`` (made by :func:`~indad.service.app.create_app`) runs, and add
    ``POST /v1/trigger`` (optional JSON ``{"id": ...}``; answers ``{"trigger_id": ...}``) and ``GET /v1/stream``.
    ``scorer`` is the one the app serves: frames are scored by its worker."""
    batched = BatchedScorer(app.state.batcher, scorer)
    pipeline = Pipeline(batched, batched.model_info, decision, pictures, publisher)
    triggers = Triggers()
    runner = StreamRunner(source, pipeline, out, every, triggers)
    stop = threading.Event()
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        async with inner(a) as state:  # the batcher runs from here on
            thread = threading.Thread(target=runner.run, args=(stop,), name="indad-stream", daemon=True)
            thread.start()
            try:
                yield state
            finally:
                stop.set()
                await anyio.to_thread.run_sync(thread.join, 30.0)

    app.router.lifespan_context = lifespan

    @app.post("/v1/trigger", status_code=202)
    async def trigger(request: Request) -> dict[str, str]:
        """Score the next frame of the stream; the trigger id (``{"id": ...}`` or a new one) travels with its
        result."""
        return {"trigger_id": triggers.fire(trigger_id_of(await request.body()))}

    @app.get("/v1/stream")
    async def stream() -> dict[str, Any]:
        """The stream's counters: frames scored, defective, failed, triggers, and the source's (frames,
        corrupt, stalls, ends, reconnections)."""
        return json.loads(json.dumps(asdict(runner.stats) | {"source": asdict(source.stats)}))

    return runner
