"""Given architectures scored with a finished (or running) one-shot search's shared weights:
the supernet's ranking, to set against stand-alone training (a NAS-Bench table).

The run's shared model and head are rebuilt from its config.json and latest checkpoint,
and scored by strategies.OneShot, the code that scores the search's own samples. Metrics:

  reward        the run's reward metric on its whole reward data (OneShot.score(whole=True):
                top-1 on the validation split, or the reward pairs' 10-fold accuracy): the
                score the search's final candidates get;
  verification  the 10-fold verification accuracy of the dataset's evaluation pairs (what
                stand-alone training reports in metrics.json, here without its test-time
                flip). For comparing with a table only: a search never rewards with them.

BatchNorm (`bn`):

  batch         every batch normalised by its own statistics: what the search does (ENAS),
                as the moving averages mix every architecture trained;
  recalibrate   per architecture, the moving statistics recomputed on N training images
                (a seeded sample, no augmentation) in batches of B, then inference with them
                (TuNAS's and NAS-Bench-style practice: BN statistics per architecture).
                Per BatchNorm layer, with mu_b and s2_b its training-mode moments on batch b:

                    mean = (1/n) sum_b mu_b,   var = (1/n) sum_b (s2_b + mu_b^2) - mean^2

                (the moments of all N images, each batch normalised upstream by its own
                statistics). Moments are read from one training-mode pass per batch with the
                moving statistics zeroed: Keras's update leaves moving = (1 - momentum) * moment.

The scorer never writes the run folder: recalibrated statistics live in this process only.
"""
from __future__ import annotations

import os
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from enas_face import distribute
from enas_face import runlog
from enas_face import spaces
from enas_face.config import ONE_SHOT, ConfigError
from enas_face.data import load_dataset
from enas_face.evaluation import verification
from enas_face.search import loop
from enas_face.search import strategies
from enas_face.training import checkpoints
from enas_face.training import fixed

METRICS = ("reward", "verification")
BN_MODES = ("batch", "recalibrate")


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
  return [layer for layer in model._flatten_layers()  # pylint: disable=protected-access
          if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate_batch_norm(model: keras.Model, forward, batches: Sequence[np.ndarray]) -> int:
  """Sets every BatchNorm layer's moving statistics to the training-mode moments of
  `batches` (the module docstring's mean and var); `forward(batch)` runs the model in
  training mode. Layers that did not run (blocks an architecture skips) keep theirs.
  Returns the number of layers recalibrated."""
  layers = batch_norm_layers(model)
  sums = [[0.0, 0.0] for _ in layers]
  for batch in batches:
    for layer in layers:
      layer.moving_mean.assign(tf.zeros_like(layer.moving_mean))
      layer.moving_variance.assign(tf.zeros_like(layer.moving_variance))
    forward(batch)
    for total, layer in zip(sums, layers):
      scale = 1.0 / (1.0 - layer.momentum)
      mean = layer.moving_mean.numpy().astype(np.float64) * scale
      variance = layer.moving_variance.numpy().astype(np.float64) * scale
      total[0] = total[0] + mean
      total[1] = total[1] + variance + mean * mean
  count, recalibrated = len(batches), 0
  for (mean_sum, square_sum), layer in zip(sums, layers):
    if not np.any(square_sum):  # never ran: leave it (its zeroed statistics are unused here)
      continue
    mean = mean_sum / count
    layer.moving_mean.assign(mean.astype(np.float32))
    layer.moving_variance.assign(np.maximum(square_sum / count - mean * mean, 0.0).astype(np.float32))
    recalibrated += 1
  return recalibrated


class SupernetScorer:
  """A one-shot search's shared weights, restored once, scoring architectures."""

  def __init__(self, run_dir: str, recalibration_images: int = 256,
               recalibration_batch_size: int = 0):
    config = spaces.load_config(os.path.join(run_dir, runlog.CONFIG))
    if config.mode != "search" or config.search.strategy != ONE_SHOT:
      raise ConfigError(f"{run_dir}: not a one-shot search (mode {config.mode}, strategy "
                        f"{config.search.strategy}); the supernet score needs shared weights")
    path = checkpoints.latest(checkpoints.checkpoint_dir(run_dir))
    if path is None:
      raise ConfigError(f"{run_dir}: no checkpoint yet (the search has not finished an epoch)")
    self.config, self.checkpoint = config, path
    self.space = spaces.of(config.model)
    self.dataset = load_dataset(config.data)
    train, reward = loop.reward_data(config, self.dataset)
    placement = distribute.make_placement("default")
    self.strategy = strategies.OneShot(config, self.space, train, reward, placement,
                                       fixed.training_steps_per_epoch(config, train, placement))
    checkpoints.restore(path, child=self.strategy.child, head=self.strategy.head)
    images = train.train_sample.images
    count = min(recalibration_images, len(images))
    chosen = np.sort(np.random.default_rng([config.train.seed, 3571]).choice(
        len(images), count, replace=False))
    size = recalibration_batch_size or reward.batch_size
    self.calibration = [images[chosen[s:s + size]].astype(np.float32)
                        for s in range(0, count, size)]
    child = self.strategy.child

    @tf.function
    def forward(images, arc):
      return child(images, arc=arc, training=True)

    self._forward = forward
    self.epochs_trained = int(tf.train.load_variable(path, "epoch/.ATTRIBUTES/VARIABLE_VALUE"))

  def choices(self, encoding) -> np.ndarray:
    """An encoding (a list of ints, or the space's string) as checked int32 choices."""
    model = self.config.model
    if isinstance(encoding, str):
      return np.array(self.space.encode(self.space.from_string(encoding, model)), np.int32)
    return np.array(self.space.check_choices(encoding, model), np.int32)

  def recalibrate(self, choices: np.ndarray) -> int:
    """BatchNorm statistics of the architecture `choices` (recalibrate_batch_norm)."""
    arc = tf.constant(choices, tf.int32)
    return recalibrate_batch_norm(self.strategy.child,
                                  lambda batch: self._forward(tf.constant(batch), arc),
                                  self.calibration)

  def score(self, encoding, metric: str = "verification", bn: str = "batch") -> float:
    """The `metric` (METRICS) of `encoding` with the shared weights, BatchNorm by `bn`."""
    if metric not in METRICS or bn not in BN_MODES:
      raise ValueError(f"metric must be one of {METRICS} and bn one of {BN_MODES}, got "
                       f"{metric!r}, {bn!r}")
    choices = self.choices(encoding)
    batch_statistics = bn == "batch"
    if not batch_statistics:
      self.recalibrate(choices)
    if metric == "reward":
      return float(self.strategy.score(choices, whole=True, batch_statistics=batch_statistics))
    pairs = self.dataset.pairs
    embeddings = self.strategy.embed(pairs.images, choices, batch_statistics)
    return float(verification.verification_report(
        embeddings, pairs.pairs, pairs.is_same, num_folds=pairs.num_folds)["verification_accuracy"])


def score_run(run_dir: str, encodings, metric: str = "verification", bn: str = "batch",
              recalibration_images: int = 256) -> list[float]:
  """Each encoding's score with the shared weights of the one-shot search in `run_dir`."""
  scorer = SupernetScorer(run_dir, recalibration_images)
  return [scorer.score(encoding, metric, bn) for encoding in encodings]
