"""Set-to-set verification with mean, best-frame, QAN and QAN++ pooling on one trained embedder.

    python bench/bench_sets.py --run_dir=RUN --label=NAME [--seeds=0,1,2] [--json=FILE]
        [-- flags for every run]

On the run's frozen embedder (a finished --mode=fixed run), in fresh processes:
  --mode=quality --quality_net=qan,  --mode=quality --quality_net=qanpp  (each into
  RUN/quality/<net>/; finished ones are reused), then
  --mode=eval --aggregation=mean,best,qan,qanpp.
The flags after `--` (e.g. --sets=..., --set_size=..., --set_heldout=...) go to all three.
Prints one markdown row per pooling method (10-fold set verification accuracy +- std,
TAR at FAR 1e-3 and 1e-4, ROC AUC), and where frames carry a known degradation level the
oracle row (QAN++ pooling of q = -level: what quality-aware pooling could gain at most on
these sets) and the Spearman correlation of each learned quality score with the level;
appends them to --json.
Goal (issue 14): QAN++ beats mean pooling.

The table of docs/sets-and-video.md:
  python -m enas_face.main --flagfile=flags/demo.cfg --mode=fixed --run_dir=runs/sets_syn
  python bench/bench_sets.py --run_dir=runs/sets_syn --label="synthetic videos"
  python bench/bench_sets.py --run_dir=runs/lfw64 --label="LFW View 1 test people" -- \\
      --sets=tfrecord:data/lfw/aligned_112 --set_heldout=data/lfw/pairsDevTest.txt \\
      --set_size=4 --set_degraded_fraction=0
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.passthrough import split_passthrough  # pylint: disable=wrong-import-position
from enas_face import runlog  # pylint: disable=wrong-import-position

METHODS = ("mean", "best", "qan", "qanpp")


def run(args: list[str]) -> float:
  """Runs enas_face.main in a fresh process; returns its wall time; stops on failure."""
  tic = time.perf_counter()
  result = subprocess.run([sys.executable, "-m", "enas_face.main", *args], cwd=ROOT,
                          capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  if result.returncode:
    sys.exit(f"failed: {' '.join(args)}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
  return time.perf_counter() - tic


def copy_embedder(run_dir: str, target: str) -> str:
  """A copy of the run's embedder (config + checkpoints) in `target`, for one more quality run
  (RUN/quality/<net>/ holds one training's settings)."""
  if not os.path.isdir(target):
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns(
        runlog.QUALITY_DIR, runlog.TENSORBOARD_DIR, runlog.SAVED_MODEL_DIR, "*.tmp"))
  return target


def bench_one(run_dir: str, passthrough: list[str]) -> tuple[dict, dict]:
  """QAN and QAN++ training, then eval with every pooling: (set report, seconds)."""
  seconds = {}
  for net in ("qan", "qanpp"):
    run(["--mode=quality", f"--run_dir={run_dir}", f"--quality_net={net}", *passthrough])
    with open(os.path.join(run_dir, runlog.QUALITY_DIR, net, runlog.QUALITY_HISTORY)) as f:
      seconds[net] = sum(json.loads(line)["seconds"] for line in f if line.strip())
  run(["--mode=eval", f"--run_dir={run_dir}", f"--aggregation={','.join(METHODS)}",
       *passthrough])
  with open(os.path.join(run_dir, runlog.METRICS)) as f:
    return json.load(f)["set_verification"], seconds


def _rows(report: dict) -> list[tuple[str, dict]]:
  rows = [(method, report["by_method"][method]) for method in METHODS]
  if "oracle_qanpp" in report:
    rows.append(("oracle (QAN++ pooling, q = -degradation)", report["oracle_qanpp"]))
  return rows


def main() -> None:
  own, passthrough = split_passthrough(sys.argv[1:])
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--run_dir", required=True, help="a finished --mode=fixed run")
  parser.add_argument("--label", required=True, help="the table's name for these sets")
  parser.add_argument("--seeds", default="", help="comma-separated --set_seed values: each "
                      "runs on its own copy of the embedder (RUN_sets_seed<k>); then the mean "
                      "and std over seeds. Empty: one run in RUN with the run's data seed")
  parser.add_argument("--json", default="", help="append the results to this JSON list")
  args = parser.parse_args(own)
  run_dir = os.path.abspath(args.run_dir)
  seeds = [int(k) for k in args.seeds.split(",") if k.strip()]
  results = []
  for seed in seeds or [None]:
    where = run_dir if seed is None else copy_embedder(run_dir, f"{run_dir}_sets_seed{seed}")
    extra = [] if seed is None else [f"--set_seed={seed}"]
    report, seconds = bench_one(where, passthrough + extra)
    results.append({"seed": seed, "run_dir": where, "seconds": seconds, "report": report})
    print(f"\n{args.label}{'' if seed is None else f' (set seed {seed})'}: "
          f"{report['num_sets']} held-out sets of {report['num_identities']} identities, "
          f"{report['num_frames']} frames; quality training {seconds['qan']:.0f} s (QAN), "
          f"{seconds['qanpp']:.0f} s (QAN++)")
    print("| sets | pooling | accuracy (10-fold) | TAR@FAR=1e-3 | TAR@FAR=1e-4 | ROC AUC |")
    print("|---|---|---|---|---|---|")
    for name, r in _rows(report):
      print(f"| {args.label} | {name} | {r['verification_accuracy']:.4f} +- "
            f"{r['verification_std']:.4f} | {r['tar_at_far_1e-3']:.4f} | "
            f"{r['tar_at_far_1e-4']:.4f} | {r['roc_auc']:.4f} |")
    for net, value in report.get("spearman_quality_vs_degradation", {}).items():
      print(f"Spearman({net} score, degradation level) = {value:+.3f}")
  if len(results) > 1:
    print(f"\n{args.label}, over set seeds {seeds} (mean +- std of the 10-fold accuracies):")
    for index, (name, _) in enumerate(_rows(results[0]["report"])):
      values = np.array([_rows(r["report"])[index][1]["verification_accuracy"] for r in results])
      print(f"  {name:<42} {values.mean():.4f} +- {values.std():.4f}   "
            + " ".join(f"{v:.4f}" for v in values))
    for net in results[0]["report"].get("spearman_quality_vs_degradation", {}):
      values = np.array([r["report"]["spearman_quality_vs_degradation"][net] for r in results])
      print(f"  Spearman({net}, degradation) {values.mean():+.3f} +- {values.std():.3f}")
  gains = np.array([r["report"]["by_method"]["qanpp"]["verification_accuracy"]
                    - r["report"]["by_method"]["mean"]["verification_accuracy"] for r in results])
  print(f"QAN++ - mean: {gains.mean():+.4f} ({', '.join(f'{g:+.4f}' for g in gains)}; "
        f"{'met' if gains.mean() > 0 else 'NOT met'}: QAN++ beats mean)")
  if args.json:
    previous = json.load(open(args.json)) if os.path.exists(args.json) else []
    previous.append({"label": args.label, "run_dir": run_dir, "flags": passthrough,
                     "results": results})
    with open(args.json, "w") as f:
      json.dump(previous, f, indent=2)


if __name__ == "__main__":
  main()
