"""Teacher-guided width/depth search vs its alternatives at one FLOPs budget (issue 13).

    python bench/bench_teacher.py --flagfile=flags/teacher_nas_synthetic.cfg \\
        --runs_root=runs/bench_teacher_synthetic --seeds=0,1
    python bench/bench_teacher.py --flagfile=flags/teacher_nas_lfw_view1.cfg \\
        --runs_root=runs/bench_teacher_lfw --seeds=0,1
    # a strong external teacher: dlib's embeddings file (tools/teacher_embeddings.py)
    python bench/bench_teacher.py --flagfile=flags/teacher_nas_lfw_view1.cfg \\
        --runs_root=runs/bench_teacher_lfw_dlib --teacher=runs/teachers/lfw_view1_dlib.jsonl \\
        --budget_flops=19.86e6 --seeds=0,1

The flagfile holds the data, input size, embedding and optimiser flags shared by every run.
Steps (each in RUNS_ROOT/<step>; finished steps are reused, interrupted ones resume; each
finished step's small result files go to --results, bench/data/teacher_runs.jsonl, committed,
so a new machine restores them instead of running the step again):
  teacher        --mode=fixed on the ENAS macro default architecture at --teacher_flags
                 (wide: --base_filters=48), --teacher_epochs;
  budget         T = --budget_fraction x the teacher's FLOPs;
  search_teacher --search_strategy=differentiable on the mobilefacenet supernet
                 (--supernet_width) under T, distilling from the teacher;
  search_plain   the same search without the teacher (TAS-like);
                 both searches also take --search_flags (default --arch_lr=0.05: TAS's 1e-3
                 is meant for hundreds of epochs; in 8 epochs of 10 steps the probabilities stay
                 within 0.122-0.128 of uniform, measured);
With --teacher (an external teacher: a teacher embeddings .jsonl such as dlib's, a SavedModel
or an .onnx) no teacher is trained: its row is its own verification of the pairs
(--mode=evaluate_teacher), T is --budget_flops, (c) is left out (no architecture to scale)
and the distillation defaults to the embedding and relational terms (no KL: no logits).
Then, once per seed of --seeds (initialisation and shuffling; the data are fixed):
  (a) search_teacher's argmax retrained with --distill_from=teacher (embedding cosine +
      KL, --distill_flags);
  (b) search_plain's argmax retrained without distillation;
  (c) the teacher's architecture with --base_filters scaled to T (the even value closest);
  (d) (a)'s architecture retrained without distillation;
  (e) MobileFaceNet (full depth) with --width_multiplier scaled to T (closest 0.01).
Then batch-1 latency of every network, measured side by side in this process (rounds of
interleaved tf.function calls, one TF thread, median).

Prints (and writes RUNS_ROOT/teacher_table.md and .json) per row: held-out verification
accuracy, mean +- std over seeds, and the mean 10-fold std; TAR@FAR=1e-3; FLOPs; parameters;
latency. Flags after `--` go to every run.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from enas_face import runlog  # noqa: E402
from enas_face.config import RunConfig  # noqa: E402
from enas_face import spaces  # noqa: E402
from passthrough import RunRecords, main_command, read_json, split_passthrough  # noqa: E402

RESULTS = os.path.join(ROOT, "bench", "data", "teacher_runs.jsonl")
# What a finished step leaves that the table reads (kept in --results, restored on a new machine).
KEEP = (runlog.METRICS, runlog.CONFIG, runlog.TEACHER_METRICS, runlog.SEARCH_SUMMARY,
        runlog.ARCS_RANKED, runlog.DISTRIBUTIONS)

RUN_DISTILL = "--distill_kl_alpha=0.9 --distill_temperature=4 --distill_embedding_weight=1"
EXTERNAL_DISTILL = ("--distill_kl_alpha=0 --distill_embedding_weight=1 "
                    "--distill_relational_weight=1")
LABELS = {"teacher": "teacher (ENAS macro, wide)",
          "a": "(a) teacher-guided search, retrained with distillation",
          "b": "(b) same search without teacher (TAS-like), no distillation",
          "c": "(c) teacher uniformly scaled (base_filters)",
          "d": "(d) (a)'s architecture without distillation",
          "e": "(e) MobileFaceNet scaled (width multiplier)"}


def closest_base_filters(teacher: RunConfig, target: float) -> int:
  """The even --base_filters whose teacher architecture has FLOPs closest to `target`."""
  space = spaces.of(teacher.model)
  options = range(2, teacher.model.base_filters + 1, 2)
  return min(options, key=lambda bf: abs(space.flops(
      dataclasses.replace(teacher.model, base_filters=bf), teacher.arc) - target))


def closest_width(model, target: float) -> float:
  """The MobileFaceNet --width_multiplier (0.01 steps) whose full network is closest to T."""
  space = spaces.get("mobilefacenet")
  options = np.round(np.arange(0.05, 2.0, 0.01), 2)
  return float(min(options, key=lambda w: abs(space.flops(
      dataclasses.replace(model, search_space="mobilefacenet", width_multiplier=float(w)),
      space.default(model)) - target)))


def latencies(run_dirs: dict[str, str], rounds: int = 30, warmup: int = 10) -> dict[str, float]:
  """Median batch-1 ms of each run's network, timed in interleaved rounds (one TF thread)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  from enas_face.models import builders  # pylint: disable=import-outside-toplevel
  functions = {}
  for name, run_dir in run_dirs.items():
    config = spaces.load_config(os.path.join(run_dir, runlog.CONFIG))
    child = builders.build_child(config)
    size = config.model.image_size
    function = tf.function(lambda x, child=child: child(x, training=False))
    image = tf.random.uniform((1, size, size, 3), 0, 255)
    for _ in range(warmup):
      function(image)
    functions[name] = (function, image)
  samples = {name: [] for name in functions}
  for _ in range(rounds):
    for name, (function, image) in functions.items():
      tic = time.perf_counter()
      function(image).numpy()
      samples[name].append((time.perf_counter() - tic) * 1e3)
  return {name: float(np.median(values)) for name, values in samples.items()}


def teacher_row(run_dir: str) -> dict:
  """The row of an external teacher: its verification of the primary pair set
  (RUN_DIR/teacher_metrics.json of --mode=evaluate_teacher); no FLOPs, parameters or
  latency."""
  report = read_json(os.path.join(run_dir, runlog.TEACHER_METRICS))
  primary = report["pair_sets"][report["pair_set_names"][0]]
  return {"row": "teacher", "label": f"teacher ({report['teacher_kind']}: "
                                     f"{os.path.basename(report['teacher'])})",
          "accuracy_mean": float(primary["verification_accuracy"]), "accuracy_std": 0.0,
          "accuracies": [float(primary["verification_accuracy"])],
          "fold_std_mean": float(primary["verification_std"]),
          "tar_far_1e3": float(primary["tar_at_far_1e-3"]), "flops": None, "params": None,
          "architecture": report["teacher"], "space": None, "seeds": 1, "latency_ms": None}


def row(name: str, run_dirs: list[str]) -> dict:
  metrics = [read_json(os.path.join(d, runlog.METRICS)) for d in run_dirs]
  accuracy = [m["verification_accuracy"] for m in metrics]
  config = spaces.load_config(os.path.join(run_dirs[0], runlog.CONFIG))
  return {"row": name, "label": LABELS[name], "accuracy_mean": float(np.mean(accuracy)),
          "accuracy_std": float(np.std(accuracy)), "accuracies": accuracy,
          "fold_std_mean": float(np.mean([m["verification_std"] for m in metrics])),
          "tar_far_1e3": float(np.mean([m["tar_at_far_1e-3"] for m in metrics])),
          "flops": metrics[0]["flops"], "params": metrics[0]["params"],
          "architecture": spaces.of(config.model).describe(config.arc),
          "space": config.model.search_space, "seeds": len(run_dirs)}


def cost_cells(r: dict, reference: float, digits: int) -> tuple[str, str, str]:
  """A row's "MFLOPs (x reference)", parameters and latency cells ("n/a" when unknown)."""
  cost = ("n/a" if r["flops"] is None else
          f"{r['flops'] / 1e6:.2f} ({r['flops'] / reference:.{digits}f})")
  params = "n/a" if r["params"] is None else f"{r['params']:,}"
  latency = "n/a" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}"
  return cost, params, latency


def table(rows: list[dict], target: float) -> str:
  lines = [f"FLOPs budget T = {target / 1e6:.2f} MFLOPs", "",
           "| network | verification acc (mean +- std over seeds) | fold std | TAR@FAR=1e-3 | "
           "MFLOPs (x T) | params | latency ms (batch 1) |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    cost, params, latency = cost_cells(r, target, digits=2)
    lines.append(f"| {r['label']} | {r['accuracy_mean']:.4f} +- {r['accuracy_std']:.4f} "
                 f"({r['seeds']} seed{'s' if r['seeds'] > 1 else ''}) | {r['fold_std_mean']:.4f} "
                 f"| {r['tar_far_1e3']:.4f} | {cost} | {params} | {latency} |")
  lines.append("")
  lines += [f"- {r['row']}: {r['architecture']}" for r in rows if r["space"] == "mobilefacenet"]
  return "\n".join(lines) + "\n"


def main() -> None:
  argv, extra = split_passthrough(sys.argv[1:])
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--flagfile", required=True)
  parser.add_argument("--runs_root", required=True)
  parser.add_argument("--results", default=RESULTS,
                      help="finished steps' result files, committed (a new machine restores "
                           "them instead of rerunning; passthrough.RunRecords)")
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--teacher_flags", default="--search_space=enas_macro --base_filters=48")
  parser.add_argument("--teacher_epochs", type=int, default=15)
  parser.add_argument("--budget_fraction", type=float, default=0.25)
  parser.add_argument("--supernet_width", type=float, default=1.0)
  parser.add_argument("--search_epochs", type=int, default=8)
  parser.add_argument("--search_flags", default="--arch_lr=0.05",
                      help="flags of both searches only (TAS's --arch_lr=1e-3 is meant for "
                      "hundreds of epochs: in 8 epochs of 10 steps the logits barely move)")
  parser.add_argument("--retrain_epochs", type=int, default=12)
  parser.add_argument("--distill_flags", default=None,
                      help=f"retraining (a)'s distillation (default {RUN_DISTILL!r}; with "
                      f"--teacher {EXTERNAL_DISTILL!r})")
  parser.add_argument("--teacher", default="", help="an external teacher instead of training "
                      "one (an embeddings .jsonl, a SavedModel, an .onnx); needs --budget_flops")
  parser.add_argument("--budget_flops", type=float, default=0.0,
                      help="T in FLOPs (with --teacher; else --budget_fraction of the teacher's)")
  args = parser.parse_args(argv)
  if args.teacher and args.budget_flops <= 0:
    parser.error("--teacher needs --budget_flops (an external teacher's FLOPs are not known)")
  distill_flags = (args.distill_flags if args.distill_flags is not None else
                   EXTERNAL_DISTILL if args.teacher else RUN_DISTILL).split()
  root = os.path.abspath(args.runs_root)
  seeds = [int(s) for s in args.seeds.split(",")]
  flagfile = f"--flagfile={os.path.abspath(args.flagfile)}"
  folder = lambda *parts: os.path.join(root, *parts)  # noqa: E731

  records = RunRecords(args.results, roots=(root,))

  def step(name: str, *flags: str, done: str = runlog.METRICS) -> str:
    run_dir = folder(name)
    records.run(main_command(flagfile, *flags, f"--run_dir={run_dir}", *extra),
                os.path.join(run_dir, done), folder("logs", f"{name}.log"), KEEP)
    return run_dir

  teacher_flags = args.teacher_flags.split()
  if args.teacher:
    teacher = os.path.abspath(args.teacher)
    evaluated = step("teacher", "--mode=evaluate_teacher", f"--distill_from={teacher}",
                     done=runlog.TEACHER_METRICS)
    teacher_config, target = None, float(args.budget_flops)
  else:
    teacher = step("teacher", "--mode=fixed", *teacher_flags, f"--epochs={args.teacher_epochs}")
    teacher_config = spaces.load_config(os.path.join(teacher, runlog.CONFIG))
    target = float(round(args.budget_fraction * read_json(os.path.join(teacher,
                                                                       runlog.METRICS))["flops"]))
  student = ["--search_space=mobilefacenet", f"--width_multiplier={args.supernet_width}"]
  search = ["--mode=search", "--search_strategy=differentiable", "--cost_model=flops",
            f"--cost_target={target}", f"--search_epochs={args.search_epochs}",
            *args.search_flags.split()]
  guided = step("search_teacher", *student, *search, f"--teacher_run_dir={teacher}",
                done=runlog.SEARCH_SUMMARY)
  plain = step("search_plain", *student, *search, done=runlog.SEARCH_SUMMARY)
  base_filters = closest_base_filters(teacher_config, target) if teacher_config else None
  student_model = spaces.load_config(os.path.join(plain, runlog.CONFIG)).model
  width = closest_width(student_model, target)
  guided_arcs = f"--arc_file={os.path.join(guided, runlog.ARCS_RANKED)}"
  variants = {
      "a": [*student, guided_arcs, f"--distill_from={teacher}", *distill_flags],
      "b": [*student, f"--arc_file={os.path.join(plain, runlog.ARCS_RANKED)}"],
      "c": [*teacher_flags, f"--base_filters={base_filters}"],
      "d": [*student, guided_arcs],
      "e": ["--search_space=mobilefacenet", f"--width_multiplier={width}"],
  }
  if teacher_config is None:
    del variants["c"]
  runs = {} if args.teacher else {"teacher": [teacher]}
  for name, flags in variants.items():
    runs[name] = [step(f"{name}_s{seed}", "--mode=fixed", *flags, f"--seed={seed}",
                       f"--epochs={args.retrain_epochs}") for seed in seeds]
  rows = [row(name, dirs) for name, dirs in runs.items()]
  timed = latencies({name: dirs[0] for name, dirs in runs.items()})
  for r in rows:
    r["latency_ms"] = timed[r["row"]]
  if args.teacher:
    rows.insert(0, teacher_row(evaluated))
  searches = {name: read_json(os.path.join(d, runlog.SEARCH_SUMMARY))
              for name, d in (("search_teacher", guided), ("search_plain", plain))}
  text = table(rows, target)
  text += "\n" + "\n".join(
      f"- {name}: {s['best']['description']} ({s['best']['flops'] / 1e6:.2f} MFLOPs), "
      f"search {len(runlog.read(os.path.join(folder(name), runlog.DISTRIBUTIONS)))} epochs"
      for name, s in searches.items()) + "\n"
  text += ("- " + (f"(c) base_filters={base_filters}; " if base_filters else "")
           + f"(e) width_multiplier={width}; supernet width "
           f"{args.supernet_width} ({searches['search_plain']['supernet_flops'] / 1e6:.2f} "
           "MFLOPs)\n")
  runlog.write_text(os.path.join(root, "teacher_table.md"), text)
  runlog.write_json(os.path.join(root, "teacher_table.json"),
                    {"target_flops": target, "rows": rows, "base_filters_c": base_filters,
                     "width_multiplier_e": width, "searches": searches,
                     "commands": {"flagfile": args.flagfile, "extra": extra}})
  print(text)


if __name__ == "__main__":
  main()
