"""Fit and folder scoring on a Ray cluster: the same model file, CSV and pictures as in one process.

Every worker reads the images, the model file (and backbone weights given as a
file) by their paths, and scoring workers write pictures into the output
folder: these must be on storage every node of the cluster sees.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from ..methods import AnomalyModel

try:
    import ray
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("the Ray engine needs Ray: pip install 'indad[ray]'") from exc

from ..data import train_paths
from ..errors import InputError
from ..files import atomic_output, remove_partials
from ..inference.folder import (
    ROW_FIELDS,
    FolderPrediction,
    collect_images,
    read_input,
    refuse_existing,
    report_error,
    score_inputs,
    write_results,
)
from ..inference.scorer import open_scorer
from ..progress import Progress, progress_bar
from ..thresholds import DEFAULT_DECISION, Decision

log = logging.getLogger(__name__)


class RayEngine:
    """Runs the work of a fit or of :func:`~indad.inference.predict_folder` on Ray workers.

    Parameters
    ----------
    address:
        Address of a running Ray cluster (``"auto"``, ``"HOST:6379"``,
        ``"ray://HOST:10001"``). ``None``: ``$RAY_ADDRESS`` when set, else a Ray
        started on this machine for the call.
    workers:
        Parallel workers (fit shards, scoring processes); ``None``: as many as
        the cluster's CPUs (GPUs with ``gpus_per_worker``) allow.
    cpus_per_worker, gpus_per_worker:
        Resources each worker reserves; a worker with a GPU runs on CUDA.
    threads:
        Torch threads of each worker (default: ``cpus_per_worker``). Scores are
        bit-identical to a one-process run with as many threads
        (``torch.set_num_threads``, ``indad predict --threads``); the CPU
        convolutions split their sums by thread, so other counts differ in the
        7th significant digit.
    progress:
        Progress bar (True), nothing (False) or a callable of
        :class:`~indad.progress.ProgressEvent`.
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_worker: float = 1,
        gpus_per_worker: float = 0,
        threads: int | None = None,
        progress: Progress = True,
    ) -> None:
        if workers is not None and int(workers) < 1:
            raise InputError(f"workers must be >= 1, got {workers}")
        if cpus_per_worker <= 0 or gpus_per_worker < 0:
            raise InputError(
                f"cpus_per_worker must be > 0 and gpus_per_worker >= 0, got {cpus_per_worker}, {gpus_per_worker}"
            )
        self.address = address
        self.workers = None if workers is None else int(workers)
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.threads = max(1, int(cpus_per_worker)) if threads is None else int(threads)
        self.progress = progress

    @property
    def device(self) -> str:
        """The device a worker computes on."""
        return "cuda" if self.gpus_per_worker > 0 else "cpu"

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Connected to the cluster for the block; disconnects only if this call connected."""
        ray_data_log = logging.getLogger("ray.data")
        level = ray_data_log.level
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, logging_level=logging.WARNING)
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False  # indad's own bar counts images
            ray_data_log.setLevel(logging.ERROR)  # nor Ray Data's plan and progress lines
            yield
        finally:
            ray_data_log.setLevel(level)
            if started:
                ray.shutdown()

    def worker_count(self) -> int:
        """``workers``, or how many workers the cluster's resources hold at once (at least 1)."""
        if self.workers is not None:
            return self.workers
        resources = ray.cluster_resources()
        if self.gpus_per_worker > 0:
            return max(1, int(resources.get("GPU", 0) // self.gpus_per_worker))
        return max(1, int(resources.get("CPU", 1) // self.cpus_per_worker))

    # ----------------------------------------------------------------- fit
    def partial_fits(self, model: AnomalyModel, data: Any) -> list[dict[str, torch.Tensor]]:
        """Each shard's :meth:`~indad.methods.AnomalyModel.partial_fit_state`, computed by one worker a shard.

        ``data`` (image files and folders, or a dataset root whose ``train/good``
        is used) is cut into batches dealt round-robin to as many shards as there are workers.
        """
        if model.align != "none":
            raise InputError(f'align="{model.align}" is not supported on Ray yet: fit in one process (--engine local)')
        paths = [str(p.resolve()) for p in train_paths(data, "fitting on Ray")]
        # the region of interest plays no part in fitting (and its picture may not be where the workers run)
        hparams = model.hparams() | {"device": self.device, "progress": False, "roi": None}
        if hparams["weights"]:
            hparams["weights"] = str(Path(hparams["weights"]).resolve())
        with self.session():
            # Shards of whole batches, dealt round-robin: each image meets the same batch-mates as in one process,
            # and each shard is a sample of the whole set (a two-level coreset needs that; contiguous shards of
            # MTD's acquisition runs lost 0.5 point of ROC AUC).
            step = model.images_per_batch()
            batches = [paths[a : a + step] for a in range(0, len(paths), step)]
            count = min(self.worker_count(), len(batches))
            shards = [[p for batch in batches[s::count] for p in batch] for s in range(count)]
            task = ray.remote(_partial_fit).options(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker)
            refs = [task.remote(model.method, hparams, shard, count, self.threads) for shard in shards]
            log.info("%s: fitting %d shards of %d images on Ray", model.method, count, len(paths))
            parts, pending = {}, list(refs)
            try:
                with progress_bar(f"{model.method}: shards", count, self.progress) as bar:
                    while pending:
                        done, pending = ray.wait(pending, num_returns=1)
                        parts[done[0]] = ray.get(done[0])  # a shard's error now, not after the others
                        bar.update(1)
                return [parts[ref] for ref in refs]
            except ray.exceptions.RayTaskError as exc:
                raise exc.cause from None  # e.g. the unreadable image, as in a one-process fit

    # ----------------------------------------------------------------- predict
    def predict_folder(
        self,
        model_path: str | os.PathLike,
        inputs: Sequence[str | os.PathLike],
        out: str | os.PathLike,
        overwrite: bool = False,
        batch_size: int = 16,
        runtime: str = "torch",
        decision: Decision = DEFAULT_DECISION,
    ) -> FolderPrediction:
        """:func:`~indad.inference.predict_folder` with Ray Data: each worker loads the model once and scores batches.

        The CSV is the same, byte for byte, as the one-process run's; pictures are
        written by the workers. A batch whose worker dies is scored again by
        another (its pictures are rewritten whole); each image gets one row.
        """
        out = refuse_existing(out, overwrite)
        scorer = open_scorer(model_path, runtime, "cpu")  # a bad model file fails here, before any worker starts
        files, base = collect_images(inputs, exclude=out)
        absolute = [os.path.abspath(p) for p in files]  # as given: output names keep linked folders
        rows: list[dict | None] = [None] * len(files)
        with self.session(), atomic_output(out) as tmp:
            tmp.mkdir(parents=True)
            # One row a batch, the same batches as one process makes: the same batch-mates, the same scores.
            items = ray.data.from_items(
                [{"first": a, "files": absolute[a : a + batch_size]} for a in range(0, len(absolute), batch_size)]
            )
            ds = items.map_batches(
                _ScoreBatches,
                fn_constructor_kwargs={
                    "model_path": str(Path(model_path).resolve()),
                    "runtime": runtime,
                    "device": self.device,
                    "threads": self.threads,
                    "base": str(base),
                    "root": str(tmp.resolve()),
                    "decision": decision,
                },
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=self.worker_count()),
                num_cpus=self.cpus_per_worker,
                num_gpus=self.gpus_per_worker,
            )
            with progress_bar("predict", len(files), self.progress) as bar:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for j, i in enumerate(batch["index"].tolist()):
                        if rows[i] is not None:
                            continue  # a retried batch's rows again: same values, pictures rewritten whole
                        row = {c: str(batch[c][j]) for c in ROW_FIELDS}
                        # the workers saw absolute paths; the CSV names each input as it was given
                        row["path"] = str(files[i])
                        row["error"] = row["error"].replace(absolute[i], str(files[i]))
                        rows[i] = row
                        if row["error"]:
                            report_error(row)
                        bar.update(1)
            done = [row for row in rows if row is not None]
            if len(done) < len(rows):
                missing = [str(files[i]) for i, row in enumerate(rows) if row is None]
                raise RuntimeError(f"{len(missing)} images came back from Ray without a result, e.g. {missing[0]}")
            remove_partials(tmp)  # pictures killed workers were writing (written again since)
            write_results(tmp, done)
        return FolderPrediction(done, sum(1 for r in done if r["error"]), out, scorer.thresholds)


def _partial_fit(method: str, hparams: dict, paths: list[str], shards: int, threads: int) -> dict[str, torch.Tensor]:
    """A Ray task: the model rebuilt from its parameters, one shard's partial state (on the CPU)."""
    from ..methods import METHODS

    torch.set_num_threads(threads)
    model = METHODS[method](**hparams)
    with torch.inference_mode():
        part = model.partial_fit_state(model.fit_batches(paths, f"{method}: shard"), shards)
    return {name: tensor.cpu() for name, tensor in part.items()}


class _ScoreBatches:
    """A Ray Data worker: the scorer loaded once, then batches of files -> CSV fields, pictures under ``root``."""

    def __init__(
        self, model_path: str, runtime: str, device: str, threads: int, base: str, root: str, decision: Decision
    ) -> None:
        self.root = Path(root)
        self.decision = decision
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"the output folder {root} is not visible on this Ray node ({os.uname().nodename}):"
                " --out must be on storage every node sees"
            )
        self.base = Path(base)
        torch.set_num_threads(threads)
        self.scorer = open_scorer(model_path, runtime, device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One input row (``first`` index, ``files`` of one batch) -> a row per file."""
        first, files = int(batch["first"][0]), [str(f) for f in batch["files"][0]]
        paths = [Path(f) for f in files]
        items = [read_input(p, self.scorer.preprocess) for p in paths]
        rows = score_inputs(self.scorer, paths, items, self.base, self.root, self.decision)
        return {
            "index": np.arange(first, first + len(rows)),
            **{c: np.array([r[c] for r in rows], dtype=object) for c in ROW_FIELDS},
        }
