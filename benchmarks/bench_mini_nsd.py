"""Peak memory and wall time of the nsd-mini generator (``brainnet make-mini-nsd``).

``PYTHONPATH=. BRAINNET_OFFLINE=1 python benchmarks/bench_mini_nsd.py [--preset algonauts] [--subjects 2]
[--sessions N] [--out DIR] [--keep]`` runs the command line in a child process and prints, as JSON, its peak
resident memory (``getrusage`` of the children: the generator is the only child) and wall time, and the size
of the tree written. The tree is removed afterwards unless ``--keep``.

Measured with ``/usr/bin/time -v`` on a 2-core machine shared with other jobs (issue 11), before / after the
accumulators moved to scratch files: ``--subjects 1``: 12.1 GB / 0.78 GB; ``--subjects 2 --sessions 8``:
3.0 GB / 0.71 GB; ``--subjects 2``: 0.83 GB after (28 min wall, 23 GB tree). Nothing here compares
against a stored reference.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="algonauts")
    parser.add_argument("--subjects", type=int, default=None)
    parser.add_argument("--sessions", type=int, default=None)
    parser.add_argument("--out", default="/tmp/bench-mini-nsd")
    parser.add_argument("--keep", action="store_true", help="keep the generated tree")
    args = parser.parse_args(argv)
    out = Path(args.out)
    cmd = [sys.executable, "-m", "brainnet.cli", "make-mini-nsd", str(out), "--preset", args.preset]
    if args.subjects is not None:
        cmd += ["--subjects", str(args.subjects)]
    if args.sessions is not None:
        cmd += ["--sessions", str(args.sessions)]
    env = {**os.environ, "BRAINNET_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    result = {"preset": args.preset, "subjects": args.subjects, "sessions": args.sessions,
              "peak_rss_gib": round(peak_kib / 2**20, 3), "wall_s": round(wall, 1),
              "tree_gib": round(tree_bytes(out) / 2**30, 2)}
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
