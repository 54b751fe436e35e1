"""Joint vs single-aspect search at equal budget (the comprehensive search's claim).

    python bench/bench_comprehensive.py --flagfile=flags/comprehensive_synthetic.cfg \\
        --runs_root=runs/bench_comprehensive_synthetic --retrain_seeds=0,1
    python bench/bench_comprehensive.py --flagfile=flags/comprehensive_lfw_view1.cfg \\
        --runs_root=runs/bench_comprehensive_lfw --retrain_seeds=0

For every space of --spaces (comprehensive, arch_only, loss_only, data_only) one search with
the flagfile's settings (the same number of proxy runs: --search_epochs x
--controller_steps x --controller_samples draws), in RUNS_ROOT/<space>/search; then its
final_config.json retrained from scratch (--mode=fixed) once per retrain seed, in
RUNS_ROOT/<space>/retrain_s<seed>; and the untuned baseline (no cleaning, softmax, the
default architecture) trained the same way in RUNS_ROOT/baseline/. The data seed is fixed by
the flagfile (--data_seed), so every run sees the same data; the retrain seed changes
initialisation and shuffling. Finished steps are reused and interrupted ones resume.

Prints (and writes RUNS_ROOT/comprehensive_table.md and .json) per row: the recipe found,
distinct proxy runs and search time, and of the retrained networks the held-out verification
accuracy (mean +- std over retrain seeds; the mean 10-fold std too), TAR@FAR=1e-3, FLOPs, and
what the cleaning removed; with known noise also the cleaning's precision and recall
against it (the synthetic generator's label flips and outliers, --label_noise's flips on any
dataset: bench/bench_cleaning.py's removal_quality). Flags after `--` go to every run, e.g.
`-- --label_noise=0.2` (with a real --dataset), or `-- --cleaning_embeddings=TEACHER.jsonl`
to clean with a teacher instead of the searches' proxy.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from enas_face import runlog  # noqa: E402
from bench_cleaning import removal_quality  # noqa: E402
from passthrough import main_command, read_json, run_step, split_passthrough  # noqa: E402

SPACES = "comprehensive,arch_only,loss_only,data_only"
LABELS = {"baseline": "untuned baseline (no cleaning, softmax, default architecture)",
          "comprehensive": "(a) joint: cleaning + loss + architecture",
          "arch_only": "(b) architecture only (softmax, no cleaning)",
          "loss_only": "(c) loss only", "data_only": "(d) data cleaning only"}


def cleaning_quality(run_dir: str) -> dict:
  """Precision / recall of the removed training images (the run's cleaning_manifest.json)
  against the known noise of its data_report.json (bench_cleaning.removal_quality): the
  synthetic generator's wrong identities and outliers, --label_noise's flips on any dataset,
  or both together; every truth under cleaning_quality."""
  report = read_json(os.path.join(run_dir, runlog.DATA_REPORT), {})
  manifest = read_json(os.path.join(run_dir, runlog.CLEANING_MANIFEST))
  quality = removal_quality(report, [r["index"] for r in manifest["removed"]]) if manifest else {}
  if not quality:
    return {}
  truth = "all" if "all" in quality else next(iter(quality))
  return {"cleaning_truth": truth, "cleaning_precision": quality[truth]["precision"],
          "cleaning_recall": quality[truth]["recall"], "cleaning_quality": quality}


def row(space: str, root: str, seeds: list[int]) -> dict:
  folder = os.path.join(root, space)
  out = {"space": space, "label": LABELS[space]}
  if space != "baseline":
    summary = read_json(os.path.join(folder, "search", runlog.SEARCH_SUMMARY), {})
    final = read_json(os.path.join(folder, "search", runlog.FINAL_CONFIG), {})
    trials = runlog.read(os.path.join(folder, "search", runlog.TRIALS))
    out.update(recipe=final.get("description"), search_score=final.get("search_score"),
               proxy_runs=summary.get("rewarded_samples"), distinct_trials=len(trials),
               trial_seconds_mean=float(np.mean([t["train_seconds"] for t in trials
                                                  if not t.get("not_trained")] or [0.0])),
               untrainable_samples=sum(1 for t in trials if t.get("not_trained")))
  metrics = [read_json(os.path.join(folder, f"retrain_s{seed}", runlog.METRICS)) for seed in seeds]
  accuracy = [m["verification_accuracy"] for m in metrics]
  out.update(accuracy_mean=float(np.mean(accuracy)), accuracy_std=float(np.std(accuracy)),
             accuracies=accuracy, fold_std_mean=float(np.mean([m["verification_std"]
                                                                for m in metrics])),
             tar_far_1e3=float(np.mean([m["tar_at_far_1e-3"] for m in metrics])),
             flops=metrics[0]["flops"], params=metrics[0]["params"],
             removed_images=(metrics[0].get("cleaning") or {}).get("removed_images", 0),
             merged_pairs=(metrics[0].get("cleaning") or {}).get("merged_pairs", 0),
             **cleaning_quality(os.path.join(folder, f"retrain_s{seeds[0]}")))
  return out


def fmt(value, form="{:.4f}"):
  return "n/a" if value is None else form.format(value)


def table(rows: list[dict]) -> str:
  lines = ["| search (equal budget) | recipe found | proxy runs (distinct) | verification acc "
           "(mean +- std over seeds) | fold std | TAR@FAR=1e-3 | MFLOPs | removed images "
           "(precision / recall vs the known noise) |", "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    quality = (f" ({fmt(r.get('cleaning_precision'), '{:.2f}')} / "
               f"{fmt(r.get('cleaning_recall'), '{:.2f}')})" if "cleaning_precision" in r else "")
    lines.append(
        f"| {r['label']} | {(r.get('recipe') or 'default').replace('|', '/')} | "
        f"{r.get('proxy_runs', 0)} ({r.get('distinct_trials', 0)}) | "
        f"{r['accuracy_mean']:.4f} +- {r['accuracy_std']:.4f} | {r['fold_std_mean']:.4f} | "
        f"{r['tar_far_1e3']:.4f} | {r['flops'] / 1e6:.2f} | {r['removed_images']}{quality} |")
  return "\n".join(lines) + "\n"


def main() -> None:
  argv, extra = split_passthrough(sys.argv[1:])
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--flagfile", required=True)
  parser.add_argument("--runs_root", required=True)
  parser.add_argument("--spaces", default=SPACES)
  parser.add_argument("--retrain_seeds", default="0")
  args = parser.parse_args(argv)
  root = os.path.abspath(args.runs_root)
  seeds = [int(s) for s in args.retrain_seeds.split(",")]
  spaces = ["baseline", *args.spaces.split(",")]
  flagfile = f"--flagfile={os.path.abspath(args.flagfile)}"
  wall = {}
  for space in spaces:
    folder = os.path.join(root, space)
    seconds = 0.0
    if space == "baseline":
      arc = ["--search_space=arch_only"]
    else:
      search_dir = os.path.join(folder, "search")
      seconds += run_step(main_command(flagfile, "--mode=search", f"--search_space={space}",
                                       f"--run_dir={search_dir}", *extra),
                          os.path.join(search_dir, runlog.SEARCH_SUMMARY),
                          os.path.join(folder, "search.log"))
      arc = [f"--search_space={space}",
             f"--arc_file={os.path.join(search_dir, runlog.FINAL_CONFIG)}"]
    for seed in seeds:
      retrain = os.path.join(folder, f"retrain_s{seed}")
      seconds += run_step(main_command(flagfile, "--mode=fixed", *arc, f"--seed={seed}",
                                       f"--run_dir={retrain}", *extra),
                          os.path.join(retrain, runlog.METRICS),
                          os.path.join(folder, f"retrain_s{seed}.log"))
    wall[space] = seconds
  rows = [dict(row(space, root, seeds), wall_seconds_this_invocation=wall[space])
          for space in spaces]
  text = table(rows)
  runlog.write_text(os.path.join(root, "comprehensive_table.md"), text)
  runlog.write_json(os.path.join(root, "comprehensive_table.json"), rows)
  print(text)
  for r in rows:
    if "proxy_runs" in r:
      print(f"{r['space']}: {r['distinct_trials']} trials, {r['trial_seconds_mean']:.0f} s "
            f"training each (mean), {r['untrainable_samples']} untrainable; search score "
            f"{fmt(r['search_score'])}")


if __name__ == "__main__":
  main()
