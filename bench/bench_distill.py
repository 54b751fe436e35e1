"""A strong teacher distilled into small students on real faces (issue 25, table 1): the
teacher's own accuracy, then each student without a teacher, with the teacher (labelled
images only), and with the teacher and unlabelled images.

    python tools/teacher_embeddings.py --flagfile=flags/distill_lfw_view1.cfg \\
        --unlabelled=small_identities --distill_from=../shared/data/models/dlib \\
        --teacher_splits=train,val,test,pairs,unlabelled \\
        --teacher_file=runs/teachers/lfw_view1_dlib.jsonl
    python bench/bench_distill.py --flagfile=flags/distill_lfw_view1.cfg \\
        --teacher=runs/teachers/lfw_view1_dlib.jsonl --runs_root=runs/bench_distill_lfw \\
        --seeds=0,1

The flagfile holds the data, pairs, input size and training recipe of every student.
Students (--students), each within the budget B = --budget_flops (default: a tenth of dlib's
ResNet, counted by `dlib_resnet_flops`; a student above B is refused):
  enas           the ENAS macro default child at the flagfile's --base_filters (or
                 --enas_flags);
  mobilefacenet  MobileFaceNet at full depth with the --width_multiplier (0.01 steps) whose
                 FLOPs are closest to B without exceeding it.
Variants (--variants), each with every seed of --seeds (initialisation and shuffling):
  none        the flagfile's recipe, no teacher;
  teacher     + --distill_from=TEACHER with --distill_flags (embedding cosine through a
              learned projection + the relational term; no KL: an external teacher has no
              logits);
  unlabelled  + --distill_ce_weight=0 --unlabelled=small_identities (--unlabelled_flags):
              images without identity labels for the distillation terms, which alone
              train (no cross-entropy: on LFW View 1 it overfits the 3,797 labelled
              images; the ENAS student reached 0.854 so against 0.847 with it and
              labelled images only, one seed).
The teacher's row is its own verification of the same pairs (--mode=evaluate_teacher).
Every run lives in RUNS_ROOT/<student>_<variant>_s<seed>; an interrupted one resumes from
its checkpoint. A finished run is recorded in --results (bench/data/distill_runs.jsonl,
committed: its metrics, FLOPs, parameters, architecture and the float TFLite batch-1 latency
of its network, LiteRT, one thread, median, measured when it finished), keyed by its
command (passthrough.run_key: the flagfile's contents, the teacher's file name, the flags),
so the table grows a few runs at a time, on any machine. Prints (and writes
RUNS_ROOT/distill_table.md and .json) per row: pair verification accuracy (mean +- std over
seeds), the mean 10-fold std, TAR@FAR=1e-3, MFLOPs and their fraction of the teacher's,
parameters and latency; a row's label names its distillation flags beyond the defaults.
--more_pairs=SPEC (e.g. tools/make_pairs.py's larger set of the pairsDevTest people) adds
each row's accuracy on that set: the teacher's by --mode=evaluate_teacher, each finished
student's by --mode=eval --pairs=... on its folder, recorded like the runs.
Flags after `--` go to every run.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
BENCH = os.path.dirname(os.path.abspath(__file__))
if BENCH not in sys.path:
  sys.path.insert(0, BENCH)

from enas_face import runlog, spaces  # noqa: E402
from enas_face.config import ModelConfig  # noqa: E402
from bench_teacher import cost_cells, teacher_row  # noqa: E402
from passthrough import (RunRecords, main_command, read_flagfile, read_json,  # noqa: E402
                         split_passthrough)

RESULTS = os.path.join(ROOT, "bench", "data", "distill_runs.jsonl")
STUDENTS = ("enas", "mobilefacenet")
VARIANTS = ("none", "teacher", "unlabelled")
DISTILL = "--distill_kl_alpha=0 --distill_embedding_weight=1 --distill_relational_weight=1"
UNLABELLED = "--distill_ce_weight=0 --unlabelled=small_identities"
LABELS = {"none": "no teacher", "teacher": "teacher, labelled images",
          "unlabelled": "teacher, labelled + unlabelled images"}


def conv_flops(size: int, channels_in: int, channels_out: int, kernel: int, stride: int,
               padding: int) -> tuple[int, int]:
  """(FLOPs, output size) of a square convolution: out = (size + 2 p - k) // s + 1 and
  FLOPs = 2 out^2 k^2 C_in C_out (a multiply-add counts 2, as spaces/ do)."""
  out = (size + 2 * padding - kernel) // stride + 1
  return 2 * out * out * kernel * kernel * channels_in * channels_out, out


def dlib_resnet_flops() -> dict:
  """FLOPs of dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1), counted
  from its definition in dlib's examples/dnn_face_recognition_ex.cpp: a 150x150 RGB chip,
  con<32,7,7,2,2>, max_pool<3,3,2,2>, then residual blocks of two 3x3 convolutions (each
  followed by affine BatchNorm): 3 x 32, [down] + 3 x 64, [down] + 2 x 128, [down] + 2 x 256,
  [down] 256 channels, where a [down] block's first convolution has stride 2 and its skip
  is a 2x2 average pool (channels zero-padded, no weights); global average pool and a
  256 -> 128 fully connected layer. dlib pads a convolution or pool by k // 2 at stride 1
  and not at all at stride 2. Only convolutions and the fully connected layer are counted
  (BatchNorm, ReLU, pools and additions add well under 1 %)."""
  total, convolutions = 0, 0
  flops, size = conv_flops(150, 3, 32, 7, 2, 0)
  total, convolutions = total + flops, convolutions + 1
  size = (size - 3) // 2 + 1  # max_pool<3,3,2,2>, no padding
  channels, sizes = 32, [size]
  for width, blocks, down in ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True),
                              (256, 1, True)):
    for block in range(blocks):
      stride = 2 if down and block == 0 else 1
      first, size = conv_flops(size, channels, width, 3, stride, 0 if stride == 2 else 1)
      second, size = conv_flops(size, width, width, 3, 1, 1)
      total, convolutions, channels = total + first + second, convolutions + 2, width
    sizes.append(size)
  total += 2 * 256 * 128
  return {"flops": int(total), "convolutions": convolutions, "input_size": 150,
          "stage_sizes": sizes}


def closest_width_within(model: ModelConfig, budget: float) -> float:
  """The largest MobileFaceNet --width_multiplier (0.01 steps) whose full network has at most
  `budget` FLOPs."""

  def flops(width: float) -> float:
    return default_flops(student_model(model, ["--search_space=mobilefacenet",
                                               f"--width_multiplier={width}"]))

  fitting = [w for w in np.round(np.arange(0.05, 2.0, 0.01), 2) if flops(float(w)) <= budget]
  if not fitting:
    raise SystemExit(f"--budget_flops={budget:g}: no MobileFaceNet width fits")
  return float(max(fitting))


def model_of(flagfile: str) -> ModelConfig:
  """The flagfile's input size and embedding (what students' FLOPs are counted on)."""
  flags = read_flagfile(flagfile)
  fields = {name: type(getattr(ModelConfig(), name))(flags[name])
            for name in ("image_size", "embedding_dim", "base_filters", "num_layers",
                         "num_reductions", "stem_stride") if name in flags}
  return ModelConfig(**fields)


def student_model(model: ModelConfig, flags: list[str]) -> ModelConfig:
  """`model` with those of a student's --name=value flags that are ModelConfig fields applied
  (typed as the fields; the others do not change the network's FLOPs)."""
  values = dict(f[2:].split("=", 1) for f in flags if "=" in f)
  return dataclasses.replace(model, **{name: type(getattr(model, name))(value)
                                       for name, value in values.items() if hasattr(model, name)})


def default_flops(model: ModelConfig) -> float:
  """FLOPs of the space's default architecture at `model`."""
  space = spaces.of(model)
  return space.flops(model, space.default(model))


def student_flags(name: str, model: ModelConfig, budget: float, enas_flags: str) -> list[str]:
  """The flags of student `name`, refused (SystemExit naming the flag) above the budget."""
  if name == "mobilefacenet":
    return ["--search_space=mobilefacenet",
            f"--width_multiplier={closest_width_within(model, budget)}"]
  flags = ["--search_space=enas_macro", *enas_flags.split()]
  flops = default_flops(student_model(model, flags))
  if flops > budget:
    raise SystemExit(f"--enas_flags={enas_flags!r}: the ENAS student has {flops / 1e6:.1f} "
                     f"MFLOPs, above --budget_flops={budget:g}")
  return flags


def variant_flags(variant: str, distill: str, unlabelled: str) -> list[str]:
  """The distillation flags of a variant (a row's label names those beyond the defaults)."""
  return {"none": [], "teacher": distill.split(),
          "unlabelled": [*distill.split(), *unlabelled.split()]}[variant]


def tflite_latencies(run_dirs: dict[str, str], repeats: int = 50) -> dict[str, float]:
  """Median batch-1 ms of each run's float TFLite network (LiteRT, one thread)."""
  from enas_face.costs import tflite  # pylint: disable=import-outside-toplevel
  out = {}
  for name, run_dir in run_dirs.items():
    config = spaces.load_config(os.path.join(run_dir, runlog.CONFIG))
    out[name] = float(tflite.TFLiteLatency(config.model, warmup=5, repeats=repeats,
                                           num_threads=1)(config.arc))
  return out


def run_summary(run_dir: str) -> dict:
  """What the table keeps of a finished student run (its record in --results)."""
  metrics = read_json(os.path.join(run_dir, runlog.METRICS))
  config = spaces.load_config(os.path.join(run_dir, runlog.CONFIG))
  return {"verification_accuracy": float(metrics["verification_accuracy"]),
          "verification_std": float(metrics["verification_std"]),
          "tar_at_far_1e-3": float(metrics["tar_at_far_1e-3"]),
          "flops": int(metrics["flops"]), "params": int(metrics["params"]),
          "architecture": spaces.of(config.model).describe(config.arc),
          "latency_ms": tflite_latencies({"run": run_dir})["run"]}


def pair_set_name(spec: str) -> str:
  """The name a --pairs entry's set is reported under: its file's stem (lfw:FILE,IMAGES or
  bin:FILE)."""
  scheme, _, rest = spec.partition(":")
  path = rest.split(",")[0] if scheme == "lfw" else rest
  return os.path.splitext(os.path.basename(path))[0]


def pair_set_summary(metrics: dict, name: str) -> dict:
  """A run's (or a teacher's) verification of the pair set `name`, from its metrics."""
  found = metrics["pair_sets"][name]
  return {"verification_accuracy": float(found["verification_accuracy"]),
          "verification_std": float(found["verification_std"]),
          "tar_at_far_1e-3": float(found["tar_at_far_1e-3"]), "num_pairs": int(found["num_pairs"])}


def more_pairs_cells(records: list[dict | None]) -> dict:
  """A row's accuracy on the --more_pairs set, mean +- std over its records (None: not
  evaluated yet, left out; none at all: no cells)."""
  records = [r for r in records if r]
  if not records:
    return {}
  accuracy = [r["verification_accuracy"] for r in records]
  return {"more_accuracy_mean": float(np.mean(accuracy)),
          "more_accuracy_std": float(np.std(accuracy)), "more_accuracies": accuracy,
          "more_fold_std_mean": float(np.mean([r["verification_std"] for r in records])),
          "more_num_pairs": records[0]["num_pairs"]}


def student_row(student: str, variant: str, records: list[dict], note: str = "") -> dict:
  """The row of one student and variant over its seeds' records (run_summary); `note` is
  appended to its label (the distillation flags, when not the defaults)."""
  accuracy = [r["verification_accuracy"] for r in records]
  label = f"{student}: {LABELS[variant]}" + (f" ({note})" if note else "")
  return {"row": f"{student}_{variant}", "label": label,
          "accuracy_mean": float(np.mean(accuracy)), "accuracy_std": float(np.std(accuracy)),
          "accuracies": accuracy,
          "fold_std_mean": float(np.mean([r["verification_std"] for r in records])),
          "tar_far_1e3": float(np.mean([r["tar_at_far_1e-3"] for r in records])),
          "flops": records[0]["flops"], "params": records[0]["params"],
          "architecture": records[0]["architecture"], "seeds": len(records),
          "latency_ms": records[0]["latency_ms"]}


def table(rows: list[dict], teacher_flops: float, budget: float, more: str = "") -> str:
  """The markdown table; with `more` (the --more_pairs set's name) a column of each row's
  accuracy on that set too."""
  more_header = ""
  if more:
    pairs = next((r["more_num_pairs"] for r in rows if "more_num_pairs" in r), "?")
    more_header = f" {more} acc ({pairs} pairs, mean +- std over seeds) | fold std |"
  lines = [f"Budget B = {budget / 1e6:.2f} MFLOPs ({budget / teacher_flops:.3f} of the "
           f"teacher's {teacher_flops / 1e6:.1f})", "",
           "| network | verification acc (mean +- std over seeds) | fold std | TAR@FAR=1e-3 |"
           + more_header + " MFLOPs (x teacher) | params | TFLite ms (batch 1) |",
           "|---|---|---|---|" + ("---|---|" if more else "") + "---|---|---|"]
  for r in rows:
    cost, params, latency = cost_cells(r, teacher_flops, digits=3)
    seeds = f"{r['seeds']} seed{'s' if r['seeds'] > 1 else ''}"
    more_cells = ""
    if more and "more_accuracies" in r:
      more_cells = (f" {r['more_accuracy_mean']:.4f} +- {r['more_accuracy_std']:.4f} "
                    f"({len(r['more_accuracies'])}) | {r['more_fold_std_mean']:.4f} |")
    elif more:
      more_cells = " not evaluated | |"
    lines.append(f"| {r['label']} | {r['accuracy_mean']:.4f} +- {r['accuracy_std']:.4f} "
                 f"({seeds}) | {r['fold_std_mean']:.4f} | {r['tar_far_1e3']:.4f} |"
                 f"{more_cells} {cost} | {params} | {latency} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> None:
  argv, extra = split_passthrough(sys.argv[1:] if argv is None else argv)
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--flagfile", required=True)
  parser.add_argument("--teacher", required=True,
                      help="the teacher (--distill_from): an embeddings .jsonl, a SavedModel, "
                           "an .onnx, dlib's model folder or an enas_face run")
  parser.add_argument("--runs_root", required=True)
  parser.add_argument("--results", default=RESULTS,
                      help="the finished runs' records (committed; see the module doc)")
  parser.add_argument("--seeds", default="0,1")
  parser.add_argument("--students", default=",".join(STUDENTS))
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--teacher_flops", type=float, default=0.0,
                      help="the teacher's FLOPs (default: dlib's ResNet, dlib_resnet_flops)")
  parser.add_argument("--budget_flops", type=float, default=0.0,
                      help="the students' FLOPs budget (default: a tenth of the teacher's)")
  parser.add_argument("--enas_flags", default="", help="the ENAS student's own flags")
  parser.add_argument("--distill_flags", default=DISTILL)
  parser.add_argument("--unlabelled_flags", default=UNLABELLED)
  parser.add_argument("--more_pairs", default="",
                      help="a second pair set (lfw:PAIRS_TXT,IMAGES or bin:FILE, e.g. "
                           "tools/make_pairs.py's larger set of the same people), every row "
                           "verified on it too: the teacher by --mode=evaluate_teacher, each "
                           "finished student by --mode=eval on its run folder")
  parser.add_argument("--report", action="store_true",
                      help="the table of the runs recorded in --results only: run nothing, "
                           "name the runs not run yet")
  parser.add_argument("--plan", action="store_true",
                      help="print the budget, the students and the runs, and run nothing")
  args = parser.parse_args(argv)
  for name, given, allowed in (("students", args.students, STUDENTS),
                               ("variants", args.variants, VARIANTS)):
    unknown = set(given.split(",")) - set(allowed)
    if unknown:
      parser.error(f"--{name}={given}: unknown {sorted(unknown)}; choose from {allowed}")
  if not os.path.exists(args.teacher):
    parser.error(f"--teacher={args.teacher}: no such file or folder")
  teacher_flops = args.teacher_flops or dlib_resnet_flops()["flops"]
  budget = args.budget_flops or teacher_flops / 10
  model = model_of(args.flagfile)
  root, teacher = os.path.abspath(args.runs_root), os.path.abspath(args.teacher)
  flagfile = f"--flagfile={os.path.abspath(args.flagfile)}"
  students = {name: student_flags(name, model, budget, args.enas_flags)
              for name in args.students.split(",")}
  variants = {variant: ([f"--distill_from={teacher}"] if variant != "none" else [])
              + variant_flags(variant, args.distill_flags, args.unlabelled_flags)
              for variant in VARIANTS}

  if args.plan:
    print(f"teacher {teacher_flops / 1e6:.1f} MFLOPs, budget {budget / 1e6:.2f} MFLOPs")
    for name, flags in students.items():
      print(f"student {name}: {' '.join(flags)}: "
            f"{default_flops(student_model(model, flags)) / 1e6:.2f} MFLOPs")
    print(f"{len(students) * len(args.variants.split(',')) * len(args.seeds.split(','))} "
          f"runs of {args.flagfile} in {root}, and the teacher's evaluation")
    return

  records = RunRecords(args.results)

  def step(name: str, *flags: str, done: str = runlog.METRICS, summary=run_summary) -> dict:
    """The run's record: from --results, or made by running it (or reading its finished
    folder) and recorded; with --report only from --results (None if not there)."""
    run_dir = os.path.join(root, name)
    if args.report:
      return records.get(main_command(flagfile, *flags, f"--run_dir={run_dir}", *extra))
    return records.summarised(main_command(flagfile, *flags, f"--run_dir={run_dir}", *extra),
                              os.path.join(run_dir, done),
                              os.path.join(root, "logs", f"{name}.log"), summary, name)

  more = pair_set_name(args.more_pairs) if args.more_pairs else ""
  sets = (read_flagfile(args.flagfile).get("pairs", ""), args.more_pairs)
  both = "--pairs=" + ",".join(spec for spec in sets if spec)

  def on_more_pairs(name: str, *flags: str, folder: str = "",
                    metrics: str = runlog.METRICS) -> dict:
    """The verification of the --more_pairs set by the run `name` (its flags): recorded, else
    evaluated in its folder (the teacher: `folder`, one of its own) unless the set is in its
    metrics already, and recorded."""
    run_dir = os.path.join(root, folder or name)
    command = main_command(flagfile, *flags, both, f"--run_dir={run_dir}", *extra)
    path = os.path.join(run_dir, metrics)
    if args.report:
      return records.get(command)

    def summary(_):
      return pair_set_summary(read_json(path), more)

    if records.get(command) is None and more in read_json(path, {}).get("pair_sets", {}):
      return records.add(command, dict(summary(run_dir), name=f"{name}_{more}"))
    return records.summarised(command, None, os.path.join(root, "logs", f"{name}_{more}.log"),
                              summary, f"{name}_{more}")

  teacher_flags = ("--mode=evaluate_teacher", f"--distill_from={teacher}")
  evaluated = step("teacher", *teacher_flags, done=runlog.TEACHER_METRICS, summary=teacher_row)
  if evaluated is None:
    raise SystemExit(f"--report: the teacher's evaluation is not in --results={args.results}")
  rows, not_run = [dict(evaluated, flops=int(teacher_flops))], []
  if more:
    rows[0].update(more_pairs_cells([on_more_pairs(
        "teacher", *teacher_flags, folder=f"teacher_{more}", metrics=runlog.TEACHER_METRICS)]))
  for student, flags in students.items():
    for variant in args.variants.split(","):
      note = " ".join(flag for flag in variant_flags(variant, args.distill_flags,
                                                     args.unlabelled_flags)
                      if flag not in variant_flags(variant, DISTILL, UNLABELLED))
      runs = {f"{student}_{variant}_s{seed}": ["--mode=fixed", *flags, *variants[variant],
                                               f"--seed={seed}"]
              for seed in (int(s) for s in args.seeds.split(","))}
      done = {name: step(name, *run_flags) for name, run_flags in runs.items()}
      not_run += [name for name, record in done.items() if record is None]
      if not any(done.values()):
        continue
      rows.append(student_row(student, variant, [r for r in done.values() if r], note))
      if more:
        rows[-1].update(more_pairs_cells([on_more_pairs(name, *runs[name], "--mode=eval")
                                          for name in runs if done[name]]))
  rows[0] = {key: value for key, value in rows[0].items()
             if key not in ("key", "name", "code_version")}
  text = table(rows, teacher_flops, budget, more)
  text += "".join(f"- {r['row']}: {r['architecture']}\n" for r in rows[1:])
  if not_run:
    text += f"\nNot run yet: {', '.join(not_run)}\n"
  os.makedirs(root, exist_ok=True)
  runlog.write_text(os.path.join(root, "distill_table.md"), text)
  runlog.write_json(os.path.join(root, "distill_table.json"), {
      "teacher_flops": teacher_flops, "budget_flops": budget, "rows": rows,
      "students": students, "variants": variants,
      "commands": {"flagfile": args.flagfile, "teacher": args.teacher, "extra": extra}})
  print(text)


if __name__ == "__main__":
  main()
