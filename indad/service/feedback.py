"""``POST /v1/feedback``: an operator's label on a recorded result (a router mounted by the service).

The service's bearer token guards it like every other route (401 without it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any, Literal

import anyio
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..errors import IndadError
from ..export.model_file import read_header
from ..lifecycle.drift import DriftMonitor, DriftReference
from ..lifecycle.record import PredictionRecord, UnknownResultError
from ..lifecycle.sinks import model_identity, service_hook

log = logging.getLogger(__name__)

FEEDBACK_ROUTE = "/v1/feedback"


class FeedbackIn(BaseModel):
    """What the operator says about a result: ``false_alarm``, ``missed_defect`` or ``confirmed``, and why."""

    result_id: str
    label: Literal["false_alarm", "missed_defect", "confirmed"]
    reason: str | None = None
    who: str | None = None


class FeedbackOut(BaseModel):
    """The feedback as recorded (the last label of a result counts; every one is kept)."""

    id: int
    result_id: str
    label: str
    reason: str | None
    time: str
    who: str | None
    history: int


def feedback_router(record: PredictionRecord) -> APIRouter:
    """The feedback route over ``record``: 404 for an unknown result id, 400 (``bad_parameter``) for a label
    not in the list."""
    router = APIRouter()

    @router.post(
        FEEDBACK_ROUTE,
        response_model=FeedbackOut,
        responses={401: {"description": "missing or wrong bearer token"}, 404: {"description": "unknown result id"}},
    )
    async def feedback(body: FeedbackIn) -> Any:
        """Label a recorded result as a false alarm, a missed defect or a confirmed defect (``indad retrain``
        learns from these)."""

        def add() -> dict[str, Any]:
            given = record.add_feedback(body.result_id, body.label, body.reason, body.who)
            return given.__dict__ | {"history": len(record.history(body.result_id))}

        try:
            return await anyio.to_thread.run_sync(add)
        except UnknownResultError as exc:
            return JSONResponse({"error": "unknown_result", "detail": str(exc)}, status_code=404)

    return router


def mount_feedback(app: FastAPI, record: PredictionRecord) -> None:
    """Add ``POST /v1/feedback`` over ``record`` to a service app (its token middleware guards it)."""
    app.include_router(feedback_router(record))
    app.state.record = record


class DriftCollector:
    """The drift monitor's statistics as gauges of the service's Prometheus registry (in ``/metrics``)."""

    def __init__(self, drift: DriftMonitor) -> None:
        self.drift = drift

    def collect(self) -> Iterator[Any]:
        """Prometheus' collector protocol: one gauge family per statistic."""
        from prometheus_client.core import GaugeMetricFamily

        status = self.drift.status()
        for name, value in (
            ("brightness_change", status.brightness),
            ("contrast_change", status.contrast),
            ("score_ks", status.ks),
            ("above_threshold_share", status.above_threshold),
            ("score_median", status.score_median),
            ("score_p90", status.score_p90),
            ("alarm", float(status.alarm)),
        ):
            if value is not None:
                family = GaugeMetricFamily(f"indad_drift_{name}", f"drift: {name}", labels=["model"])
                family.add_metric([self.drift.model], value)
                yield family


def attach_lifecycle(
    app: FastAPI, model_path: str | os.PathLike, record_target: str | os.PathLike | None, images: str | None = None
) -> DriftMonitor | None:
    """Record the service's results in ``record_target``, take feedback, and watch drift (gauges in /metrics).

    Each reply's results then carry their record ``id`` and the ``model_version``. The drift monitor needs the
    model file's reference (see :class:`~indad.lifecycle.drift.DriftReference`); without it there is none.
    """
    name, version = model_identity(model_path)
    record = None if record_target is None else PredictionRecord(record_target, images)
    if record is not None:
        mount_feedback(app, record)
    drift = None
    try:
        drift = DriftMonitor(DriftReference.from_header(read_header(model_path)), model=name)
        app.state.metrics.registry.register(DriftCollector(drift))
    except IndadError as exc:
        log.warning("no drift monitor for %s: %s", model_path, exc)
    app.state.drift = drift
    app.state.result_hooks = [service_hook(record, name, version, drift)]
    return drift
