"""Training throughput of the SharedChild (random architecture every step) against
FixedChild of the same architectures, measured side by side in one run.

    python bench/bench_shared_vs_fixed.py [--image_size=32 --archs=6 --steps=30]
        [--shared_update=all,taken] [--skip_modes=cond,mask]

K architectures are sampled uniformly. Each round times, for every architecture
in turn, S steps of its FixedChild and then S steps of each SharedChild variant
(the shared steps cycle through all K architectures step by step, as the search
resamples every minibatch). Interleaving in rounds keeps machine drift out of
the ratios. Tracing/warm-up steps are not timed. Prints img/s of each and the
ratio shared / fixed.

A variant is a skip implementation (--skip_modes) and an update (--shared_update, the
search's flag): `all` is Keras SGD on every weight (untaken candidates get zero
gradients, yet momentum and decay move them), `taken` updates only the candidates the
step's architecture ran (training/shared_update.py). The FixedChild always takes
Keras's own update. Each variant trains its own SharedChild and optimizer.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from enas_face.models import heads  # noqa: E402
from enas_face.spaces import enas_macro  # noqa: E402
from enas_face.training import step as train_lib  # noqa: E402
from enas_face.models.child import FixedChild, SharedChild  # noqa: E402
from enas_face.config import ModelConfig, TrainConfig  # noqa: E402


def timed_steps(step, batches, arcs=None, warmup=3):
  """Seconds for len(batches) steps after `warmup` untimed ones."""
  for k in range(warmup):
    images, labels = batches[k % len(batches)]
    args = (images, labels) if arcs is None else (images, labels, arcs[k % len(arcs)])
    [float(v) for v in step(*args)]
  tic = time.perf_counter()
  for k, (images, labels) in enumerate(batches):
    args = (images, labels) if arcs is None else (images, labels, arcs[k % len(arcs)])
    [float(v) for v in step(*args)]
  return time.perf_counter() - tic


def make_parts(child, num_classes, takes_arc):
  """(forward, forward + backward) of the child + softmax head as tf.functions."""
  head = heads.SoftmaxHead(num_classes)
  head.build((None, child.config.embedding_dim))
  variables = child.trainable_variables + head.trainable_variables

  def loss_of(images, labels, arc):
    embeddings = child(images, arc=arc, training=True) if takes_arc else child(images, training=True)
    logits = head(embeddings)
    return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                                           from_logits=True))

  @tf.function
  def forward(images, labels, arc=None):
    return (loss_of(images, labels, arc),)

  @tf.function
  def backward(images, labels, arc=None):
    with tf.GradientTape() as tape:
      loss = loss_of(images, labels, arc)
    grads = tape.gradient(loss, variables)
    return (loss, tf.add_n([tf.reduce_sum(g) for g in grads if g is not None]))

  return forward, backward


def make_step(child, num_classes, batch_size, takes_arc, shared_update="all"):
  head = heads.SoftmaxHead(num_classes)
  head.build((None, child.config.embedding_dim))
  optimizer = train_lib.make_optimizer(TrainConfig(epochs=10, warmup_epochs=1), 100, 10)
  optimizer.build(child.trainable_variables + head.trainable_variables)
  return train_lib.make_train_step(child, head, optimizer, 0.0, num_classes, batch_size,
                                   takes_arc=takes_arc, shared_update=shared_update)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--base_filters", type=int, default=32)
  parser.add_argument("--embedding_dim", type=int, default=128)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--archs", type=int, default=6)
  parser.add_argument("--steps", type=int, default=10,
                      help="timed steps per architecture and round")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", default="", help="also write the figures to this JSON file")
  parser.add_argument("--skip_modes", default="cond",
                      help="SharedChild skip implementations to time, comma-separated: cond "
                           "(tf.cond per skip bit) and/or mask (every skip computed, times its bit)")
  parser.add_argument("--shared_update", default="all,taken",
                      help="SharedChild updates to time, comma-separated: all (Keras SGD on "
                           "every weight) and/or taken (only the candidates each step ran)")
  parser.add_argument("--profile", action="store_true",
                      help="also time forward and forward + backward alone")
  args = parser.parse_args()

  config = ModelConfig(image_size=args.image_size, base_filters=args.base_filters,
                       embedding_dim=args.embedding_dim)
  rng = np.random.default_rng(args.seed)
  num_classes = 100
  batches = [(tf.constant(rng.uniform(0, 255, (args.batch_size, args.image_size,
                                                args.image_size, 3)).astype(np.float32)),
              tf.constant(rng.integers(0, num_classes, args.batch_size).astype(np.int32)))
             for _ in range(args.steps)]
  arcs = [enas_macro.sample_uniform(config.num_layers, rng) for _ in range(args.archs)]

  fixed_steps = [make_step(FixedChild(config, arc).build_for_input(), num_classes, args.batch_size, False)
                 for arc in arcs]
  modes = args.skip_modes.split(",")
  updates = args.shared_update.split(",")
  variants = [(m, u) for m in modes for u in updates]  # the first is "the" shared child
  shared_models = {v: SharedChild(config, skip_mode=v[0]).build_for_input() for v in variants}
  shared_steps = {v: make_step(shared_models[v], num_classes, args.batch_size, True, v[1])
                  for v in variants}
  shared = shared_models[variants[0]]
  arc_tensors = [tf.constant(a.to_ints(), tf.int32) for a in arcs]
  fixed_seconds = 0.0
  variant_seconds = {v: 0.0 for v in variants}
  for round_index in range(args.rounds):
    for k, step in enumerate(fixed_steps):
      fixed_seconds += timed_steps(step, batches, warmup=3 if round_index == 0 else 0)
      for v in variants:
        variant_seconds[v] += timed_steps(shared_steps[v], batches,
                                          arc_tensors[k:] + arc_tensors[:k],
                                          warmup=3 if round_index == 0 and k == 0 else 0)
  shared_seconds = variant_seconds[variants[0]]

  images = args.steps * args.batch_size * len(arcs) * args.rounds
  profile = {}
  if args.profile:
    fixed_parts = [make_parts(FixedChild(config, arc).build_for_input(), num_classes, False)
                   for arc in arcs]
    shared_parts = make_parts(shared, num_classes, True)
    totals = {f"{who}_{part}": 0.0 for who in ("fixed", "shared") for part in ("forward", "backward")}
    for round_index in range(args.rounds):
      for k, parts in enumerate(fixed_parts):
        for index, part in enumerate(("forward", "backward")):
          first = round_index == 0
          totals[f"fixed_{part}"] += timed_steps(parts[index], batches, warmup=3 if first else 0)
          totals[f"shared_{part}"] += timed_steps(shared_parts[index], batches,
                                                  arc_tensors[k:] + arc_tensors[:k],
                                                  warmup=3 if first and k == 0 else 0)
    steps_total = images / args.batch_size
    per_step = {key: 1e3 * value / steps_total for key, value in totals.items()}
    per_step["fixed_step"] = 1e3 * fixed_seconds / steps_total
    per_step["shared_step"] = 1e3 * shared_seconds / steps_total
    profile = {f"{key}_ms": value for key, value in per_step.items()}
    print(f"ms per step          fixed    shared   shared - fixed   (shared: skip_mode="
          f"{variants[0][0]}, shared_update={variants[0][1]})")
    for part in ("forward", "backward", "step"):
      f, s_ = per_step[f"fixed_{part}"], per_step[f"shared_{part}"]
      label = {"forward": "forward", "backward": "forward+backward", "step": "full step"}[part]
      print(f"  {label:<18} {f:7.1f}  {s_:7.1f}  {s_ - f:+7.1f}")
    f_opt = per_step["fixed_step"] - per_step["fixed_backward"]
    s_opt = per_step["shared_step"] - per_step["shared_backward"]
    print(f"  {'update (step - f+b)':<18} {f_opt:7.1f}  {s_opt:7.1f}  {s_opt - f_opt:+7.1f}")
    for v in variants[1:]:  # the same forward + backward; only the full step differs
      step_ms = 1e3 * variant_seconds[v] / steps_total
      profile[f"shared_step_{v[0]}_{v[1]}_ms"] = step_ms
      print(f"  skip_mode={v[0]} shared_update={v[1]}: full step {step_ms:7.1f}, update "
            f"(step - f+b) {step_ms - per_step['shared_backward']:7.1f}")
  result = {"fixed_images_per_second": images / fixed_seconds,
            "shared_images_per_second": images / shared_seconds,
            "ratio_shared_over_fixed": fixed_seconds / shared_seconds,
            "image_size": args.image_size, "batch_size": args.batch_size,
            "architectures": [a.to_string() for a in arcs],
            "steps_per_architecture_and_round": args.steps, "rounds": args.rounds, **profile}
  print(f"architectures: {len(arcs)} x {args.steps} steps x {args.rounds} rounds, batch "
        f"{args.batch_size} at {args.image_size}x{args.image_size}")
  print(f"FixedChild  (one model per architecture): {result['fixed_images_per_second']:8.1f} img/s")
  print(f"SharedChild (architecture as a tensor):   {result['shared_images_per_second']:8.1f} img/s")
  print(f"ratio shared / fixed: {result['ratio_shared_over_fixed']:.3f}  (aim >= 0.95; "
        f"skip_mode={variants[0][0]}, shared_update={variants[0][1]})")
  result["variants"] = []
  for m, u in variants:
    seconds = variant_seconds[(m, u)]
    result["variants"].append({"skip_mode": m, "shared_update": u,
                               "images_per_second": images / seconds,
                               "ratio_shared_over_fixed": fixed_seconds / seconds})
    print(f"  skip_mode={m:<4} shared_update={u:<5}: {images / seconds:8.1f} img/s, ratio "
          f"{fixed_seconds / seconds:.3f}")
  for m in modes:  # the first --shared_update of each skip mode (earlier files' keys)
    result[f"ratio_{m}"] = fixed_seconds / variant_seconds[(m, updates[0])]
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  main()
