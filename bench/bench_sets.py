"""Set-to-set verification with mean, best-frame, QAN and QAN++ pooling on one trained embedder.

    python bench/bench_sets.py --run_dir=RUN --label=NAME [--json=FILE] [-- flags for every run]

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

The README's table:
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
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.passthrough import split_passthrough  # pylint: disable=wrong-import-position

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


def main() -> None:
  own, passthrough = split_passthrough(sys.argv[1:])
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--run_dir", required=True, help="a finished --mode=fixed run")
  parser.add_argument("--label", required=True, help="the table's name for these sets")
  parser.add_argument("--json", default="", help="append the results to this JSON list")
  args = parser.parse_args(own)
  run_dir = os.path.abspath(args.run_dir)
  seconds = {}
  for net in ("qan", "qanpp"):
    seconds[net] = run(["--mode=quality", f"--run_dir={run_dir}", f"--quality_net={net}",
                        *passthrough])
  seconds["eval"] = run(["--mode=eval", f"--run_dir={run_dir}",
                         f"--aggregation={','.join(METHODS)}", *passthrough])
  with open(os.path.join(run_dir, "metrics.json")) as f:
    report = json.load(f)["set_verification"]
  for net in ("qan", "qanpp"):  # training time from the logs (a rerun reuses finished nets)
    with open(os.path.join(run_dir, "quality", net, "history.jsonl")) as f:
      seconds[f"{net}_training"] = sum(json.loads(line)["seconds"] for line in f if line.strip())
  print(f"\n{args.label}: {report['num_sets']} held-out sets of {report['num_identities']} "
        f"identities, {report['num_frames']} frames; quality training "
        f"{seconds['qan_training']:.0f} s (QAN), {seconds['qanpp_training']:.0f} s (QAN++)")
  print("| sets | pooling | accuracy (10-fold) | TAR@FAR=1e-3 | TAR@FAR=1e-4 | ROC AUC |")
  print("|---|---|---|---|---|---|")
  for method in METHODS:
    r = report["by_method"][method]
    print(f"| {args.label} | {method} | {r['verification_accuracy']:.4f} +- "
          f"{r['verification_std']:.4f} | {r['tar_at_far_1e-3']:.4f} | "
          f"{r['tar_at_far_1e-4']:.4f} | {r['roc_auc']:.4f} |")
  if "oracle_qanpp" in report:
    r = report["oracle_qanpp"]
    print(f"| {args.label} | oracle (QAN++ pooling, q = -degradation) | "
          f"{r['verification_accuracy']:.4f} +- {r['verification_std']:.4f} | "
          f"{r['tar_at_far_1e-3']:.4f} | {r['tar_at_far_1e-4']:.4f} | {r['roc_auc']:.4f} |")
  rho = report.get("spearman_quality_vs_degradation", {})
  for net, value in rho.items():
    print(f"Spearman({net} score, degradation level) = {value:+.3f}")
  gain = (report["by_method"]["qanpp"]["verification_accuracy"]
          - report["by_method"]["mean"]["verification_accuracy"])
  print(f"QAN++ - mean: {gain:+.4f} ({'met' if gain > 0 else 'NOT met'}: QAN++ beats mean)")
  if args.json:
    previous = json.load(open(args.json)) if os.path.exists(args.json) else []
    previous.append({"label": args.label, "run_dir": run_dir, "flags": passthrough,
                     "seconds": seconds, "report": report})
    with open(args.json, "w") as f:
      json.dump(previous, f, indent=2)


if __name__ == "__main__":
  main()
