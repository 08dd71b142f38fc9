"""The FastAPI app of ``indad serve``: predict, model header, health and Prometheus metrics."""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
import torch
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from ..errors import IndadError
from ..inference.folder import PNG_LEVEL
from ..inference.scorer import Scorer
from ..inference.visualize import heatmap_image, heatmap_vmax
from ..line.pipeline import Input, Publisher, judge
from ..line.result import LineResult
from ..thresholds import Decision
from ..version import __version__
from .admission import Admission, Holdings
from .batcher import MicroBatcher
from .metrics import REFUSALS, Metrics
from .uploads import RequestError, decode_upload, probe_upload, read_body, read_uploads

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
        Most images admitted and not yet answered; a request that would pass it gets 503 (busy: try again).
    max_request_pixels:
        Most pixels of all the images of one request (413 above it; checked from the headers before decoding).
    max_queue_pixels, max_queue_bytes:
        Most pixels of the images admitted, and bytes of request bodies held, at once (503 busy past either).
    body_timeout_s:
        A request's body must have arrived this many seconds after its headers (408 otherwise); None: no limit.
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
    max_request_pixels: int = 100_000_000
    max_queue_pixels: int = 400_000_000
    max_queue_bytes: int = 512 * 2**20
    body_timeout_s: float | None = 60.0


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
    model: str | None = None
    model_version: str | None = None
    trigger_id: str | None = None


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
        (400, "empty upload, no images, bad multipart, bad query parameter"),
        (401, "missing or wrong bearer token"),
        (408, "the body did not arrive in time"),
        (413, "body, image or request too large, too many images"),
        (415, "not an image"),
        (422, "truncated or corrupt image"),
        (503, "busy or overloaded: too many images, pixels or connections at once (retry later)"),
    )
}


def model_summary(scorer: Scorer) -> dict[str, Any]:
    """The model's header without its state: method, hyperparameters, backbone, preprocessing, thresholds."""
    return {k: v for k, v in scorer.header.items() if k != "state"} | {"server_version": __version__}


def describe(
    name: str,
    original: Image.Image,
    score: float,
    amap: np.ndarray,
    scorer: Scorer,
    decision: Decision,
    heatmap: bool,
    trigger_id: str | None = None,
) -> tuple[dict[str, Any], LineResult]:
    """One image's result (:class:`ImageResult`, and as a :class:`~indad.line.result.LineResult`) from the result
    pipeline; regions and heatmap from the map at the original size."""
    scored = judge(Input(name, original, trigger_id=trigger_id), score, amap, scorer, scorer.model_info, decision)
    r, t = scored.result, scorer.thresholds
    result: dict[str, Any] = {"name": name, "width": r.width, "height": r.height, "score": score}
    result |= {"id": r.id, "model": r.model, "model_version": r.model_version, "trigger_id": trigger_id}
    if t is not None:
        result |= {"normalized_score": r.normalized_score, "decision": r.decision, "threshold": r.threshold}
        result["regions"] = r.regions
    if heatmap and scored.full is not None:
        buffer = io.BytesIO()
        heat = heatmap_image(scored.full, heatmap_vmax(scored.full, t))
        heat.save(buffer, format="PNG", compress_level=PNG_LEVEL)
        result["heatmap_png"] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return result, r


def _authorized(request: Request, token: str | None) -> bool:
    """Whether the request may proceed: no token set, an open route, or the right bearer token."""
    if token is None or request.url.path in OPEN_ROUTES:
        return True
    given = request.headers.get("authorization", "")
    return secrets.compare_digest(given.encode(), f"Bearer {token}".encode())


def error_response(metrics: Metrics, status: int, kind: str, detail: str) -> JSONResponse:
    """An :class:`ErrorResponse`, counted (a refusal for load also by its reason)."""
    metrics.errors.labels(kind).inc()
    if kind in REFUSALS:
        metrics.refuse(kind)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {"Connection": "close"} if status == 408 else None
    return JSONResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)


@dataclass
class Gate:
    """What admits a request's images, shared by every model a service serves: one queue, one set of limits."""

    options: ServiceOptions
    metrics: Metrics
    admission: Admission
    limiter: anyio.CapacityLimiter
    body_limit: int
    image_limit: int
    pixel_limit: int

    @classmethod
    def build(cls, options: ServiceOptions, metrics: Metrics) -> Gate:
        """The gate of a service with ``options``; the waiting images are ``metrics``' gauge."""
        admission = Admission(
            {"images": options.max_queue, "pixels": options.max_queue_pixels, "bytes": options.max_queue_bytes}
        )
        metrics.waiting.set_function(lambda: admission.held["images"])
        # A request larger than what the queue may hold at once could never be admitted: too large (413), not busy.
        return cls(
            options,
            metrics,
            admission,
            anyio.CapacityLimiter(options.decode_threads),
            min(options.max_body_bytes, options.max_queue_bytes),
            min(options.max_images, options.max_queue),
            min(options.max_request_pixels, options.max_queue_pixels),
        )

    async def uploads(self, request: Request, holdings: Holdings) -> list[tuple[str, bytes]]:
        """A predict request's uploads, admitted: their bytes, images and pixels reserved in ``holdings``."""
        admission, options = self.admission, self.options
        if admission.full("images"):  # refused before its body is read
            raise RequestError(503, "busy", f"{admission.held['images']} images are waiting to be scored: try again")

        def reserve_bytes(n: int) -> None:
            holdings.add(admission.reserve(bytes=n))

        body = await read_body(request, self.body_limit, options.body_timeout_s, reserve_bytes)
        uploads = await read_uploads(request, body, self.image_limit)
        if len(uploads) > self.image_limit:
            raise RequestError(413, "too_many_images", f"{len(uploads)} images exceed the limit of {self.image_limit}")
        pixels = sum(w * h for w, h in (probe_upload(data, name, options.max_pixels) for name, data in uploads))
        if pixels > self.pixel_limit:
            raise RequestError(
                413,
                "too_many_request_pixels",
                f"the {len(uploads)} images hold {pixels} pixels, over the limit of {self.pixel_limit}",
            )
        holdings.add(admission.reserve(images=len(uploads), pixels=pixels))
        return uploads

    async def score(
        self,
        request: Request,
        scorer: Scorer,
        batcher: MicroBatcher,
        heatmap: bool,
        trigger_id: str | None,
        publisher: Publisher | None,
    ) -> dict[str, Any]:
        """The results (:class:`PredictResponse`) of a predict request scored by ``scorer`` on ``batcher``."""
        holdings = Holdings()
        try:
            uploads = await self.uploads(request, holdings)

            def decode_all() -> tuple[list[Image.Image], list[torch.Tensor]]:
                images = [decode_upload(data, name) for name, data in uploads]
                return images, [scorer.preprocess.image(im) for im in images]

            originals, tensors = await anyio.to_thread.run_sync(decode_all, limiter=self.limiter)
            if await request.is_disconnected():  # its client has gone: nothing to score for
                raise ClientDisconnect()
            scored = await asyncio.gather(*(asyncio.wrap_future(batcher.submit(t)) for t in tensors))

            def describe_all() -> list[dict[str, Any]]:
                described = [
                    describe(name, im, score, amap, scorer, self.options.decision, heatmap, trigger_id)
                    for (name, _), im, (score, amap) in zip(uploads, originals, scored, strict=True)
                ]
                if publisher is not None:
                    publisher.publish([r for _, r in described])
                return [d for d, _ in described]

            results = await anyio.to_thread.run_sync(describe_all, limiter=self.limiter)
            for hook in getattr(request.app.state, "result_hooks", ()):  # the record and drift (service/feedback.py)
                await anyio.to_thread.run_sync(hook, uploads, originals, results)
            return {"results": results}
        finally:
            holdings.release_all()


def install_guards(app: FastAPI, options: ServiceOptions, metrics: Metrics, route_of: Callable[[str], str]) -> None:
    """The token check, request counting and ``{error, detail}`` answers of every indad service on ``app``."""

    @app.middleware("http")
    async def count_and_guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        route = route_of(request.url.path)
        start = time.perf_counter()
        response: Response
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

    @app.exception_handler(RequestValidationError)
    async def invalid_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response(metrics, 400, "bad_parameter", problems)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        metrics.errors.labels("client_disconnect").inc()
        return Response(status_code=499)  # nobody reads it: the status is for the metrics and logs

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

    @app.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics: requests, latency histogram, images scored and waiting, errors, refusals, batches."""
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")


def create_app(scorer: Scorer, options: ServiceOptions | None = None, publisher: Publisher | None = None) -> FastAPI:
    """The service for ``scorer`` (loaded once): its scorer runs on one micro-batching worker thread; ``publisher``
    (the sinks' outbox) gets each result before its reply is sent."""
    options = options or ServiceOptions()
    metrics = Metrics()
    batcher = MicroBatcher(scorer, options.max_batch, options.max_wait_ms / 1000.0, metrics.record_batch)
    gate = Gate.build(options, metrics)
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
    app.state.admission = gate.admission
    install_guards(app, options, metrics, lambda path: path if path in ROUTES else "other")

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        """The model's header: method, hyperparameters, backbone and its fingerprint, preprocessing, thresholds,
        the indad version that fitted it (and the server's)."""
        return summary

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS, openapi_extra=PREDICT_BODY)
    async def predict(request: Request, heatmap: bool = False, trigger_id: str | None = None) -> dict[str, Any]:
        """Score one or several images: multipart file parts (any field names), or one image as the raw body
        (``?name=`` names it). Each image gets its score, normalised score (score / threshold), decision and defect
        regions (original-image pixels); ``?heatmap=true`` adds its heatmap as a base64 PNG. Any unusable upload
        refuses the whole request with an error naming it. ``?trigger_id=`` travels with the results."""
        return await gate.score(request, scorer, batcher, heatmap, trigger_id, publisher)

    return app
