"""The ensemble's one input per image against each member preprocessing the image file itself (issue 18).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ensemble_input.py [--data-root ../shared/datasets] [--dataset mtd]
        [--model /tmp/indad_ensemble_mtd.indad]

Fits the default :class:`~indad.methods.Ensemble` (lite0 PatchCore at 256 and
320 px) once (kept in ``--model``, reused when it exists), then evaluates the
same fitted members three ways on the test split:

- ``shipped``: the ensemble's module, the 320 px input resized to 256 for the
  other member, maps fused at 320;
- ``files``: each member alone on the image files at its own size, scores
  averaged, maps fused at 320 and at 256 (the prototype, ``mtd_levers.py``);
- ``input_256``: the 256 px input, upsampled to 320 for the other member,
  maps fused at 256.

Prints image / pixel ROC AUC and AUPRO for each, and how far the fused scores
lie from ``files``' (mean and largest difference, in shares of their range).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see DEVELOPERS.md)

import numpy as np
import torch
import torch.nn.functional as F

from indad.methods import AnomalyModel, Ensemble, load_model
from indad.methods.ensemble import EnsembleModule
from indad.metrics import evaluate_predictions

Scored = dict[str, np.ndarray | list[str]]


def scored(model: AnomalyModel, root: Path, module: torch.nn.Module | None = None) -> Scored:
    """Labels, defects, masks and the scores and maps of ``module`` (default the model's) over the test split."""
    out: dict[str, list] = {k: [] for k in ("labels", "masks", "keep", "scores", "maps")}
    defects: list[str] = []
    with torch.inference_mode():
        for batch in model.iter_batches(root, "test", "", 16):
            s, m = (module or model.require_fitted())(batch["image"])
            out["scores"].append(s.float().numpy())
            out["maps"].append(m.float().numpy())
            out["labels"].append(np.asarray(batch["label"]))
            out["masks"].append(batch["mask"].numpy())
            out["keep"].append(np.asarray(batch["has_mask"], dtype=bool))
            defects += [d or "good" for d in batch["defect"]]
    return {**{k: np.concatenate(v) for k, v in out.items()}, "defects": defects}


def resized(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(N, h, w)`` maps resized bilinearly to ``size``."""
    x = torch.from_numpy(maps)[:, None]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[:, 0].numpy()


def report(name: str, ref: Scored, scores: np.ndarray, maps: np.ndarray, baseline: np.ndarray | None) -> None:
    """One line: the metrics of ``scores`` and ``maps`` on ``ref``'s labels and masks, their distance to ``baseline``.

    Distances are in shares of ``baseline``'s range.
    """
    keep = np.asarray(ref["keep"])
    r = evaluate_predictions(
        np.asarray(ref["labels"]), scores, np.asarray(ref["masks"])[keep], maps[keep], list(ref["defects"])
    )
    line = f"{name}: image {r['image_auroc']:.4f} pixel {r['pixel_auroc']:.4f} aupro {r['aupro']:.4f}"
    if baseline is not None:
        d = np.abs(scores - baseline) / np.ptp(baseline)
        line += f" | scores vs files: mean {d.mean():.4f}, max {d.max():.4f} of the range"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/datasets")
    parser.add_argument("--dataset", default="mtd")
    parser.add_argument("--model", default="/tmp/indad_ensemble_mtd.indad")
    args = parser.parse_args()
    root = Path(args.data_root) / args.dataset
    if Path(args.model).is_file():
        model = load_model(args.model)
    else:
        model = Ensemble(progress=False).fit(root)
        model.save(args.model)
        print(f"fit {model.timings['fit_s']:.1f} s", flush=True)
    assert isinstance(model, Ensemble)
    small, large = model.member_models
    shipped = scored(model, root)
    alone = [scored(m, root) for m in model.member_models]
    files = np.mean([np.asarray(a["scores"]) for a in alone], axis=0)
    report(
        "shipped (input 320, 256 resized in the module)",
        shipped,
        np.asarray(shipped["scores"]),
        np.asarray(shipped["maps"]),
        files,
    )
    for m, a in zip(model.member_models, alone, strict=True):
        report(
            f"member {m.input_size[0]} px alone, from the files",
            a,
            np.asarray(a["scores"]),
            np.asarray(a["maps"]),
            None,
        )
    for size, ref in (((320, 320), shipped), ((256, 256), alone[0])):
        maps = np.mean([resized(np.asarray(a["maps"]), size) for a in alone], axis=0)
        report(f"files, fused at {size[0]}", ref, files, maps, files)
    up = EnsembleModule(
        [small.require_fitted(), large.require_fitted()], [(256, 256), (320, 320)], (256, 256), [None, None]
    )
    s256 = scored(small, root, up.eval())
    report("input_256 (320 upsampled in the module)", s256, np.asarray(s256["scores"]), np.asarray(s256["maps"]), files)


if __name__ == "__main__":
    main()
