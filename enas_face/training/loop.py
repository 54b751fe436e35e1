"""The epoch runner shared by fixed training and the search, and what surrounds it.

Per epoch: train over the split (progress bar, NaN stop at the first non-finite
loss), let the caller finish the epoch (validation, controller phase) and return
its log records, append them to the run log, then checkpoint. Records go to the
log before the checkpoint; on resume the log is cut back to the last
checkpointed epoch (runlog.truncate_to_epoch), so it has no gap and no duplicate.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from enas_face.config import ConfigError
from enas_face.data.base import FaceDataset
from enas_face.data import pipeline
from enas_face import runlog
from enas_face.training import checkpoints


def steps_per_epoch(batch_size: int, num_train: int, num_replicas: int) -> int:
  """floor(|train split| / global batch); errors name --batch_size if that is 0 or if the
  global batch does not split evenly over the replicas."""
  if batch_size % num_replicas:
    raise ConfigError(f"--batch_size={batch_size} (the global batch) must be a multiple of the "
                      f"{num_replicas} replicas")
  steps = num_train // batch_size
  if steps < 1:
    raise ConfigError(f"--batch_size={batch_size} is larger than the training split "
                      f"({num_train} images)")
  return steps


def random_state(model: keras.Model) -> dict[str, tf.Variable]:
  """The state of every Keras SeedGenerator in `model` (DropBlock's, Dropout's), named
  `<layer>_<n>` in a fixed traversal order, for the checkpoint. `tf.train.Checkpoint`
  does not find them itself (a SeedGenerator is not trackable): without this a
  resumed run restarted the DropBlock masks from their initial seed and no longer
  matched an uninterrupted run."""
  states = {}
  for layer in model._flatten_layers():  # pylint: disable=protected-access
    for generator in layer._seed_generators:  # pylint: disable=protected-access
      states[f"{layer.name}_{len(states)}"] = generator.state
  return states


def restore_or_start(manager: tf.train.CheckpointManager, child: keras.Model,
                     dataset: FaceDataset, what: str, epoch: tf.Variable, epochs: int,
                     restore_dir: str) -> np.ndarray:
  """Restores the latest checkpoint of `restore_dir` (the chief's), or starts by setting
  the child's standardisation to the training split's statistics; returns the
  per-channel mean (for augmentation)."""
  mean, std = pipeline.split_statistics(dataset.train)
  latest = checkpoints.resume(manager.checkpoint, restore_dir)
  if latest:
    logging.info("resuming %s from %s (epoch %d of %d)", what, latest, int(epoch.numpy()), epochs)
  else:
    child.standardize.set_statistics(mean, std)
  return mean


def check_finite(loss: float, epoch: int, step: int, run_dir: str) -> None:
  """Stops the run at the first NaN/inf loss; the checkpoints on disk stay as they were."""
  if np.isfinite(loss):
    return
  latest = checkpoints.latest(checkpoints.checkpoint_dir(run_dir))
  kept = (f"the last good checkpoint, {os.path.basename(latest)}, is kept in "
          f"{checkpoints.checkpoint_dir(run_dir)}" if latest else "no checkpoint was written yet")
  raise FloatingPointError(f"training loss is {loss} at epoch {epoch}, step {step}; stopping. "
                           f"{kept}. Lower --lr_max (or raise --warmup_epochs, or for a margin "
                           "head lower --margin_scale / --margin) and rerun.")


@dataclasses.dataclass
class EpochResult:
  """One pass over the training split."""
  loss: float  # mean over steps
  accuracy: float  # mean batch accuracy
  lr: float  # at the last step
  seconds: float
  images_per_second: float
  terms: dict = dataclasses.field(default_factory=dict)  # {term: mean over steps}, sum = loss


def run_epoch(train_step: Callable, batches: Iterable, num_steps: int, batch_size: int,
              epoch: int, run_dir: str, verbose: bool,
              step_args: Callable[[int], tuple] = lambda step: ()) -> EpochResult:
  """Calls `train_step(images, labels[, targets], *step_args(step))` on every batch (targets:
  a batch's precomputed teacher embeddings, when the pipeline carries them); stops at a
  non-finite loss (check_finite). The step returns (loss, accuracy, lr[, {term: value}])."""
  progbar = keras.utils.Progbar(num_steps, stateful_metrics=["lr"], verbose=1 if verbose else 0)
  losses, accuracies, lr, terms = [], [], float("nan"), {}
  tic = time.perf_counter()
  for step, (images, labels, *targets) in enumerate(batches):
    loss, acc, lr, *rest = train_step(images, labels, *targets, *step_args(step))
    loss, acc, lr = float(loss), float(acc), float(lr)
    check_finite(loss, epoch + 1, step + 1, run_dir)
    losses.append(loss)
    accuracies.append(acc)
    for name, value in (rest[0] if rest else {}).items():
      terms.setdefault(name, []).append(float(value))
    progbar.update(step + 1, [("loss", loss), ("acc", acc), ("lr", lr)])
  seconds = time.perf_counter() - tic
  return EpochResult(float(np.mean(losses)), float(np.mean(accuracies)), lr, seconds,
                     num_steps * batch_size / seconds,
                     {name: float(np.mean(values)) for name, values in terms.items()})


def run_epochs(*, epoch: tf.Variable, epochs: int, manager: tf.train.CheckpointManager,
               log_path: str, chief: bool, train_epoch: Callable[[int], EpochResult],
               finish_epoch: Callable[[int, EpochResult], list[dict]]) -> None:
  """From the checkpointed epoch to `epochs`: train_epoch, finish_epoch (its records go
  to the JSONL log at `log_path`, the chief only), then the checkpoint (every worker
  saves: a tf.distribute rule)."""
  start = int(epoch.numpy())
  if chief:
    runlog.truncate_to_epoch(log_path, start)
  for index in range(start, epochs):
    result = train_epoch(index)
    records = finish_epoch(index, result)
    if chief:
      runlog.append(log_path, records)
    epoch.assign(index + 1)
    manager.save(checkpoint_number=index + 1)
