"""Peak memory of PaDiM's fit on 200 and on all 761 MTD training images: it should stay flat.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/padim_memory.py [--data-root ../shared/datasets]

Each fit runs in a fresh process; its peak resident memory (ru_maxrss) is printed,
with the ratio of the larger run to the smaller one.
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, resource, sys, time
from indad.data import scan_train
from indad.models import PaDiM
paths = [s.path for s in scan_train(sys.argv[1])][: int(sys.argv[2])]
model = PaDiM(progress=False)
start = time.perf_counter()
model.fit(paths)
print(json.dumps({"images": len(paths), "fit_s": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/datasets")
    p.add_argument("--counts", default="200,761")
    args = p.parse_args()
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    rows = []
    for count in args.counts.split(","):
        out = subprocess.run([sys.executable, "-c", CHILD, os.path.join(args.data_root, "mtd"), count],
                             env=env, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| training images | fit s | peak RSS MB |\n|---|---|---|")
    for r in rows:
        print(f"| {r['images']} | {r['fit_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    print(f"peak ratio {rows[-1]['images']} vs {rows[0]['images']} images: "
          f"{rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.3f}")


if __name__ == "__main__":
    main()
