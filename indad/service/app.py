"""The FastAPI app of ``indad serve``: predict, model header, health and Prometheus metrics."""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
import torch
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel

from ..errors import IndadError
from ..inference.folder import PNG_LEVEL, Scorer
from ..inference.visualize import heatmap_image, map_to_original
from ..regions import find_regions
from ..thresholds import Decision
from ..version import __version__
from .batcher import MicroBatcher
from .metrics import Metrics
from .uploads import RequestError, decode_upload, read_body, read_uploads

ROUTES = ("/v1/predict", "/v1/model", "/healthz", "/metrics", "/docs", "/openapi.json")
OPEN_ROUTES = ("/healthz",)


@dataclass(frozen=True)
class ServiceOptions:
    """How the service batches, what it accepts and who may call it.

    Attributes
    ----------
    max_batch, max_wait_ms:
        Micro-batching: up to ``max_batch`` queued images per scorer call, waiting at most ``max_wait_ms`` for them.
    max_body_bytes:
        Largest request body accepted (413 above it).
    max_pixels:
        Largest image accepted, in pixels (413 above it; checked before decoding).
    max_images:
        Most images in one request.
    decision:
        How an image is judged, and the smallest defect region reported (:class:`~indad.thresholds.Decision`).
    token:
        Bearer token required on every route but ``/healthz``; None: no authentication.
    decode_threads:
        Threads decoding uploads and drawing results (the scorer has its own).
    max_queue:
        Most images waiting to be scored; a request that would queue more gets 503 (busy: try again).
    """

    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_body_bytes: int = 64 * 2**20
    max_pixels: int = 50_000_000
    max_images: int = 64
    decision: Decision = field(default_factory=Decision)
    token: str | None = None
    decode_threads: int = 2
    max_queue: int = 256


class RegionOut(BaseModel):
    """A defect region in original-image pixels (see :class:`indad.regions.Region`)."""

    area: int
    area_share: float
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    peak: float
    mean: float


class ImageResult(BaseModel):
    """One image's result. Without thresholds in the model: no normalised score, decision or regions."""

    name: str
    width: int
    height: int
    score: float
    normalized_score: float | None = None
    decision: str | None = None
    threshold: float | None = None
    regions: list[RegionOut] | None = None
    heatmap_png: str | None = None
    id: str | None = None
    model_version: str | None = None


class PredictResponse(BaseModel):
    """The results of a request's images, in upload order."""

    results: list[ImageResult]


class ErrorResponse(BaseModel):
    """What went wrong: a short kind (e.g. ``not_an_image``) and a message naming the upload or limit."""

    error: str
    detail: str


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "empty upload, no images, bad multipart"),
        (401, "missing or wrong bearer token"),
        (413, "body or image too large"),
        (415, "not an image"),
        (422, "truncated or corrupt image"),
        (503, "busy: too many images waiting (retry later)"),
    )
}


def model_summary(scorer: Scorer) -> dict[str, Any]:
    """The model's header without its state: method, hyperparameters, backbone, preprocessing, thresholds."""
    header = getattr(scorer, "header", None)
    if header is None:
        header = scorer.model.metadata()  # type: ignore[attr-defined]
    return {k: v for k, v in header.items() if k != "state"} | {"server_version": __version__}


def describe(
    name: str,
    original: Image.Image,
    score: float,
    amap: np.ndarray,
    scorer: Scorer,
    decision: Decision,
    heatmap: bool,
) -> dict[str, Any]:
    """One image's result (:class:`ImageResult`); regions and heatmap from the map at the original size."""
    t = scorer.thresholds
    result: dict[str, Any] = {"name": name, "width": original.width, "height": original.height, "score": score}
    full = map_to_original(amap, scorer.preprocess, original.size)
    if t is not None:
        regions = find_regions(full, t.pixel, decision.min_area)
        result |= {
            "normalized_score": score / t.image,
            "decision": decision.label(score, regions, t),
            "threshold": t.image,
            "regions": [r.to_dict() for r in regions],
        }
    if heatmap:
        buffer = io.BytesIO()
        heat = heatmap_image(full, 2.0 * t.pixel if t is not None else float(full.max()))
        heat.save(buffer, format="PNG", compress_level=PNG_LEVEL)
        result["heatmap_png"] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return result


def _authorized(request: Request, token: str | None) -> bool:
    """Whether the request may proceed: no token set, an open route, or the right bearer token."""
    if token is None or request.url.path in OPEN_ROUTES:
        return True
    given = request.headers.get("authorization", "")
    return secrets.compare_digest(given.encode(), f"Bearer {token}".encode())


def error_response(metrics: Metrics, status: int, kind: str, detail: str) -> JSONResponse:
    """An :class:`ErrorResponse`, counted."""
    metrics.errors.labels(kind).inc()
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)


def create_app(scorer: Scorer, options: ServiceOptions | None = None) -> FastAPI:
    """The service for ``scorer`` (loaded once): its scorer runs on one micro-batching worker thread."""
    options = options or ServiceOptions()
    metrics = Metrics()
    batcher = MicroBatcher(scorer, options.max_batch, options.max_wait_ms / 1000.0, metrics.record_batch)
    limiter = anyio.CapacityLimiter(options.decode_threads)
    summary = model_summary(scorer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(batcher.close)

    app = FastAPI(
        title="indad scoring service",
        version=__version__,
        description="Anomaly scores, decisions, defect regions and heatmaps of images, from one indad model.",
        lifespan=lifespan,
    )
    app.state.batcher, app.state.metrics, app.state.options = batcher, metrics, options

    @app.middleware("http")
    async def count_and_guard(request: Request, call_next):
        route = request.url.path if request.url.path in ROUTES else "other"
        start = time.perf_counter()
        if not _authorized(request, options.token):
            response = error_response(metrics, 401, "unauthorized", "missing or wrong bearer token")
        else:
            response = await call_next(request)
        metrics.latency.labels(route).observe(time.perf_counter() - start)
        metrics.requests.labels(route, str(response.status_code)).inc()
        return response

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error_response(metrics, exc.status, exc.kind, str(exc))

    @app.exception_handler(IndadError)
    async def indad_error(request: Request, exc: IndadError) -> JSONResponse:
        return error_response(metrics, 422, type(exc).__name__, str(exc))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(metrics, 500, "internal", f"{type(exc).__name__}: {exc}")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: ``{"status": "ok"}`` (no token needed)."""
        return {"status": "ok"}

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        """The model's header: method, hyperparameters, backbone and its fingerprint, preprocessing, thresholds,
        the indad version that fitted it (and the server's)."""
        return summary

    @app.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics: requests, latency histogram, images scored, errors, batch sizes."""
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS, openapi_extra=PREDICT_BODY)
    async def predict(request: Request, heatmap: bool = False) -> dict[str, Any]:
        """Score one or several images: multipart file parts (any field names), or one image as the raw body
        (``?name=`` names it). Each image gets its score, normalised score (score / threshold), decision and defect
        regions (original-image pixels); ``?heatmap=true`` adds its heatmap as a base64 PNG. Any unusable upload
        refuses the whole request with an error naming it."""
        body = await read_body(request, options.max_body_bytes)
        uploads = await read_uploads(request, body, options.max_images)
        if len(uploads) > options.max_images:
            raise RequestError(
                413, "too_many_images", f"{len(uploads)} images exceed the limit of {options.max_images}"
            )

        def decode_all() -> tuple[list[Image.Image], list[torch.Tensor]]:
            images = [decode_upload(data, name, options.max_pixels) for name, data in uploads]
            return images, [scorer.preprocess.image(im) for im in images]

        if batcher.pending() + len(uploads) > options.max_queue:
            raise RequestError(503, "busy", f"{batcher.pending()} images are waiting to be scored: try again")
        originals, tensors = await anyio.to_thread.run_sync(decode_all, limiter=limiter)
        scored = await asyncio.gather(*(asyncio.wrap_future(batcher.submit(t)) for t in tensors))

        def describe_all() -> list[dict[str, Any]]:
            return [
                describe(name, im, score, amap, scorer, options.decision, heatmap)
                for (name, _), im, (score, amap) in zip(uploads, originals, scored, strict=True)
            ]

        results = await anyio.to_thread.run_sync(describe_all, limiter=limiter)
        for hook in getattr(app.state, "result_hooks", ()):  # the record and drift (indad.service.feedback)
            await anyio.to_thread.run_sync(hook, uploads, originals, results)
        return {"results": results}

    return app
