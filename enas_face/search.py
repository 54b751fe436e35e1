"""The alternating ENAS search (Zhu 2019, Algorithm 1).

Each epoch:
  1. child training: one pass over the training split; before every minibatch
     the sampler draws an architecture and the shared child takes one SGD step
     on it (warmup + Eq. 6 schedule over the search epochs);
  2. controller training: S steps; each draws Q architectures, scores each on
     its own validation minibatch with the shared weights (accuracy), measures
     its batch-1 latency, computes the reward and, for the ENAS controller, takes
     one REINFORCE step on the Q (architecture, reward) pairs.
After the last epoch, `num_final_samples` architectures are drawn, scored on the
whole validation split and ranked by validation accuracy (Algorithm 2 trains the
best from scratch: `--mode=fixed --arc_file=RUN_DIR/arcs_ranked.json --top_k=3`).

Run folder: sampled_arcs.jsonl (one line per rewarded architecture), checkpoints/
(child, head, both optimisers, controller, baseline, random state, epoch),
latency_cache.jsonl, tensorboard/, arcs_ranked.json, search_summary.json and
accuracy_vs_latency.png. A rerun resumes after the last finished epoch, and the
log is cut back to that epoch so it has no gap and no duplicate.
"""
from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.python.eager import context as eager_context  # clear_kernel_cache: no public API

from enas_face import controller as controller_lib
from enas_face import cost
from enas_face import distribute
from enas_face import fixed
from enas_face import latency
from enas_face import plots
from enas_face import reward as reward_lib
from enas_face import runlog
from enas_face.spaces import enas_macro
from enas_face.child import FixedChild, SharedChild
from enas_face.config import RunConfig
from enas_face.data import pipeline
from enas_face.data.base import FaceDataset, LabelledImages
from enas_face.heads import build_head
from enas_face.training import loop
from enas_face.training import step as train_lib

LOG_NAME = "sampled_arcs.jsonl"
RANKED_NAME = "arcs_ranked.json"
SUMMARY_NAME = "search_summary.json"
PLOT_NAME = "accuracy_vs_latency.png"
# Every newly measured architecture is a new tf.function (the latency probe), and TF's
# eager kernel cache keeps its kernels (~35 KB) for the life of the process: a long
# search grew ~0.65 MB per 100 child steps (bench/bench_search_memory.py). Clearing
# the cache costs one re-instantiation of the train step (~5 s at 16x16), so it is
# cleared after this many new measurements: growth stays under ~20 MB for ~1 % time.
KERNEL_CACHE_CLEAR_EVERY = 500


@dataclasses.dataclass
class SearchState:
  """Everything a search checkpoint holds."""
  child: SharedChild
  head: keras.layers.Layer
  child_optimizer: keras.optimizers.Optimizer
  sampler: controller_lib.Controller | controller_lib.RandomSampler
  trainer: controller_lib.ReinforceTrainer | None
  epoch: tf.Variable
  controller_step: tf.Variable
  manager: tf.train.CheckpointManager


def create_state(config: RunConfig, num_classes: int, steps_per_epoch: int,
                 placement: distribute.Placement) -> SearchState:
  """Shared child, head and their optimiser in the strategy's scope (mirrored); the
  controller outside it (it runs on the chief's host only)."""
  search = config.search
  with placement.strategy.scope():
    child = SharedChild(config.model, name="child").build_for_input()
    if placement.name != "default":
      distribute.per_replica_batch_norm(child)  # synchronised BN fails inside tf.cond
    head = build_head(config.head, num_classes, config.model.embedding_dim)
    child_optimizer = train_lib.make_optimizer(config.train, steps_per_epoch, search.epochs)
    child_optimizer.build(child.trainable_variables + head.trainable_variables)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    controller_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="controller_step")
  decisions = enas_macro.decisions(config.model.num_layers)
  tracked = {}
  if search.controller == "enas":
    sampler = controller_lib.Controller(
        decisions, hidden_units=search.controller_hidden,
        temperature=search.controller_temperature or None,
        tanh_constant=search.controller_tanh_constant or None, skip_target=search.skip_target,
        seed=config.train.seed, name="controller")
    schedule = controller_lib.piecewise_lr(
        search.controller_lr, search.controller_lr_min,
        steps_per_decay=search.controller_lr_decay_epochs * search.controller_steps)
    optimizer = controller_lib.controller_optimizer(search.controller_optimizer, schedule)
    optimizer.build(sampler.trainable_variables)
    trainer = controller_lib.ReinforceTrainer(
        sampler, optimizer, baseline_decay=search.baseline_decay,
        entropy_weight=search.entropy_weight, skip_weight=search.skip_weight,
        grad_clip_norm=search.grad_clip_norm)
    tracked = {"controller_optimizer": optimizer, "baseline": trainer.baseline}
  else:
    sampler = controller_lib.RandomSampler(decisions, seed=config.train.seed,
                                           skip_target=search.skip_target)
    trainer = None
  checkpoint = tf.train.Checkpoint(child=child, head=head, child_optimizer=child_optimizer,
                                   sampler=sampler, epoch=epoch, controller_step=controller_step,
                                   random_state=loop.random_state(child), **tracked)
  manager = tf.train.CheckpointManager(checkpoint, placement.checkpoint_dir(config.run_dir),
                                       max_to_keep=config.train.keep_checkpoints)
  return SearchState(child, head, child_optimizer, sampler, trainer, epoch, controller_step,
                     manager)


def make_accuracy_step(child: SharedChild, head: keras.layers.Layer):
  """Top-1 of the head's argmax (cosines for a margin head) on a batch for architecture
  `arc` with the shared weights (BatchNorm on batch statistics: see SharedChild.call)."""

  @tf.function
  def accuracy(images, labels, arc):
    scores = head(child(images, arc=arc, training=False, batch_statistics=True))
    return train_lib.batch_accuracy(scores, labels) / tf.cast(tf.shape(labels)[0], tf.float32)

  return accuracy


def validation_batches(split: LabelledImages, batch_size: int, seed: int):
  """Endless (images, labels) minibatches of the validation split, reshuffled each pass."""
  batch_size = min(batch_size, len(split))
  for rounds in range(1 << 62):
    order = np.random.default_rng([seed, 7919, rounds]).permutation(len(split))
    for start in range(0, len(order) - batch_size + 1, batch_size):
      idx = order[start:start + batch_size]
      yield (tf.constant(split.images[idx], tf.float32),
             tf.constant(split.labels[idx].astype(np.int32)))


def log_path(run_dir: str) -> str:
  return os.path.join(run_dir, LOG_NAME)


def read_log(run_dir: str) -> list[dict]:
  """The rewarded architectures of a search (a torn last line is dropped)."""
  return runlog.read(log_path(run_dir))


def search(config: RunConfig, dataset: FaceDataset,
           placement: distribute.Placement | None = None) -> dict:
  """Runs (or resumes) the search; returns the summary also written to search_summary.json.

  Under a multi-worker strategy only the chief samples, rewards, updates the
  controller and writes; the others train the shared child on the chief's
  architectures and return an empty summary.
  """
  placement = placement or distribute.make_placement("default")
  chief = placement.is_chief
  search_cfg, train_cfg = config.search, config.train
  steps_per_epoch = fixed.training_steps_per_epoch(config, dataset, placement)
  state = create_state(config, dataset.num_classes, steps_per_epoch, placement)
  mean = loop.restore_or_start(state.manager, state.child, dataset, "search", state.epoch,
                               search_cfg.epochs, loop.checkpoint_dir(config.run_dir))

  meter = latency.LatencyMeter(config.model, warmup=search_cfg.latency_warmup,
                               repeats=search_cfg.latency_repeats,
                               cache_path=search_cfg.latency_cache or os.path.join(
                                   config.run_dir, "latency_cache.jsonl"))
  reward_fn = reward_lib.make_reward(search_cfg.reward, search_cfg.target_latency_ms,
                                     search_cfg.latency_exponent)
  logging.info("latency: %s", meter.describe())
  train_step = train_lib.make_train_step(
      state.child, state.head, state.child_optimizer, train_cfg.label_smoothing,
      dataset.num_classes, train_cfg.batch_size, placement.strategy, takes_arc=True,
      extra=train_lib.extra_losses(config.head))
  accuracy_step = make_accuracy_step(state.child, state.head)
  writer = tf.summary.create_file_writer(os.path.join(config.run_dir, "tensorboard")) if chief else None
  sampler_name = search_cfg.controller
  child_seconds_total = 0.0
  tic_search = time.perf_counter()
  arc_length = len(enas_macro.decisions(config.model.num_layers))
  measured_at_clear = 0

  def train_epoch(epoch: int) -> loop.EpochResult:
    """Child training: one architecture per step, drawn by the chief, shared by every replica."""
    nonlocal child_seconds_total
    ds = pipeline.train_dataset(dataset.train, train_cfg.batch_size, mean, seed=train_cfg.seed,
                                epoch=epoch, random_flip=config.data.random_flip,
                                pad=config.data.pad, cutout=config.data.cutout)
    if chief:
      epoch_arcs = np.stack([state.sampler.sample().arc.numpy() for _ in range(steps_per_epoch)])
    else:
      epoch_arcs = np.zeros([steps_per_epoch, arc_length], np.int32)
    epoch_arcs = distribute.broadcast_from_chief(placement, epoch_arcs.astype(np.int32))
    result = loop.run_epoch(train_step, distribute.distribute_dataset(placement, ds),
                            steps_per_epoch, train_cfg.batch_size, epoch, config.run_dir, chief,
                            step_args=lambda step: (tf.constant(epoch_arcs[step]),))
    child_seconds_total += result.seconds
    return result

  def finish_epoch(epoch: int, result: loop.EpochResult) -> list[dict]:
    """Controller training (the chief): S steps of Q rewarded samples; returns their records."""
    nonlocal measured_at_clear
    val_iter = validation_batches(dataset.val, search_cfg.val_batch_size, seed=train_cfg.seed + epoch)
    epoch_records, updates = [], []
    for _ in range(search_cfg.controller_steps if chief else 0):
      arcs, rewards = [], []
      for sample_index in range(search_cfg.controller_samples):
        sample = state.sampler.sample()
        arc = enas_macro.Architecture.from_ints(sample.arc.numpy().tolist())
        images, labels = next(val_iter)
        val_acc = float(accuracy_step(images, labels, sample.arc))
        lat = meter(arc)
        r = float(reward_fn(val_acc, lat.median_ms))
        arcs.append(sample.arc.numpy())
        rewards.append(r)
        epoch_records.append({
            "epoch": epoch + 1, "step": int(state.controller_step.numpy()) + 1,
            "sample": sample_index, "arc": arc.to_string(), "val_accuracy": val_acc,
            "latency_ms": lat.median_ms, "latency_cv": lat.cv, "reward": r,
            "log_prob": float(sample.log_prob), "sampler": sampler_name})
      if state.trainer is not None:
        updates.append(state.trainer.update(np.stack(arcs).astype(np.int32),
                                            np.asarray(rewards, np.float32)))
      state.controller_step.assign_add(1)

    if meter.measured - measured_at_clear >= KERNEL_CACHE_CLEAR_EVERY:
      eager_context.context().clear_kernel_cache()
      measured_at_clear = meter.measured
    if not chief:
      return []
    summary = {"child_loss": result.loss, "child_lr": result.lr,
               "child_images_per_second": result.images_per_second,
               "reward_mean": float(np.mean([r["reward"] for r in epoch_records])),
               "val_accuracy_mean": float(np.mean([r["val_accuracy"] for r in epoch_records])),
               "latency_ms_mean": float(np.mean([r["latency_ms"] for r in epoch_records]))}
    if updates:
      for key in ("baseline", "entropy", "skip_density", "loss", "grad_norm"):
        summary[f"controller_{key}"] = float(np.mean([u[key] for u in updates]))
    with writer.as_default(step=epoch + 1):
      for key, value in summary.items():
        tf.summary.scalar(key, value)
    logging.info("search epoch %d/%d  child loss %.3f (%.0f img/s)  reward %.4f  val acc %.3f  "
                 "latency %.2f ms  %s", epoch + 1, search_cfg.epochs, summary["child_loss"],
                 summary["child_images_per_second"], summary["reward_mean"],
                 summary["val_accuracy_mean"], summary["latency_ms_mean"],
                 f"entropy {summary['controller_entropy']:.2f} skip density "
                 f"{summary['controller_skip_density']:.2f}" if updates else "(random search)")
    return epoch_records

  loop.run_epochs(epoch=state.epoch, epochs=search_cfg.epochs, manager=state.manager,
                  log_path=log_path(config.run_dir), chief=chief, train_epoch=train_epoch,
                  finish_epoch=finish_epoch)
  placement.cleanup(config.run_dir)
  if not chief:
    return {}
  writer.flush()

  ranked = rank_final_samples(config, dataset, state, meter, reward_fn)
  records = read_log(config.run_dir)
  plots.plot_accuracy_vs_latency(
      records, os.path.join(config.run_dir, PLOT_NAME),
      target_ms=search_cfg.target_latency_ms, highlight=[e["arc_string"] for e in ranked[:3]],
      title=f"{sampler_name} search: sampled architectures")
  summary = {
      "controller": sampler_name, "epochs": search_cfg.epochs,
      "rewarded_samples": len(records),
      "distinct_architectures": len({r["arc"] for r in records}),
      "final_samples": len(ranked),
      "final_val_accuracy_mean": float(np.mean([e["val_accuracy"] for e in ranked])),
      "final_val_accuracy_best": float(ranked[0]["val_accuracy"]),
      "final_latency_ms_mean": float(np.mean([e["latency_ms"] for e in ranked])),
      "final_reward_mean": float(np.mean([e["reward"] for e in ranked])),
      "last_epoch_reward_mean": float(np.mean([r["reward"] for r in records
                                               if r["epoch"] == search_cfg.epochs])),
      "latency_measurement": meter.describe(),
      "latency_measured": meter.measured,
      "search_wall_seconds_this_invocation": time.perf_counter() - tic_search,
      "child_train_seconds_this_invocation": child_seconds_total,
  }
  runlog.write_json(os.path.join(config.run_dir, SUMMARY_NAME), summary)
  return summary


def rank_final_samples(config: RunConfig, dataset: FaceDataset, state: SearchState,
                       meter: latency.LatencyMeter, reward_fn) -> list[dict]:
  """Draws num_final_samples architectures, scores each on the whole validation split
  with the shared weights, and writes the best num_ranked to arcs_ranked.json."""
  search_cfg = config.search
  accuracy_step = make_accuracy_step(state.child, state.head)
  val = dataset.val
  batch = min(config.eval.batch_size, len(val))
  seen, entries = set(), []
  for _ in range(search_cfg.num_final_samples):
    sample = state.sampler.sample()
    arc = enas_macro.Architecture.from_ints(sample.arc.numpy().tolist())
    if arc in seen:
      continue
    seen.add(arc)
    correct = 0.0
    for start in range(0, len(val), batch):
      images = tf.constant(val.images[start:start + batch], tf.float32)
      labels = tf.constant(val.labels[start:start + batch].astype(np.int32))
      correct += float(accuracy_step(images, labels, sample.arc)) * len(labels)
    val_acc = correct / len(val)
    lat = meter(arc)
    # A fixed name: TF 2.21's eager kernel cache is keyed on variable names, so
    # auto-numbered models would leak ~1 MB per architecture in a long run.
    model = FixedChild(config.model, arc, name="cost_probe").build_for_input()
    entries.append({"arc": arc.to_json(), "arc_string": arc.to_string(), "description": str(arc),
                    "val_accuracy": val_acc, "latency_ms": lat.median_ms, "latency_cv": lat.cv,
                    "reward": float(reward_fn(val_acc, lat.median_ms)),
                    "params": cost.count_params(model)["trainable"],
                    "flops": cost.count_flops(model, config.model.image_size),
                    "log_prob": float(sample.log_prob)})
    del model
  entries.sort(key=lambda e: (-e["val_accuracy"], -e["reward"]))
  for rank, entry in enumerate(entries, 1):
    entry["rank"] = rank
  runlog.write_json(os.path.join(config.run_dir, RANKED_NAME), {
      "ranked_by": "validation accuracy with the shared weights (ties: reward)",
      "controller": search_cfg.controller,
      "reward": search_cfg.reward, "target_latency_ms": search_cfg.target_latency_ms,
      "latency_exponent": search_cfg.latency_exponent,
      "architectures": entries[:search_cfg.num_ranked]})
  return entries
