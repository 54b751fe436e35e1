"""Heads and losses side by side: accuracy table over seeds, and train-step cost.

    # Verification table: one fixed run per (head, seed), same architecture and epochs.
    python bench/bench_heads.py table --flagfile=flags/demo.cfg --seeds=0,1,2 \\
        --runs_root=runs/bench_heads_demo -- --margin_scale=auto
    # Train-step time of each head relative to softmax (interleaved, one process).
    python bench/bench_heads.py step --image_size=32 --num_classes=60

`table` runs `python -m enas_face.main --mode=fixed` for every head and seed in
RUNS_ROOT/<head>_s<seed> (a finished run is reused, an interrupted one resumes),
then prints mean +- std over seeds of the 10-fold verification accuracy (and the
mean within-run fold std), TAR@FAR=1e-3, ROC AUC, identification top-1 and wall
time, and writes RUNS_ROOT/heads_table.md and .json. Flags after `--` go to
every run. The seed changes initialisation, shuffling, augmentation and, for the
synthetic faces, the generated identities: the spread is run-to-run spread.

`step` times the train step of one FixedChild with each head on the same
batches, rounds interleaved, and prints each head's time per step / softmax's
(the fastest round, least disturbed by other processes, and the median).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from enas_face import runlog  # noqa: E402
from passthrough import split_passthrough  # noqa: E402  (bench/ is sys.path[0])

DEFAULT_HEADS = "softmax,cosface,arcface,arcnegface,combined"
TABLE_COLUMNS = (
    ("verification_accuracy", "verification acc (mean +- std over seeds)"),
    ("verification_std", "fold std (mean)"),
    ("tar_at_far_1e-3", "TAR@FAR=1e-3"),
    ("roc_auc", "ROC AUC"),
    ("identification_top1", "ident. top-1"),
    ("train_wall_seconds", "train s"),
)


def run_one(flagfile: str, head: str, seed: int, run_dir: str, extra: list[str]) -> dict:
  metrics_path = os.path.join(run_dir, runlog.METRICS)
  if not os.path.exists(metrics_path):
    command = [sys.executable, "-m", "enas_face.main", f"--flagfile={flagfile}", "--mode=fixed",
               f"--head={head}", f"--seed={seed}", f"--run_dir={run_dir}", *extra]
    print(" ".join(command), flush=True)
    tic = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    if result.returncode:
      print(f"  failed (exit {result.returncode}): {result.stderr.strip().splitlines()[-1:]}")
      return {"failed": result.stderr.strip().splitlines()[-1:]}
    print(f"  {time.perf_counter() - tic:.0f} s", flush=True)
  return runlog.read_json(metrics_path)


def table(args, extra: list[str]) -> None:
  heads = args.heads.split(",")
  seeds = [int(s) for s in args.seeds.split(",")]
  results = {h: [] for h in heads}
  for seed in seeds:  # every head once before any head twice: a cut-short table stays even
    for head in heads:
      results[head].append(run_one(args.flagfile, head, seed,
                                   os.path.join(args.runs_root, f"{head}_s{seed}"), extra))
  lines = ["| head | " + " | ".join(label for _, label in TABLE_COLUMNS) + " |",
           "|---|" + "---|" * len(TABLE_COLUMNS)]
  summary = {}
  for head, runs in results.items():
    done = [r for r in runs if "failed" not in r]
    if not done:
      lines.append(f"| {head} | failed: {runs[0]['failed']} |")
      continue
    stats = {key: (float(np.mean([r[key] for r in done])), float(np.std([r[key] for r in done])))
             for key, _ in TABLE_COLUMNS}
    summary[head] = {"seeds": len(done), "per_seed_verification": [r["verification_accuracy"]
                                                                   for r in done], **stats}
    cells = [f"{stats['verification_accuracy'][0]:.4f} +- {stats['verification_accuracy'][1]:.4f}"
             f" ({len(done)} seeds: " + ", ".join(f"{r['verification_accuracy']:.3f}" for r in done)
             + ")"]
    cells += [f"{stats[key][0]:.4f}" for key, _ in TABLE_COLUMNS[1:-1]]
    cells.append(f"{stats['train_wall_seconds'][0]:.0f}")
    lines.append(f"| {head} | " + " | ".join(cells) + " |")
  text = "\n".join(lines) + "\n"
  print(text)
  os.makedirs(args.runs_root, exist_ok=True)
  runlog.write_text(os.path.join(args.runs_root, "heads_table.md"), text)
  runlog.write_json(os.path.join(args.runs_root, "heads_table.json"),
                    {"flagfile": args.flagfile, "extra_flags": extra, "seeds": seeds,
                     "heads": summary})


def step_cost(args) -> None:
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  from enas_face.models import heads as heads_lib  # pylint: disable=import-outside-toplevel
  from enas_face.spaces import enas_macro  # pylint: disable=import-outside-toplevel
  from enas_face.models.child import FixedChild  # pylint: disable=import-outside-toplevel
  from enas_face.config import HeadConfig, ModelConfig, TrainConfig  # pylint: disable=import-outside-toplevel
  from enas_face.training import step as train_lib  # pylint: disable=import-outside-toplevel

  keras.utils.set_random_seed(0)
  model = ModelConfig(image_size=args.image_size, stem_stride=args.stem_stride,
                      embedding_dim=args.embedding_dim, base_filters=args.base_filters)
  arc = enas_macro.default_architecture(model.num_layers)
  names = args.heads.split(",")
  steps = {}
  for name in names:
    child = FixedChild(model, arc).build_for_input()
    head = heads_lib.build_head(HeadConfig(head=name, margin_scale="32"), args.num_classes,
                                model.embedding_dim)
    optimizer = train_lib.make_optimizer(TrainConfig(epochs=10, warmup_epochs=1), 100, 10)
    steps[name] = train_lib.make_train_step(child, head, optimizer, 0.1, args.num_classes,
                                            args.batch_size)
  images = tf.random.stateless_uniform([args.batch_size, args.image_size, args.image_size, 3],
                                       seed=[1, 2])
  labels = tf.random.stateless_uniform([args.batch_size], seed=[3, 4], maxval=args.num_classes,
                                       dtype=tf.int32)
  for step in steps.values():  # trace and warm up
    for _ in range(3):
      float(step(images, labels)[0])
  rounds = {name: [] for name in names}
  for _ in range(args.rounds):
    for name, step in steps.items():
      tic = time.perf_counter()
      for _ in range(args.steps):
        loss = step(images, labels)[0]
      float(loss)
      rounds[name].append((time.perf_counter() - tic) / args.steps)
  # The fastest round is the least disturbed by other processes on the machine; the
  # median shows how much they disturbed it.
  best = {name: min(times) for name, times in rounds.items()}
  median = {name: float(np.median(times)) for name, times in rounds.items()}
  print(f"train step at {args.image_size}x{args.image_size} (stem stride {args.stem_stride}), "
        f"batch {args.batch_size}, {args.num_classes} classes, {args.rounds} interleaved rounds "
        f"of {args.steps} steps per head:")
  head_only = head_cost(names, args, tf, heads_lib, HeadConfig)
  print(f"  {'head':<16} {'best round':>10} {'/ softmax':>10} {'median':>10} {'/ softmax':>10} "
        f"{'head alone':>11} {'extra / step':>13}")
  for name in names:
    extra = (head_only[name] - head_only["softmax"]) / best["softmax"]
    print(f"  {name:<16} {1000 * best[name]:8.2f}ms {best[name] / best['softmax']:10.3f} "
          f"{1000 * median[name]:8.2f}ms {median[name] / median['softmax']:10.3f} "
          f"{1000 * head_only[name]:9.3f}ms {100 * extra:12.2f}%")
  print("  head alone: forward + backward of head and cross-entropy on fixed embeddings (best of "
        "5 x 50 calls); extra / step: its excess over softmax's, relative to softmax's best step")


def head_cost(names, args, tf, heads_lib, head_config) -> dict[str, float]:
  """Seconds per call of loss + gradients of the head alone (embeddings held fixed)."""
  embeddings = tf.random.stateless_normal([args.batch_size, args.embedding_dim], seed=[5, 6])
  labels = tf.random.stateless_uniform([args.batch_size], seed=[3, 4], maxval=args.num_classes,
                                       dtype=tf.int32)
  onehot = tf.one_hot(labels, args.num_classes)
  cost = {}
  for name in names:
    head = heads_lib.build_head(head_config(head=name, margin_scale="32"), args.num_classes,
                                args.embedding_dim)

    @tf.function
    def loss_and_gradients(x, head=head):
      with tf.GradientTape() as tape:
        tape.watch(x)
        logits, _ = head.training_logits(x, labels, step=100)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(onehot, logits))
      return tape.gradient(loss, [x] + head.trainable_variables)

    loss_and_gradients(embeddings)
    times = []
    for _ in range(5):
      tic = time.perf_counter()
      for _ in range(50):
        out = loss_and_gradients(embeddings)
      float(out[0][0, 0])
      times.append((time.perf_counter() - tic) / 50)
    cost[name] = min(times)
  return cost


def main() -> None:
  argv, extra = split_passthrough(sys.argv[1:])
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  t = sub.add_parser("table")
  t.add_argument("--flagfile", required=True)
  t.add_argument("--heads", default=DEFAULT_HEADS)
  t.add_argument("--seeds", default="0,1")
  t.add_argument("--runs_root", required=True)
  s = sub.add_parser("step")
  s.add_argument("--heads", default="softmax,cosface,arcface,sphereface,combined,arcnegface,"
                 "rescaled_margin")
  s.add_argument("--image_size", type=int, default=32)
  s.add_argument("--stem_stride", type=int, default=1)
  s.add_argument("--base_filters", type=int, default=32)
  s.add_argument("--embedding_dim", type=int, default=128)
  s.add_argument("--num_classes", type=int, default=60)
  s.add_argument("--batch_size", type=int, default=64)
  s.add_argument("--steps", type=int, default=10)
  s.add_argument("--rounds", type=int, default=15)
  args = parser.parse_args(argv)
  if args.command == "table":
    table(args, extra)
  else:
    if "softmax" not in args.heads.split(","):
      parser.error("--heads must include softmax (the reference)")
    step_cost(args)


if __name__ == "__main__":
  main()
