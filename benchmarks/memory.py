"""Peak memory of PaDiM's and PatchCore's fit on MTD's 761 training images and on a 5,000-image stand-in.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/memory.py [--data-root ../shared/datasets]
        [--methods padim,patchcore] [--counts 761,5000] [--scratch DIR]

The stand-in for a large training set is MTD's training images under the eight
symmetries of the square (identity, rotations, flips), written as PNG files to a
scratch folder (a temporary one by default, removed at the end) and taken in that
order up to the count. Each fit runs in a fresh process at the method's default
settings; its time and peak resident memory (ru_maxrss) are printed, with the
ratio of the largest run's peak to the smallest's.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

CHILD = """
import json, resource, sys, time
from indad.methods import METHODS
paths = [line for line in open(sys.argv[2]).read().splitlines() if line]
model = METHODS[sys.argv[1]](progress=False)
start = time.perf_counter()
model.fit(paths)
print(json.dumps({"images": len(paths), "fit_s": time.perf_counter() - start, "timings": model.timings,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

SYMMETRIES = [
    None,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
]


def stand_in(train: list[Path], count: int, folder: Path) -> list[str]:
    """``count`` training images: the originals, then their symmetric copies written to ``folder``."""
    paths = []
    for k, op in enumerate(SYMMETRIES):
        for p in train:
            if len(paths) == count:
                return paths
            if op is None:
                paths.append(str(p))
                continue
            out = folder / f"{k}_{p.stem}.png"
            if not out.exists():
                with Image.open(p) as im:
                    im.transpose(op).save(out)
            paths.append(str(out))
    if len(paths) < count:
        raise SystemExit(f"only {len(paths)} images can be made from {len(train)} (8 symmetries each)")
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/datasets")
    p.add_argument("--methods", default="padim,patchcore")
    p.add_argument("--counts", default="761,5000")
    p.add_argument("--scratch", default=None, help="folder for the symmetric copies (default: a temporary one)")
    args = p.parse_args()
    from indad.data import scan_train

    train = [s.path for s in scan_train(Path(args.data_root) / "mtd")]
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(args.scratch or tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        lists = {}
        for count in map(int, args.counts.split(",")):
            lists[count] = scratch / f"paths_{count}.txt"
            lists[count].write_text("\n".join(stand_in(train, count, scratch)) + "\n")
        print("| method | training images | fit s | peak RSS MB |\n|---|---|---|---|", flush=True)
        for method in args.methods.split(","):
            rows = []
            for listing in lists.values():
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, method, str(listing)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                r = rows[-1]
                print(f"| {method} | {r['images']} | {r['fit_s']:.1f} | {r['peak_rss_mb']:.0f} |", flush=True)
            print(
                f"{method}: peak at {rows[-1]['images']} / at {rows[0]['images']} images: "
                f"x{rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}; fit timings at {rows[-1]['images']}: "
                f"{json.dumps({k: round(v, 1) for k, v in rows[-1]['timings'].items()})}",
                flush=True,
            )


if __name__ == "__main__":
    main()
