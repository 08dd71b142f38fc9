import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from indad.data import make_loader, scan_train
from indad.errors import InputError
from indad.export.graph import OnnxScorer, export_model
from indad.methods import SPADE, Ensemble, PaDiM, PatchCore

# Each method's default pipeline (at 128 px to keep the exports quick), fitted on real images; the ensemble's
# members at two sizes (PaDiM's input resized in the graph, its map resized back).
METHODS = {
    "patchcore": (PatchCore, {"n_reweight": 3}),
    "padim": (PaDiM, {}),
    "spade": (SPADE, {"aligned": False}),
    "ensemble": (
        Ensemble,
        {
            "members": [
                {"method": "patchcore", "image_size": 128, "n_reweight": 3},
                {"method": "padim", "image_size": 96},
            ]
        },
    ),
}


def _real_batch(model, hazelnut) -> torch.Tensor:
    return next(iter(make_loader(hazelnut, model.preprocess, "test", 10)))["image"]


def _assert_close(got: tuple, ref: tuple) -> None:
    for g, r in zip(got, ref, strict=True):
        r = r.numpy()
        assert np.abs(np.asarray(g) - r).max() <= 1e-4 * np.abs(r).max()


# SPADE's and the ensemble's exports take minutes (torch.export's tracing): make test-full and CI only.
@pytest.mark.parametrize(
    "method", [pytest.param(m, marks=pytest.mark.slow) if m in ("spade", "ensemble") else m for m in sorted(METHODS)]
)
def test_onnx_and_torchscript_match_torch_on_real_images(method, hazelnut, tmp_path):
    cls, params = METHODS[method]
    model = cls(image_size=128, progress=False, **params).fit(hazelnut, holdout=0.2)
    images = _real_batch(model, hazelnut)
    with torch.inference_mode():
        ref = model.module(images)
    onnx = OnnxScorer(export_model(model, tmp_path / "m.onnx", "onnx"))
    _assert_close(onnx(images), ref)
    _assert_close(onnx(images[:3]), tuple(r[:3] for r in ref))  # dynamic batch size
    assert onnx.thresholds == model.thresholds and onnx.preprocess == model.preprocess
    traced = torch.jit.load(str(export_model(model, tmp_path / "m.pt", "torchscript")))
    _assert_close(tuple(t.detach() for t in traced(images[:4])), tuple(r[:4] for r in ref))


def test_unknown_format(tiny_model, tmp_path):
    with pytest.raises(InputError, match="unknown export format 'tflite'"):
        export_model(tiny_model, tmp_path / "m.x", "tflite")
    assert list(tmp_path.iterdir()) == []


# Peak RSS of a fresh process: VmHWM (ru_maxrss would carry the forking parent's peak across exec).
MEMORY_PROBE = """
import json, re, sys
import numpy as np
import onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).normal(size=(1, 3, 256, 256)).astype(np.float32)
score, amap = session.run(None, {session.get_inputs()[0].name: x})
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"peak_mb": peak_kb / 1024, "shape": list(amap.shape), "score": float(score[0])}))
"""


@pytest.mark.slow
def test_exported_patchcore_with_a_large_bank_scores_in_under_2gb(mtd, tmp_path):
    """A bank of every patch of 100 MTD images (102,400) is larger than a 10% coreset of all 761 (77,926).

    100 training images, not the whole dataset (a minute or two; make test-full and CI)."""
    paths = [s.path for s in scan_train(mtd)][:100]
    model = PatchCore(f_coreset=1.0, search="exact", progress=False).fit(paths)  # an export searches exactly
    assert model.memory_bank.shape[0] == 102_400
    path = export_model(model, tmp_path / "big.onnx", "onnx")
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    print(probe)
    assert probe["shape"] == [1, 256, 256] and probe["peak_mb"] < 2048
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, 256, 256)).astype(np.float32))
    assert probe["score"] == pytest.approx(float(model.predict(x).scores[0]), rel=1e-4)  # the probe's input, in torch
