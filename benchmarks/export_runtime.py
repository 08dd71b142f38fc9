"""Predict time per image and peak memory: torch vs ONNX Runtime, for each method on MTD.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/export_runtime.py [--data-root ../shared/datasets]
        [--methods patchcore,padim,spade] [--train 761] [--images 128] [--batch 16]

Each method is fitted with its default offline config on the first ``--train``
MTD training images, saved, and exported to ONNX. Then, in a fresh process per
runtime (so peak memory is that runtime's alone: VmHWM of the process), the
first ``--images`` MTD test images are preprocessed and scored in batches;
the time counts scoring only (after one warm-up batch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, re, sys, time
import torch
from indad.data import read_image, scan_test
from indad.inference import open_scorer
path, runtime, root, n, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
scorer = open_scorer(path, runtime, "cpu")
images = torch.stack([scorer.preprocess.image(read_image(s.path)) for s in scan_test(root)[:n]])
scorer(images[:batch])  # warm-up
start = time.perf_counter()
for chunk in images.split(batch):
    scorer(chunk)
elapsed = time.perf_counter() - start
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"ms_per_image": 1000 * elapsed / len(images), "peak_mb": hwm / 1024}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/datasets")
    p.add_argument("--methods", default="patchcore,padim,spade")
    p.add_argument("--train", type=int, default=761)
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from indad.data import scan_train
    from indad.export.graph import export_model
    from indad.methods import METHODS

    mtd = Path(args.data_root) / "mtd"
    train = [s.path for s in scan_train(mtd)][: args.train]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            model = METHODS[method](progress=False).fit(train)
            path = model.save(Path(tmp) / f"{method}.indad")
            start = time.perf_counter()
            export_model(model, path.with_suffix(".onnx"), "onnx")
            export_s = time.perf_counter() - start
            del model
            row = {
                "method": method,
                "export_s": export_s,
                "model_mb": path.stat().st_size / 2**20,
                "onnx_mb": path.with_suffix(".onnx").stat().st_size / 2**20,
            }
            for runtime, target in (("torch", path), ("onnx", path.with_suffix(".onnx"))):
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(target), runtime, str(mtd), str(args.images), str(args.batch)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row[runtime] = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.images} MTD test images, batch {args.batch}, CPU; models fitted on {len(train)} images\n")
    print(
        "| method | torch ms/img | ONNX ms/img | ONNX / torch | torch peak MB | ONNX peak MB | model file MB "
        "| ONNX file MB | export s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, o = r["torch"], r["onnx"]
        print(
            f"| {r['method']} | {t['ms_per_image']:.1f} | {o['ms_per_image']:.1f} | "
            f"{o['ms_per_image'] / t['ms_per_image']:.2f} | {t['peak_mb']:.0f} | {o['peak_mb']:.0f} | "
            f"{r['model_mb']:.0f} | {r['onnx_mb']:.0f} | {r['export_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
