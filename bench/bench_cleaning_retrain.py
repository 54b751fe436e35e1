"""What a cleaning buys after retraining: the same network and seeds trained on each cleaned set.

    # LFW View 1 with 20 % of the training labels flipped, cleaned three ways at 32x32
    # (docs/comprehensive-search.md "A teacher as the cleaning proxy" has the whole recipe)
    python bench/bench_cleaning_retrain.py --flagfile=flags/cleaning_retrain_lfw_view1.cfg \\
        --sets=none:runs/cleaning/set_none/records,dlib:runs/cleaning/set_dlib/records,\\
proxy:runs/cleaning/set_proxy/records --seeds=0,1 --runs_root=runs/cleaning_retrain

Each set NAME:RECORDS (tools/clean_dataset.py --write_records's folder) is trained with
`python -m enas_face.main --flagfile=F --mode=fixed --dataset=tfrecord:RECORDS --seed=S`,
flags after `--` appended, and evaluated on the flagfile's pairs. Every finished run is
recorded in --results (bench/data/cleaning_retrain_runs.jsonl, committed: a rerun, here or
on a new machine, reads the record instead of training again); with the set's
cleaning_manifest.json beside RECORDS, the row says how many training images it kept.
Prints and writes RUNS_ROOT/cleaning_retrain.md: verification accuracy mean +- std over the
seeds (std with ddof 0, as bench_distill.py), the mean 10-fold std and TAR@FAR=1e-3.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "bench")):
  if path not in sys.path:
    sys.path.insert(0, path)

import numpy as np  # noqa: E402

from enas_face import runlog  # noqa: E402
from passthrough import RunRecords, main_command, read_json, split_passthrough  # noqa: E402

RESULTS = os.path.join(ROOT, "bench", "data", "cleaning_retrain_runs.jsonl")


def parse_sets(text: str) -> dict[str, str]:
  """NAME:RECORDS,... -> {name: absolute records folder}; an error names the flag."""
  sets = {}
  for item in (part for part in text.split(",") if part):
    name, sep, records = item.partition(":")
    if not sep or not name or not records:
      raise SystemExit(f"error: --sets={text}: expected NAME:RECORDS_FOLDER items, got {item!r}")
    if not os.path.isdir(records):
      raise SystemExit(f"error: --sets: {records}: no such folder (tools/clean_dataset.py "
                       "--write_records writes OUTPUT_DIR/records)")
    sets[name] = os.path.abspath(records)
  if not sets:
    raise SystemExit("error: --sets is empty")
  return sets


def kept_images(records: str) -> int | None:
  """Training images the cleaning kept (the manifest beside the records), if known."""
  manifest = read_json(os.path.join(os.path.dirname(records), runlog.CLEANING_MANIFEST))
  return manifest.get("kept_images") if manifest else None


def run_summary(run_dir: str) -> dict:
  metrics = read_json(os.path.join(run_dir, runlog.METRICS))
  return {"verification_accuracy": float(metrics["verification_accuracy"]),
          "verification_std": float(metrics["verification_std"]),
          "tar_at_far_1e-3": float(metrics["tar_at_far_1e-3"])}


def set_row(name: str, records: list[dict], kept: int | None) -> dict:
  accuracy = [r["verification_accuracy"] for r in records]
  return {"set": name, "kept_train_images": kept, "accuracies": accuracy,
          "accuracy_mean": float(np.mean(accuracy)), "accuracy_std": float(np.std(accuracy)),
          "fold_std_mean": float(np.mean([r["verification_std"] for r in records])),
          "tar_far_1e3": float(np.mean([r["tar_at_far_1e-3"] for r in records])),
          "seeds": len(records)}


def table(rows: list[dict]) -> str:
  lines = ["| training set | training images kept | verification acc (mean +- std over seeds) "
           "| fold std | TAR@FAR=1e-3 |", "|---|---|---|---|---|"]
  for row in rows:
    kept = "" if row["kept_train_images"] is None else str(row["kept_train_images"])
    lines.append(f"| {row['set']} | {kept} | {row['accuracy_mean']:.4f} +- "
                 f"{row['accuracy_std']:.4f} ({row['seeds']} seeds) | {row['fold_std_mean']:.4f}"
                 f" | {row['tar_far_1e3']:.3f} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> None:
  own, extra = split_passthrough(list(sys.argv[1:] if argv is None else argv))
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--flagfile", required=True, help="the training recipe (its pairs too)")
  parser.add_argument("--sets", required=True, help="NAME:RECORDS_FOLDER,...")
  parser.add_argument("--seeds", default="0,1")
  parser.add_argument("--runs_root", default="runs/cleaning_retrain")
  parser.add_argument("--results", default=RESULTS)
  args = parser.parse_args(own)
  if not os.path.exists(args.flagfile):
    parser.error(f"--flagfile={args.flagfile}: no such file")
  sets, root = parse_sets(args.sets), os.path.abspath(args.runs_root)
  flagfile = f"--flagfile={os.path.abspath(args.flagfile)}"
  records = RunRecords(args.results, roots=(root, *{os.path.dirname(os.path.dirname(r))
                                                     for r in sets.values()}))
  rows = []
  for name, folder in sets.items():
    done = []
    for seed in (int(s) for s in args.seeds.split(",")):
      run_dir = os.path.join(root, f"{name}_s{seed}")
      command = main_command(flagfile, "--mode=fixed", f"--dataset=tfrecord:{folder}",
                             f"--seed={seed}", f"--run_dir={run_dir}", *extra)
      done.append(records.summarised(command, os.path.join(run_dir, runlog.METRICS),
                                     os.path.join(root, "logs", f"{name}_s{seed}.log"),
                                     run_summary, f"{name}_s{seed}"))
    rows.append(set_row(name, done, kept_images(folder)))
  text = table(rows)
  os.makedirs(root, exist_ok=True)
  runlog.write_text(os.path.join(root, "cleaning_retrain.md"), text)
  runlog.write_json(os.path.join(root, "cleaning_retrain.json"), {"rows": rows, "sets": sets,
                                                                  "flagfile": args.flagfile})
  print(text)


if __name__ == "__main__":
  main()
