"""A face-NAS table (NAS-Bench style): architectures of a FLOPs band trained once, kept as JSON.

    nice python bench/bench_nas_table.py build --hours=3      # grows the table; rerun to resume
    (two side by side on two cores: add --threads=1 --shard=0/2, and --shard=1/2 to the other)
    python bench/bench_nas_table.py collect                  # -> bench/data/nas_table.json
    python bench/bench_nas_table.py build --only=a007,a000 --seeds=2   # a third seed ...
    python bench/bench_nas_table.py compare --only=a007,a000 --seeds=0,1,2   # ... compared

Space: the MobileFaceNet widths/depths space (`--search_space=mobilefacenet`: stem, per
stage width, expansion and depth, head width; 8 width ratios 0.3..1.0, depths up to 5, 7,
3), at 32x32 on the synthetic faces, trained by `flags/nas_table_synthetic.cfg`. Why this
space: its choices move FLOPs over a 6x range and change the network's shape (depth vs
width per stage), where the ENAS macro space at fixed width ended within 0.02 of itself.

Band: FLOPs in [0.8 T, T], T = --target_mflops (default 12: the median FLOPs of a
uniform sample of the space at 32x32). The plan (WORK_DIR/plan.json, drawn once from
--plan_seed) lists, in order:
  baselines  MobileFaceNet width-scaled to T: every width ratio equal to r, full depths,
             the largest r of the grid whose FLOPs <= T (the paper's shape at this budget);
             and --uniform "uniform" architectures (one ratio for all widths, any depths)
             of the band, evenly spaced in FLOPs;
  sampled    --archs architectures drawn uniformly from the space, kept if in the band
             (rejection sampling: the uniform distribution restricted to the band).
Each is trained with every --seeds seed (`python -m enas_face.main --mode=fixed`, one run
folder per architecture and seed, WORK_DIR/runs/<id>_s<seed>); a run with metrics.json is
done, an interrupted one resumes from its checkpoint. `build` works through the plan
seed-major (every architecture at seed 0 first) until --hours have passed. Each finished run
is appended to --results (bench/data/nas_table_runs.jsonl, committed with the code): the run
folders are scratch, the results file is the table's memory, so a fresh clone on another
machine goes on where the last one stopped (the plan is redrawn from --plan_seed and checked
against the recorded encodings).

`collect` writes the table: per architecture its encoding, description, FLOPs, params,
TFLite batch-1 latency (LiteRT, 1 thread, median of 20), jacob_cov at initialisation per
seed (search/zero_cost.py, on the first 64 training images), and per seed the final
verification accuracy (6000 pairs, 10-fold), and per epoch the training loss, the
validation classification accuracy and the verification accuracy (the low-fidelity
columns), with the exact flags and the code version.
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

from bench.passthrough import code_version, main_command, read_flagfile  # noqa: E402
from enas_face.config import ModelConfig  # noqa: E402
from enas_face import runlog  # noqa: E402
from enas_face.spaces import mobilefacenet  # noqa: E402

FLAGFILE = os.path.join(ROOT, "flags", "nas_table_synthetic.cfg")
TABLE = os.path.join(ROOT, "bench", "data", "nas_table.json")
RESULTS = os.path.join(ROOT, "bench", "data", "nas_table_runs.jsonl")
FORMAT_VERSION = 1


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("command", choices=("plan", "build", "collect", "compare"))
  parser.add_argument("--work_dir", default="runs/nas_table")
  parser.add_argument("--table", default=TABLE)
  parser.add_argument("--results", default=RESULTS,
                      help="one JSON line per finished run (committed: a new machine resumes "
                           "the table from it, without the run folders)")
  parser.add_argument("--target_mflops", type=float, default=12.0)
  parser.add_argument("--band_low", type=float, default=0.8, help="band: [low T, T]")
  parser.add_argument("--archs", type=int, default=64, help="sampled architectures")
  parser.add_argument("--uniform", type=int, default=8,
                      help="uniform-width baselines, evenly spaced in FLOPs over the band")
  parser.add_argument("--seeds", default="0,1")
  parser.add_argument("--plan_seed", type=int, default=0)
  parser.add_argument("--hours", type=float, default=1.0, help="build: stop after this long")
  parser.add_argument("--latency_repeats", type=int, default=20)
  parser.add_argument("--shard", default="0/1",
                      help="build: i/n takes the architectures whose number is i mod n, so n "
                           "builds can run side by side, started at any time (e.g. 0/2 and 1/2 "
                           "with --threads=1)")
  parser.add_argument("--only", default="",
                      help="build, compare: only these architecture ids (comma-separated)")
  parser.add_argument("--threads", type=int, default=0,
                      help="build: TensorFlow intra-op threads of each run (0: TF's default)")
  return parser.parse_args(argv)


def model_config() -> ModelConfig:
  """The ModelConfig of the flagfile's network (what FLOPs and params are counted on)."""
  flags = read_flagfile(FLAGFILE)
  return ModelConfig(image_size=int(flags["image_size"]), search_space="mobilefacenet",
                     embedding_dim=int(flags["embedding_dim"]))


def make_plan(args) -> dict:
  """The architectures of the table (see the module doc), as encodings, with their roles."""
  space, config = mobilefacenet.MobileFaceNetSpace(), model_config()
  target = args.target_mflops * 1e6
  low = args.band_low * target
  in_band = lambda sample: low <= space.flops(config, sample) <= target  # noqa: E731
  decisions = space.decisions(config)
  width_index = [i for i, d in enumerate(decisions) if d.group == "width"]
  depth_index = [i for i, d in enumerate(decisions) if d.group != "width"]
  entries, seen = [], set()

  def add(encoding, role):
    key = tuple(int(v) for v in encoding)
    if key not in seen:
      seen.add(key)
      entries.append({"id": f"a{len(entries):03d}", "encoding": list(key), "role": role})

  full = space.encode(space.default(config))
  for ratio in reversed(range(decisions[0].num_choices)):  # MobileFaceNet scaled to T
    encoding = list(full)
    for i in width_index:
      encoding[i] = ratio
    if space.flops(config, space.decode(encoding, config)) <= target:
      add(encoding, "mobilefacenet_scaled")
      break
  uniform = []  # one width ratio for every width, any depths, in the band
  for ratio in range(decisions[0].num_choices):
    for depths in np.ndindex(*[decisions[i].num_choices for i in depth_index]):
      encoding = list(full)
      for i in width_index:
        encoding[i] = ratio
      for i, d in zip(depth_index, depths):
        encoding[i] = int(d)
      sample = space.decode(encoding, config)
      if in_band(sample):
        uniform.append((space.flops(config, sample), encoding))
  uniform.sort()
  for k in np.linspace(0, len(uniform) - 1, min(args.uniform, len(uniform))).round():
    add(uniform[int(k)][1], "uniform")
  rng = np.random.default_rng(args.plan_seed)
  sampled = 0
  while sampled < args.archs:
    sample = space.sample_uniform(config, rng)
    if in_band(sample):
      before = len(entries)
      add(space.encode(sample), "sampled")
      sampled += len(entries) > before
  for entry in entries:
    sample = space.decode(entry["encoding"], config)
    entry.update(description=space.describe(sample), flops=int(space.flops(config, sample)),
                 params=int(space.params(config, sample)))
  return {"space": "mobilefacenet", "target_flops": target, "band": [low, target],
          "plan_seed": args.plan_seed, "architectures": entries}


def load_plan(args) -> dict:
  path = os.path.join(args.work_dir, "plan.json")
  plan = runlog.read_json(path)
  if plan is None:
    os.makedirs(args.work_dir, exist_ok=True)
    plan = make_plan(args)
    runlog.write_json(path, plan)
  elif (plan["target_flops"], plan["plan_seed"]) != (args.target_mflops * 1e6, args.plan_seed):
    sys.exit(f"error: {path} was planned with T = {plan['target_flops'] / 1e6:g} MFLOPs and "
             f"plan seed {plan['plan_seed']}; use another --work_dir")
  return plan


def run_dir(args, entry: dict, seed: int) -> str:
  return os.path.join(args.work_dir, "runs", f"{entry['id']}_s{seed}")


def build(args, plan: dict) -> None:
  seeds = [int(s) for s in args.seeds.split(",")]
  deadline = time.time() + 3600 * args.hours
  space = mobilefacenet.MobileFaceNetSpace()
  os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
  results = recorded_runs(args, plan)
  for entry in plan["architectures"]:  # finished in a run folder before it was recorded
    for seed in seeds:
      if (entry["id"], seed) not in results:
        record = run_record(entry, seed, run_dir(args, entry, seed))
        if record is not None:
          runlog.append(args.results, [record])
          results[(entry["id"], seed)] = record
  todo = [(entry, seed) for seed in seeds for entry in selected(args, plan)
          if (entry["id"], seed) not in results]
  shard, shards = (int(part) for part in args.shard.split("/"))
  mine = [(entry, seed) for entry, seed in todo if shard_of(entry) % shards == shard]
  print(f"{len(todo)} of {len(seeds) * len(plan['architectures'])} runs to do"
        + (f"; shard {shard}/{shards} takes {len(mine)}" if shards > 1 else ""), flush=True)
  todo = mine
  env = dict(os.environ)
  if args.threads:
    env.update(TF_NUM_INTRAOP_THREADS=str(args.threads), TF_NUM_INTEROP_THREADS="1",
               OMP_NUM_THREADS=str(args.threads))
  for done, (entry, seed) in enumerate(todo):
    if time.time() > deadline:
      print(f"--hours={args.hours} reached: {done} runs this time, {len(todo) - done} left; "
            "rerun to go on", flush=True)
      return
    folder = run_dir(args, entry, seed)
    os.makedirs(folder, exist_ok=True)
    arc = space.to_string(space.decode(entry["encoding"], model_config()))
    command = main_command(f"--flagfile={FLAGFILE}", f"--run_dir={folder}", f"--seed={seed}",
                           f"--arc={arc}")
    tic = time.time()
    with open(os.path.join(folder, "bench.log"), "a") as log:
      code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    print(f"{entry['id']} seed {seed} ({entry['role']}, {entry['flops'] / 1e6:.2f} MFLOPs): "
          f"{'done' if code == 0 else f'exit {code}'} in {time.time() - tic:.0f} s", flush=True)
    if code != 0:
      sys.exit(f"error: {folder}: the run failed (exit {code}); see {folder}/bench.log")
    runlog.append(args.results, [run_record(entry, seed, folder)])


def shard_of(entry: dict) -> int:
  """The architecture's number in the plan (a007 -> 7): shard i of n takes the architectures
  whose number is i mod n, whatever is left to do, so shards started at different times
  never share a run."""
  return int(entry["id"][1:])


def run_record(entry: dict, seed: int, folder: str) -> dict | None:
  """What the table keeps of a finished run (None if `folder` holds no finished run): the
  final verification accuracy (mean and 10-fold std) and per epoch the training loss, the
  training and validation classification accuracy and the verification accuracy."""
  metrics = runlog.read_json(os.path.join(folder, runlog.METRICS))
  if metrics is None:
    return None
  history = runlog.read(os.path.join(folder, runlog.TRAIN_HISTORY))
  return {"id": entry["id"], "seed": seed, "encoding": entry["encoding"],
          "verification_accuracy": metrics["verification_accuracy"],
          "verification_std": metrics["verification_std"],
          "epochs": [{key: h.get(key) for key in
                      ("epoch", "loss", "train_accuracy", "val_accuracy",
                       "pairs/heldout/verification_accuracy", "seconds")}
                     for h in history]}


def finished_run(args, results: dict, entry: dict, seed: int) -> dict | None:
  """The run's record: from --results (recorded_runs), else from its finished folder, else
  None."""
  return results.get((entry["id"], seed)) or run_record(entry, seed, run_dir(args, entry, seed))


def recorded_runs(args, plan: dict) -> dict:
  """{(id, seed): record} of --results; a record whose encoding is not its plan entry's is an
  error (the file was built from another plan: another --plan_seed or --target_mflops)."""
  encodings = {entry["id"]: entry["encoding"] for entry in plan["architectures"]}
  runs = {}
  for record in runlog.read(args.results):
    if encodings.get(record["id"]) != record["encoding"]:
      sys.exit(f"error: {args.results}: run {record['id']} seed {record['seed']} has "
               f"encoding {record['encoding']}, the plan {encodings.get(record['id'])}: the "
               "file belongs to another plan (--plan_seed, --target_mflops); use another "
               "--results")
    runs[(record["id"], int(record["seed"]))] = record
  return runs


def selected(args, plan: dict) -> list[dict]:
  """The plan's architectures, or those named by --only (an unknown id is an error)."""
  if not args.only:
    return plan["architectures"]
  ids = args.only.split(",")
  known = {entry["id"]: entry for entry in plan["architectures"]}
  missing = [i for i in ids if i not in known]
  if missing:
    sys.exit(f"error: --only: no architecture {', '.join(missing)} in the plan")
  return [known[i] for i in ids]


def compare(args, plan: dict) -> dict:
  """The final verification accuracy of the --only architectures over --seeds (e.g. a
  strategy's pick against MobileFaceNet scaled to the band, retrained with 3 seeds):
  per seed, mean +- std (ddof 1); written next to the table (nas_table_retrain.json)."""
  seeds = [int(s) for s in args.seeds.split(",")]
  out = []
  print("| id | role | MFLOPs | params | accuracy per seed | mean +- std |")
  print("|---|---|---|---|---|---|")
  results = recorded_runs(args, plan)
  for entry in selected(args, plan):
    accuracies = []
    for seed in seeds:
      record = finished_run(args, results, entry, seed)
      if record is None:
        sys.exit(f"error: {entry['id']} seed {seed} is neither in {args.results} nor finished "
                 f"in {run_dir(args, entry, seed)}: build it first "
                 f"(build --only={entry['id']} --seeds={seed})")
      accuracies.append(float(record["verification_accuracy"]))
    row = {"id": entry["id"], "role": entry["role"], "encoding": entry["encoding"],
           "flops": entry["flops"], "params": entry.get("params"), "seeds": seeds,
           "accuracies": accuracies, "mean": float(np.mean(accuracies)),
           "std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0}
    out.append(row)
    print(f"| {row['id']} | {row['role']} | {row['flops'] / 1e6:.2f} | {row['params']} | "
          f"{' / '.join(f'{a:.4f}' for a in accuracies)} | {row['mean']:.4f} +- "
          f"{row['std']:.4f} |")
  path = os.path.join(os.path.dirname(args.table), "nas_table_retrain.json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  runlog.write_json(path, {"flags": read_flagfile(FLAGFILE), "architectures": out})
  print(f"-> {path}")
  return {"architectures": out}


def tflite_latency_ms(encoding, repeats: int) -> float:
  from enas_face.costs import tflite
  config = model_config()
  space = mobilefacenet.MobileFaceNetSpace()
  return float(tflite.TFLiteLatency(config, warmup=3, repeats=repeats)(
      space.decode(encoding, config)))


JACOB_COV_IMAGES = 64  # training images of the flagfile's data (the first, in order)


def jacob_cov_images() -> np.ndarray:
  """The first JACOB_COV_IMAGES training images of the flagfile's data, float32 in [0, 255]."""
  from absl import flags as absl_flags
  from enas_face import flags as enas_flags
  from enas_face.data import load_dataset
  values = absl_flags.FLAGS
  values.unparse_flags()
  values(["bench_nas_table", f"--flagfile={FLAGFILE}", "--run_dir=/tmp/unused"])
  config = enas_flags.config_from_flags(values)
  return load_dataset(config.data).train.images[:JACOB_COV_IMAGES].astype(np.float32)


def jacob_cov(encoding, seed: int, images: np.ndarray) -> float:
  """search.zero_cost.jacob_cov of the architecture initialised with `seed` (as its run)."""
  import keras
  from enas_face.models import builders
  from enas_face.search import zero_cost
  config = model_config()
  keras.utils.set_random_seed(seed)
  model = builders.build_fixed(config, mobilefacenet.MobileFaceNetSpace().decode(encoding,
                                                                                   config))
  return zero_cost.jacob_cov(model, images)


def collect(args, plan: dict) -> dict:
  seeds = [int(s) for s in args.seeds.split(",")]
  previous = runlog.read_json(args.table, default={}) or {}
  latencies = {a["id"]: a.get("tflite_latency_ms") for a in previous.get("architectures", [])}
  covs = {a["id"]: a.get("jacob_cov") for a in previous.get("architectures", [])}
  images = None
  rows = []
  results = recorded_runs(args, plan)
  for entry in plan["architectures"]:
    row = dict(entry, seeds={})
    for seed in seeds:
      record = finished_run(args, results, entry, seed)
      if record is not None:
        row["seeds"][str(seed)] = {key: record[key] for key in
                                   ("verification_accuracy", "verification_std", "epochs")}
    if not row["seeds"]:
      continue
    row["tflite_latency_ms"] = latencies.get(entry["id"]) or tflite_latency_ms(
        entry["encoding"], args.latency_repeats)
    if not covs.get(entry["id"]):
      images = jacob_cov_images() if images is None else images
      covs[entry["id"]] = {str(seed): jacob_cov(entry["encoding"], seed, images)
                           for seed in seeds}
    row["jacob_cov"] = covs[entry["id"]]
    rows.append(row)
  with open(FLAGFILE) as f:
    flags = [line.strip() for line in f if line.startswith("--")]
  table = {"format": "enas_face_nas_table", "version": FORMAT_VERSION, "code_version": code_version(),
           "flags": flags, "space": plan["space"], "target_flops": plan["target_flops"],
           "band": plan["band"], "plan_seed": plan["plan_seed"], "seeds": seeds,
           "decision_sizes": [d.num_choices for d in mobilefacenet.MobileFaceNetSpace()
                              .decisions(model_config())],
           "planned": len(plan["architectures"]), "architectures": rows}
  os.makedirs(os.path.dirname(args.table), exist_ok=True)
  runlog.write_json(args.table, table)
  done = sum(len(r["seeds"]) for r in rows)
  print(f"{args.table}: {len(rows)} architectures, {done} runs "
        f"(of {len(plan['architectures'])} x {len(seeds)} planned)")
  return table


def main(argv=None) -> None:
  args = parse_args(argv)
  plan = load_plan(args)
  roles = {}
  for entry in plan["architectures"]:
    roles[entry["role"]] = roles.get(entry["role"], 0) + 1
  print(f"plan: {len(plan['architectures'])} architectures in [{plan['band'][0] / 1e6:.1f}, "
        f"{plan['band'][1] / 1e6:.1f}] MFLOPs: {roles}", flush=True)
  if args.command == "build":
    build(args, plan)
  elif args.command == "collect":
    collect(args, plan)
  elif args.command == "compare":
    compare(args, plan)


if __name__ == "__main__":
  main()
