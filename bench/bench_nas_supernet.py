"""The one-shot supernet's scores of the face-NAS table's architectures, ENAS's and TuNAS's way.

    python bench/bench_nas_supernet.py train --recipe=enas --work_dir=runs/nas_supernet
    python bench/bench_nas_supernet.py train --recipe=tunas --work_dir=runs/nas_supernet
    python bench/bench_nas_supernet.py train --recipe=enas_taken --work_dir=runs/nas_supernet
    python bench/bench_nas_supernet.py score --table=bench/data/nas_table.json \\
        --work_dir=runs/nas_supernet        # -> bench/data/nas_supernet_scores.json

train: one one-shot search on the MobileFaceNet supernet over the table's space and data,
`python -m enas_face.main --flagfile=flags/nas_table_supernet_<recipe>.cfg
--run_dir=WORK_DIR/<recipe>` (enas: the LSTM controller from the first epoch; tunas: the
categorical policy, controller and path dropout warm-up, absolute-value reward; enas_taken:
enas with --shared_update=taken, untaken blocks and width rows left alone; the flagfiles say
what each sets). Rerun the same command to resume: the search goes on after
its last finished epoch; a finished one is left alone. Flags after `--` go to the search.

score: every architecture of --table (bench_nas_table.py's table, or its plan.json while the
table is being built: scores without the tau) scored with each recipe's shared weights
(enas_face/search/supernet_score.py): --metric=verification is the 6000 evaluation pairs'
10-fold accuracy (the table's stand-alone metric, without its test-time flip), reward the
search's own reward metric; BatchNorm on batch statistics (the search's scores) and
recalibrated per architecture on --recalibration_images training images (--bn). Written to
--out keyed by encoding, then recipe, then BN mode, after every architecture; a rerun keeps
the scores made from the same checkpoint. With a table (every seed trained): Kendall tau
(scipy.stats.kendalltau, tau-b) of each (recipe, BN) score against the mean stand-alone
verification accuracy, beside the tau between two seeds (the noise ceiling).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from bench.passthrough import code_version, main_command, split_passthrough  # noqa: E402
from enas_face import runlog  # noqa: E402

RECIPES = ("enas", "tunas", "enas_taken")
SCORES = os.path.join(ROOT, "bench", "data", "nas_supernet_scores.json")
TABLE = os.path.join(ROOT, "bench", "data", "nas_table.json")
FORMAT_VERSION = 1
# Flags of the table's recipe that must equal the search run's (same data, same networks).
SAME_AS_TABLE = {"image_size": ("model", "image_size"), "embedding_dim": ("model", "embedding_dim"),
                 "search_space": ("model", "search_space"),
                 "width_multiplier": ("model", "width_multiplier"),
                 "synthetic_identities": ("data", "synthetic_identities"),
                 "synthetic_images_per_identity": ("data", "synthetic_images_per_identity"),
                 "synthetic_heldout_identities": ("data", "synthetic_heldout_identities"),
                 "num_pairs": ("data", "num_pairs"), "data_seed": ("data", "seed")}


def flagfile(recipe: str) -> str:
  return os.path.join(ROOT, "flags", f"nas_table_supernet_{recipe}.cfg")


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
  own, passthrough = split_passthrough(list(sys.argv[1:] if argv is None else argv))
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("command", choices=("train", "score"))
  parser.add_argument("--recipe", choices=RECIPES, help="train: which supernet")
  parser.add_argument("--work_dir", default="runs/nas_supernet",
                      help="one search run folder per recipe: WORK_DIR/<recipe>")
  parser.add_argument("--threads", type=int, default=0,
                      help="train: TensorFlow intra-op threads (0: TF's default)")
  parser.add_argument("--table", default=TABLE,
                      help="score: bench_nas_table.py's table, or its plan.json")
  parser.add_argument("--out", default=SCORES)
  parser.add_argument("--recipes", default=",".join(RECIPES),
                      help="score: the recipes whose runs score (a missing run is skipped)")
  parser.add_argument("--metric", choices=("verification", "reward"), default="verification")
  parser.add_argument("--bn", default="batch,recalibrate",
                      help="score: BatchNorm modes, comma-separated (batch, recalibrate)")
  parser.add_argument("--recalibration_images", type=int, default=256)
  args = parser.parse_args(own)
  if args.command == "train" and not args.recipe:
    parser.error(f"train needs --recipe={'|'.join(RECIPES)}")
  return args, passthrough


def train(args, passthrough: list[str]) -> None:
  run_dir = os.path.join(os.path.abspath(args.work_dir), args.recipe)
  if os.path.exists(os.path.join(run_dir, runlog.SEARCH_SUMMARY)):
    print(f"{run_dir}: finished (search_summary.json); nothing to do")
    return
  os.makedirs(run_dir, exist_ok=True)
  command = main_command(f"--flagfile={flagfile(args.recipe)}", f"--run_dir={run_dir}",
                         *passthrough)
  env = dict(os.environ)
  if args.threads:
    env.update(TF_NUM_INTRAOP_THREADS=str(args.threads), TF_NUM_INTEROP_THREADS="1",
               OMP_NUM_THREADS=str(args.threads))
  print(" ".join(command), flush=True)
  tic = time.time()
  with open(os.path.join(run_dir, "bench.log"), "a") as log:
    code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
  if code:
    sys.exit(f"error: the search failed (exit {code}); see {run_dir}/bench.log; rerun to resume")
  print(f"{run_dir}: done in {time.time() - tic:.0f} s")


def encoding_key(encoding) -> str:
  return " ".join(str(int(v)) for v in encoding)


def check_same_recipe(table: dict, config, recipe: str) -> None:
  """The search ran on the table's data and networks (the flags in SAME_AS_TABLE)."""
  given = {}
  for line in table.get("flags", []):
    if line.startswith("--") and "=" in line:
      name, value = line[2:].split("=", 1)
      given[name] = value
  for name, (section, field) in SAME_AS_TABLE.items():
    if name not in given:
      continue
    theirs = getattr(getattr(config, section), field)
    if str(theirs) != given[name] and not _same_number(theirs, given[name]):
      sys.exit(f"error: the {recipe} search ran with --{name}={theirs}, the table with "
               f"--{name}={given[name]}: its scores would not describe the table's networks")


def _same_number(a, b) -> bool:
  try:
    return float(a) == float(b)
  except (TypeError, ValueError):
    return False


def kendall_rows(table: dict, scores: dict, recipes, bn_modes) -> list[dict]:
  """Kendall tau of each (recipe, bn) score against the table's mean accuracy, and the seed
  ceiling; [] when the table has no stand-alone accuracies (a plan)."""
  from bench.bench_nas_replay import Table  # pylint: disable=import-outside-toplevel
  if not table.get("seeds") or not any(row.get("seeds") for row in table["architectures"]):
    return []
  try:
    standalone = Table(table)
  except ValueError as error:
    print(f"no Kendall tau: {error}")
    return []
  rows = []
  if standalone.accuracy.shape[1] > 1:
    rows.append({"score": "seed 0 vs seed 1 (ceiling)", "architectures": len(standalone.rows),
                 "tau": float(stats.kendalltau(standalone.accuracy[:, 0],
                                               standalone.accuracy[:, 1])[0])})
  for recipe in recipes:
    for bn in bn_modes:
      pairs = [(scores.get(encoding_key(row["encoding"]), {}).get(recipe, {}).get(bn), mean)
               for row, mean in zip(standalone.rows, standalone.mean)]
      pairs = [(s, m) for s, m in pairs if s is not None]
      if len(pairs) < 2:
        continue
      values, means = np.array(pairs).T
      rows.append({"score": f"supernet {recipe}, BN {bn}", "recipe": recipe, "bn": bn,
                   "architectures": len(pairs), "tau": float(stats.kendalltau(values, means)[0])})
  return rows


def score(args) -> dict:
  from enas_face.search import supernet_score  # pylint: disable=import-outside-toplevel
  table = runlog.read_json(args.table)
  if table is None:
    sys.exit(f"error: --table={args.table}: no such file (bench_nas_table.py collect writes "
             "it; its WORK_DIR/plan.json lists the architectures meanwhile)")
  bn_modes = [b for b in args.bn.split(",") if b]
  unknown = sorted(set(bn_modes) - set(supernet_score.BN_MODES))
  if unknown:
    sys.exit(f"error: --bn={args.bn}: unknown {unknown}; choose from {supernet_score.BN_MODES}")
  previous = runlog.read_json(args.out, default={}) or {}
  if (previous.get("metric"), previous.get("recalibration_images")) != (
      args.metric, args.recalibration_images):
    previous = {}  # other scores: start afresh
  out = {"format": "enas_face_nas_supernet_scores", "version": FORMAT_VERSION,
         "code_version": code_version(),
         "table": os.path.abspath(args.table), "metric": args.metric,
         "recalibration_images": args.recalibration_images,
         "runs": dict(previous.get("runs", {})),
         "scores": {key: dict(by_recipe) for key, by_recipe in previous.get("scores", {}).items()}}
  for recipe in [r for r in args.recipes.split(",") if r]:
    run_dir = os.path.join(os.path.abspath(args.work_dir), recipe)
    if not os.path.isdir(run_dir):
      print(f"{recipe}: no run folder {run_dir} (bench_nas_supernet.py train --recipe={recipe}); "
            "skipped")
      continue
    scorer = supernet_score.SupernetScorer(run_dir, args.recalibration_images)
    check_same_recipe(table, scorer.config, recipe)
    run = {"run_dir": run_dir, "checkpoint": os.path.basename(scorer.checkpoint),
           "epochs_trained": scorer.epochs_trained, "search_epochs": scorer.config.search.epochs,
           "controller": scorer.config.search.controller}
    if out["runs"].get(recipe) != run:  # another checkpoint: its old scores go
      for by_recipe in out["scores"].values():
        by_recipe.pop(recipe, None)
    out["runs"][recipe] = run
    tic, computed = time.time(), 0
    for entry in table["architectures"]:
      values = out["scores"].setdefault(encoding_key(entry["encoding"]), {}).setdefault(recipe, {})
      missing = [bn for bn in bn_modes if bn not in values]
      for bn in missing:
        values[bn] = scorer.score(entry["encoding"], args.metric, bn)
      if missing:
        computed += 1
        runlog.write_json(args.out, out)
    print(f"{recipe}: {len(table['architectures'])} architectures ({computed} scored now) with "
          f"{run['checkpoint']} ({run['epochs_trained']} of {run['search_epochs']} epochs) in "
          f"{time.time() - tic:.0f} s", flush=True)
  out["kendall_tau"] = kendall_rows(table, out["scores"], sorted(out["runs"]), bn_modes)
  runlog.write_json(args.out, out)
  print(f"{args.out}: {len(out['scores'])} architectures, recipes {sorted(out['runs'])}")
  if out["kendall_tau"]:
    print(f"\n| score ({args.metric}) | architectures | Kendall tau vs stand-alone accuracy |")
    print("|---|---|---|")
    for row in out["kendall_tau"]:
      print(f"| {row['score']} | {row['architectures']} | {row['tau']:.3f} |")
  else:
    print("no stand-alone accuracies in --table (a plan): scores only, no Kendall tau")
  return out


def main(argv=None) -> None:
  args, passthrough = parse_args(argv)
  if args.command == "train":
    train(args, passthrough)
  else:
    if passthrough:
      sys.exit("error: flags after -- go to `train` only")
    score(args)


if __name__ == "__main__":
  main()
