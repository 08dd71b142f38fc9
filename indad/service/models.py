"""``indad serve DIR``: every model file in a folder at ``/v1/models/{name}/predict``, swapped in without a restart.

A watcher thread scans the folder every ``poll_s`` seconds. A model file (``NAME.indad``) that is new or
replaced (another size, time or inode) and has not changed for ``settle_s`` is loaded beside the version
serving now, with a micro-batching worker of its own, then swapped in under a lock: a request holds the
version it started with until it is answered, and a replaced version's worker stops once its last request is
done. A file that fails to load leaves the old version serving; why is logged, listed by ``GET /v1/models``
and counted (``indad_model_loads_total{outcome="failed"}``). A removed file's model is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from prometheus_client import Counter, Gauge

from ..errors import InputError
from ..inference.scorer import Scorer, open_scorer
from ..line.pipeline import Publisher
from ..version import __version__
from .app import ERRORS, PREDICT_BODY, Gate, PredictResponse, ServiceOptions, install_guards, model_summary
from .batcher import MicroBatcher
from .metrics import Metrics
from .uploads import RequestError

log = logging.getLogger(__name__)

SUFFIX = ".indad"
PREDICT_ROUTE = "/v1/models/{name}/predict"
ROUTES = ("/v1/models", "/healthz", "/metrics", "/docs", "/openapi.json")


@dataclass(eq=False)
class ModelEntry:
    """A loaded version of a model: its scorer, worker and header; ``inflight`` requests hold it."""

    name: str
    version: str
    path: Path
    key: tuple[int, int, int]
    scorer: Scorer
    batcher: MicroBatcher
    summary: dict[str, Any]
    loaded_at: float = field(default_factory=time.time)
    inflight: int = 0
    retired: bool = False


def file_key(path: Path) -> tuple[int, int, int] | None:
    """What tells a file's versions apart: size, modification time and inode (None if it is gone)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class ModelRegistry:
    """The models of ``folder``, loaded, replaced and dropped as their files come, change and go."""

    def __init__(
        self,
        folder: Path,
        options: ServiceOptions,
        metrics: Metrics,
        runtime: str = "torch",
        device: str = "auto",
        poll_s: float = 1.0,
        settle_s: float = 0.5,
    ) -> None:
        if not folder.is_dir():
            raise InputError(f"no such model folder: {folder}")
        self.folder, self.options, self.metrics = folder, options, metrics
        self.runtime, self.device, self.poll_s, self.settle_s = runtime, device, poll_s, settle_s
        self.entries: dict[str, ModelEntry] = {}
        self.failures: dict[str, dict[str, Any]] = {}  # name -> the last failed load (cleared by a good one)
        self._failed_keys: dict[str, tuple[int, int, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        r = metrics.registry
        self.loads = Counter(
            "indad_model_loads", "Model files loaded, by model and outcome", ["model", "outcome"], registry=r
        )
        self.loaded = Gauge("indad_models_loaded", "Models being served", registry=r)

    def start(self) -> None:
        """Load what is there now, then watch the folder in a thread."""
        self.scan(settle=False)
        self._thread = threading.Thread(target=self._watch, name="indad-models", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop watching and stop every worker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            entries, self.entries = list(self.entries.values()), {}
        for entry in entries:
            entry.batcher.close()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.scan()
            except Exception as exc:  # a scan that fails (e.g. the folder unmounted) is retried at the next poll
                log.error("scanning %s: %s", self.folder, exc)

    def scan(self, settle: bool = True) -> None:
        """Load new and replaced model files, drop the models whose file is gone."""
        present = {p.stem: p for p in sorted(self.folder.glob(f"*{SUFFIX}")) if not p.name.startswith(".")}
        for name, path in present.items():
            key = file_key(path)
            current = self.entries.get(name)
            if key is None or (current is not None and current.key == key) or self._failed_keys.get(name) == key:
                continue
            if settle and time.time() - key[1] / 1e9 < self.settle_s:
                continue  # still being written, perhaps
            self._load(name, path, key)
        for name in [n for n in self.entries if n not in present]:
            with self._lock:
                entry = self.entries.pop(name)
            log.info("model %s: %s is gone, no longer served", name, entry.path)
            self._retire(entry)
        self.loaded.set(len(self.entries))

    def _load(self, name: str, path: Path, key: tuple[int, int, int]) -> None:
        """Load a version of ``name`` beside the one serving, then swap it in (or record why it failed)."""
        try:
            scorer = open_scorer(path, self.runtime, self.device)
            summary = model_summary(scorer)
        except Exception as exc:  # any file that does not load leaves the old version serving
            self._failed_keys[name] = key
            self.failures[name] = {"path": str(path), "error": f"{type(exc).__name__}: {exc}", "time": time.time()}
            self.loads.labels(name, "failed").inc()
            kept = self.entries.get(name)
            log.error("model %s: cannot load %s (%s); %s", name, path, exc,
                      f"version {kept.version} keeps serving" if kept else "not served")  # fmt: skip
            return
        o = self.options
        batcher = MicroBatcher(scorer, o.max_batch, o.max_wait_ms / 1000.0, self.metrics.record_batch).start()
        info = scorer.model_info
        entry = ModelEntry(
            name, info.version, path, key, scorer, batcher, summary | {"name": name, "version": info.version}
        )
        with self._lock:
            old, self.entries[name] = self.entries.get(name), entry
        self.failures.pop(name, None)
        self._failed_keys.pop(name, None)
        self.loads.labels(name, "loaded").inc()
        log.info("model %s: version %s from %s%s", name, entry.version, path, f" replaces {old.version}" if old else "")
        if old is not None:
            self._retire(old)

    def _retire(self, entry: ModelEntry) -> None:
        """Stop a version's worker once its last request is answered."""
        with self._lock:
            entry.retired = True
            idle = entry.inflight == 0
        if idle:
            entry.batcher.close()

    @contextmanager
    def hold(self, name: str) -> Iterator[ModelEntry]:
        """The version of ``name`` serving now, held (not stopped) until the block ends; 404 if none."""
        with self._lock:
            entry = self.entries.get(name)
            if entry is None:
                failure = self.failures.get(name)
                why = f": {failure['error']}" if failure else ""
                raise RequestError(404, "no_such_model", f"no model {name!r} in {self.folder}{why}")
            entry.inflight += 1
        try:
            yield entry
        finally:
            with self._lock:
                entry.inflight -= 1
                idle = entry.retired and entry.inflight == 0
            if idle:
                entry.batcher.close()

    def listing(self) -> dict[str, Any]:
        """The models served (name, version, file, when loaded) and the files that failed to load (and why)."""
        with self._lock:
            entries = sorted(self.entries.values(), key=lambda e: e.name)
        models = [
            {"name": e.name, "version": e.version, "path": str(e.path), "loaded_at": e.loaded_at} for e in entries
        ]
        return {"models": models, "failures": {k: dict(v) for k, v in sorted(self.failures.items())}}


def _route(path: str) -> str:
    """The metrics label of a request path (the models' routes share one label each)."""
    if path.startswith("/v1/models/"):
        return PREDICT_ROUTE if path.endswith("/predict") else "/v1/models/{name}"
    return path if path in ROUTES else "other"


def create_models_app(
    folder: Path,
    options: ServiceOptions | None = None,
    publisher: Publisher | None = None,
    runtime: str = "torch",
    device: str = "auto",
    poll_s: float = 1.0,
) -> FastAPI:
    """The service for every model file of ``folder`` (see the module's docstring)."""
    options = options or ServiceOptions()
    metrics = Metrics()
    registry = ModelRegistry(Path(folder), options, metrics, runtime, device, poll_s)
    gate = Gate.build(options, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(registry.start)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(registry.close)

    app = FastAPI(
        title="indad scoring service (several models)",
        version=__version__,
        description="Scores, decisions and defect regions of images, from each indad model of a folder.",
        lifespan=lifespan,
    )
    app.state.registry, app.state.metrics, app.state.options = registry, metrics, options
    app.state.admission = gate.admission
    install_guards(app, options, metrics, _route)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        """The models served (name, version, file, load time) and the files that failed to load, with why."""
        return registry.listing()

    @app.get("/v1/models/{name}")
    async def model(name: str) -> dict[str, Any]:
        """A model's header (as ``GET /v1/model`` of the single-model service), with its name and version."""
        with registry.hold(name) as entry:
            return entry.summary

    @app.post(PREDICT_ROUTE, response_model=PredictResponse, responses=ERRORS, openapi_extra=PREDICT_BODY)
    async def predict(name: str, request: Request, heatmap: bool = False, trigger_id: str | None = None) -> Any:
        """Score images with model ``name`` (uploads as ``POST /v1/predict``); each result names the model version
        that scored it (the one serving when the request arrived, even if replaced meanwhile)."""
        with registry.hold(name) as entry:
            return await gate.score(request, entry.scorer, entry.batcher, heatmap, trigger_id, publisher)

    return app
