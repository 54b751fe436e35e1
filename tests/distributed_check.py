"""Training-step equivalence of MirroredStrategy and one device, in a fresh process
(logical CPU devices must be configured before TensorFlow initialises its runtime,
so pytest cannot do this in its own process).

    python tests/distributed_check.py --replicas=2 --steps=3

For each child it builds one set of starting weights, copies them into a model
under the default strategy and one under MirroredStrategy over `--replicas`
logical CPUs, takes `--steps` SGD steps (training.step.make_train_step) on the same
global batches (the mirrored copy reads them through distribute.distribute_dataset,
so each replica gets global / replicas images) and compares the losses and the
weights after the steps:

  fixed   synchronised BatchNorm: the reference is one device on the whole global
          batch; every weight is compared, BatchNorm moving statistics included.
  shared  the search's shared child with an architecture tensor (a different one
          each step) and per-replica BatchNorm (distribute.per_replica_batch_norm,
          as search.create_state does): the reference is one device that sums the
          losses of the replicas' slices, each normalised with its own statistics
          ("ghost batches"); trainable weights are compared (moving statistics
          are per replica by construction).
  shared_taken  the same with --shared_update=taken in both (each replica updates its
          own copy from the summed gradients).

Every run also reports the largest difference between the replicas' copies of the
trainable weights and momentum slots (replica_spread_max_abs: 0 when they stay equal)
and how far the weights of the modules no step's architecture ran have moved
(untaken_moved_max_abs).

`--gaps` also reports what the other choice would give: the fixed child with
per-replica BatchNorm and the shared child against the plain whole-batch step.
The result is one line, `RESULT {json}`, with per comparison the losses and the
largest absolute difference and the largest ratio |a - b| / (atol + rtol |a|)
over all weights (rtol=1e-5, atol=1e-6: <= 1 means numpy.allclose holds).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from enas_face import distribute  # noqa: E402  (imports TF, does not initialise devices)

RTOL, ATOL = 1e-5, 1e-6


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--replicas", type=int, default=2)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--batch", type=int, default=16, help="global batch")
  parser.add_argument("--children", default="fixed,shared,shared_taken",
                      help="comma-separated: fixed, shared (--shared_update=all), shared_taken "
                           "(--shared_update=taken, in the mirrored step and the reference)")
  parser.add_argument("--gaps", action="store_true",
                      help="also measure the alternative BatchNorm choice of each child")
  args = parser.parse_args()
  distribute.split_cpu(args.replicas)  # before anything touches a device

  import keras
  import numpy as np
  import tensorflow as tf

  from enas_face.models import heads
  from enas_face.spaces import enas_macro
  from enas_face.training import shared_update
  from enas_face.training import step as train_lib
  from enas_face.models.child import FixedChild, SharedChild
  from enas_face.config import ModelConfig, TrainConfig

  # No DropBlock, no dropout: their random masks differ per replica by design.
  model = ModelConfig(image_size=16, num_layers=3, num_reductions=1, base_filters=4,
                      embedding_dim=8, dropblock_keep_prob=1.0)
  train = TrainConfig(lr_max=0.1, warmup_epochs=0, epochs=10)
  num_classes, size, batch = 5, model.image_size, args.batch
  rng = np.random.default_rng(0)
  batches = [(rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32),
              rng.integers(0, num_classes, batch).astype(np.int32)) for _ in range(args.steps)]
  images = np.stack([b[0] for b in batches])
  mean, std = images.mean(axis=(0, 1, 2, 3)), images.std(axis=(0, 1, 2, 3))
  # Every op, skips on and off; the fixed child: both convolutions (BatchNorm) and two skips.
  arcs = ([[0, 1, 1, 2, 1, 0], [3, 0, 0, 1, 1, 1], [1, 2, 1, 0, 0, 1]] * args.steps)[:args.steps]
  fixed_arc = enas_macro.Architecture.from_ints([0, 1, 1, 0, 1, 1])
  mirrored = distribute.make_placement("mirrored", args.replicas)
  default = distribute.make_placement("default")
  replicas = mirrored.num_replicas

  def build(kind: str, placement, start=None):
    kind = "shared" if kind == "shared_taken" else kind
    with placement.strategy.scope():
      keras.utils.set_random_seed(1)
      child = (FixedChild(model, fixed_arc, name="child") if kind == "fixed"
               else SharedChild(model, name="child")).build_for_input()
      head = heads.SoftmaxHead(num_classes, name="head")
      head.build((None, model.embedding_dim))
      optimizer = train_lib.make_optimizer(train, steps_per_epoch=10, epochs=train.epochs)
      optimizer.build(child.trainable_variables + head.trainable_variables)
    if start is None:
      child.standardize.set_statistics(mean, std)  # as training does: inputs ~ N(0, 1)
    else:  # identical starting point
      child.set_weights(start[0].get_weights())
      head.set_weights(start[1].get_weights())
    return child, head, optimizer

  def ghost_step(child, head, optimizer, update):
    """One device: sum over the replicas' slices of sum(CE) / global batch, BatchNorm
    statistics per slice; one SGD step on the gradient of the sum."""
    variables = child.trainable_variables + head.trainable_variables
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, reduction=None)
    part = batch // replicas
    taken = (shared_update.TakenUpdate(optimizer, variables, child.conditional_variables())
             if update == "taken" else None)

    @tf.function
    def step(x, y, arc):
      with tf.GradientTape() as tape:
        loss = 0.0
        for r in range(replicas):
          logits = head(child(x[r * part:(r + 1) * part], arc=arc, training=True), training=True)
          loss += tf.reduce_sum(loss_fn(tf.one_hot(y[r * part:(r + 1) * part], num_classes),
                                        logits)) / batch
      gradients = tape.gradient(loss, variables)
      if taken is None:
        optimizer.apply_gradients(zip(gradients, variables))
      else:
        taken(gradients, arc)
      return loss, 0.0, optimizer.learning_rate

    return step

  def train_steps(kind, placement, start, ghost=False, synchronized=True):
    """Losses and weights after `steps` steps from `start`."""
    update = "taken" if kind == "shared_taken" else "all"
    kind = "shared" if kind == "shared_taken" else kind
    child, head, optimizer = build(kind, placement, start)
    if not synchronized:
      distribute.per_replica_batch_norm(child)
    if ghost:
      step = ghost_step(child, head, optimizer, update)
    else:
      step = train_lib.make_train_step(
          child, head, optimizer, 0.0, num_classes, batch, placement.strategy,
          takes_arc=kind == "shared",
          shared_update=update)
    losses = []
    for (x, y), arc in zip(batches, arcs):
      ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
      for xs, ys in distribute.distribute_dataset(placement, ds):
        extra = (tf.constant(arc, tf.int32),) if kind == "shared" else ()
        losses.append(float(step(xs, ys, *extra)[0]))
    variables = child.weights + head.weights if kind == "fixed" else (
        child.trainable_weights + head.trainable_weights)
    # Every replica's copy of every trainable weight and momentum slot must stay equal.
    spread = 0.0
    for v in child.trainable_weights + head.trainable_weights:
      for tracked in (v, optimizer.momentums[optimizer._get_variable_index(v)]):  # pylint: disable=protected-access
        copies = [np.asarray(c) for c in placement.strategy.experimental_local_results(
            tracked.value)]
        spread = max([spread] + [float(np.max(np.abs(c - copies[0]))) for c in copies])
    untaken = set()
    if kind == "shared":  # modules no step's architecture ran
      for condition, module_variables in child.conditional_variables():
        if not any(arc[p] == value for arc in arcs for p, value in condition):
          untaken |= {v.path for v in module_variables}
    return losses, {v.path: np.asarray(v.numpy()) for v in variables}, spread, untaken

  def compare(reference, other):
    (ref_losses, ref_weights), (losses, weights) = reference[:2], other[:2]
    report = {"losses": losses, "reference_losses": ref_losses,
              "loss_max_abs": max(abs(a - b) for a, b in zip(ref_losses, losses)),
              "loss_max_rel": max(abs(a - b) / abs(a) for a, b in zip(ref_losses, losses)),
              "weight_max_abs": 0.0, "weight_max_ratio": 0.0, "worst": "",
              "compared_weights": len(ref_weights)}
    for name, a in ref_weights.items():
      diff = np.abs(a - weights[name])
      ratio = float(np.max(diff / (ATOL + RTOL * np.abs(a))))
      report["weight_max_abs"] = max(report["weight_max_abs"], float(np.max(diff)))
      if ratio > report["weight_max_ratio"]:
        report["weight_max_ratio"], report["worst"] = ratio, name
    return report

  result = {"replicas": replicas, "steps": args.steps, "global_batch": batch,
            "rtol": RTOL, "atol": ATOL}
  for kind in args.children.split(","):
    start = build(kind, default)
    initial = {v.path: np.asarray(v.numpy()) for v in start[0].weights + start[1].weights}
    synchronized = kind == "fixed"
    reference = train_steps(kind, default, start, ghost=not synchronized)
    run = train_steps(kind, mirrored, start, synchronized=synchronized)
    entry = {"weights_moved_max_abs": max(float(np.max(np.abs(w - initial[n])))
                                          for n, w in reference[1].items()),
             "mirrored": dict(compare(reference, run), replica_spread_max_abs=run[2],
                              untaken_weights=len(run[3]),
                              untaken_moved_max_abs=max(
                                  [0.0] + [float(np.max(np.abs(run[1][n] - initial[n])))
                                           for n in run[3]]))}
    if args.gaps and kind == "fixed":
      entry["gap_per_replica_batch_norm"] = compare(
          reference, train_steps(kind, mirrored, start, synchronized=False))
    if args.gaps and kind == "shared":
      # Whole-batch statistics (what synchronised BatchNorm would give) against per slice.
      entry["gap_whole_batch_reference"] = compare(train_steps(kind, default, start), reference)
    result[kind] = entry
  print("RESULT " + json.dumps(result))


if __name__ == "__main__":
  main()
