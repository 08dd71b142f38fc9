"""Seed-compatible entry point: ``python indad/run.py METHOD [--dataset DATASET] [options]``.

The same command as ``indad run``.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: import the package from the folder above, not this one.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from indad.cli.main import run_command

if __name__ == "__main__":
    run_command.main(args=sys.argv[1:], prog_name="python indad/run.py")
