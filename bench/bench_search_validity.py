"""Does the search beat random search? Resolution, ranking quality, controller vs random.

    # 1. The benchmark's own resolution: one architecture trained from scratch over seeds.
    python bench/bench_search_validity.py resolution --flagfile=flags/validity_synthetic.cfg \\
        --runs_root=runs/validity --seeds=0,1,2
    # 2. Ranking quality of the shared weights: Kendall tau between the shared-weight score
    #    (classification and verification) and stand-alone verification over N architectures.
    python bench/bench_search_validity.py tau --flagfile=flags/validity_synthetic.cfg \\
        --runs_root=runs/validity --num_archs=12
    # 3. Controller vs random search at equal budget, top-3 of each trained from scratch.
    python bench/bench_search_validity.py compare --flagfile=flags/validity_synthetic.cfg \\
        --runs_root=runs/validity --seeds=0,1,2

Every training is `python -m enas_face.main` in its own folder under RUNS_ROOT (a
finished run is reused, an interrupted one resumes), so the benchmark can be stopped
and restarted. Flags after `--` go to every run. Stand-alone accuracy is the 10-fold
verification accuracy on the flagfile's held-out pairs; the data are fixed by
--data_seed in the flagfile while --seed varies the training.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from enas_face import runlog  # noqa: E402


def run_main(args: list[str], run_dir: str, done_file: str) -> bool:
  """`python -m enas_face.main ARGS --run_dir=RUN_DIR` unless RUN_DIR/DONE_FILE exists."""
  if os.path.exists(os.path.join(run_dir, done_file)):
    return True
  command = [sys.executable, "-m", "enas_face.main", *args, f"--run_dir={run_dir}"]
  print(" ".join(command), flush=True)
  tic = time.perf_counter()
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, "bench_stderr.log"), "w") as err:
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, text=True)
  if result.returncode:
    print(f"  failed (exit {result.returncode}); see {run_dir}/bench_stderr.log", flush=True)
    return False
  print(f"  {time.perf_counter() - tic:.0f} s", flush=True)
  return True


def arc_tag(arc_string: str) -> str:
  return arc_string.replace(" ", "")


def standalone(flagfile: str, runs_root: str, arc_string: str, seed: int, extra: list[str]):
  """Metrics of `arc_string` trained from scratch with training seed `seed`, or None."""
  run_dir = os.path.join(runs_root, "standalone", f"{arc_tag(arc_string)}_s{seed}")
  ok = run_main([f"--flagfile={flagfile}", "--mode=fixed", f"--arc={arc_string}", f"--seed={seed}",
                 *extra], run_dir, "metrics.json")
  return runlog.read_json(os.path.join(run_dir, "metrics.json")) if ok else None
