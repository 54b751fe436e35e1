"""Search strategies: how a sample gets the score its reward is computed from.

one_shot (ENAS, Pham et al. 2018): one weight-sharing model holds every sample of the
  space. Each search epoch trains it for one pass, a freshly drawn sample per minibatch;
  a sample's score is its reward metric evaluated with the shared weights.
multi_trial (NAS-RL, Zoph & Le 2017; the strategy of searches over losses and data):
  each new sample is trained from scratch (or from --init_checkpoint's child weights)
  for --trial_epochs (the fixed-training
  library, in RUN_DIR/trials/<encoding>/), then scored; finished trials are cached in
  RUN_DIR/trials.jsonl and never trained twice (a resumed search re-draws the same
  samples and finds them there).

The reward metric (`RewardData`):
  classification: top-1 of argmax head(e(x)) on `reward_batches` validation minibatches
    (0 = the whole split) of images of the training identities;
  verification / verification_auc: 10-fold accuracy / ROC AUC of cosine scores on the
    pairs of the reward identities (held out of training, never the evaluation pairs).
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import socket
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from enas_face.config import MULTI_TRIAL, ONE_SHOT, ConfigError, RunConfig
from enas_face.data.base import FaceDataset, LabelledImages, VerificationPairs
from enas_face.data import cleaning
from enas_face.data import pipeline
from enas_face import distribute
from enas_face.evaluation import verification
from enas_face.models import builders
from enas_face.models.heads import build_head
from enas_face import runlog
from enas_face.search import ray_trials as trial_workers
from enas_face import spaces
from enas_face.spaces.base import SearchSpace
from enas_face.training import checkpoints
from enas_face.training import fixed
from enas_face.training import loop
from enas_face.training import step as train_lib

@dataclasses.dataclass(frozen=True)
class RewardData:
  """What a reward's score is measured on."""
  metric: str  # classification | verification | verification_auc
  val: LabelledImages
  pairs: VerificationPairs | None
  batch_size: int
  batches: int  # classification minibatches per score; 0 = the whole validation split
  seed: int

  def classification_batches(self, epoch: int, whole: bool = False):
    """Endless lists of `batches` (images, labels) minibatches, reshuffled every pass; with
    `whole` (or batches = 0), one list covering the whole split in order, forever."""
    size = min(self.batch_size, len(self.val))
    if whole or self.batches == 0:
      chunk = [(self.val.images[s:s + size], self.val.labels[s:s + size])
               for s in range(0, len(self.val), size)]
      while True:
        yield chunk
    pending = []
    for rounds in range(1 << 62):
      order = np.random.default_rng([self.seed + epoch, 7919, rounds]).permutation(len(self.val))
      for start in range(0, len(order) - size + 1, size):
        idx = order[start:start + size]
        pending.append((self.val.images[idx], self.val.labels[idx]))
        if len(pending) == self.batches:
          yield pending
          pending = []

  def verification_score(self, embeddings: np.ndarray) -> float:
    """10-fold accuracy (verification) or ROC AUC (verification_auc) of the reward pairs."""
    report = verification.verification_report(embeddings, self.pairs.pairs, self.pairs.is_same,
                                              num_folds=self.pairs.num_folds)
    return float(report["roc_auc" if self.metric == "verification_auc" else
                        "verification_accuracy"])


@dataclasses.dataclass
class Candidate:
  """A scored sample for the final ranking."""
  choices: np.ndarray
  score: float
  log_prob: float


class OneShot:
  """ENAS weight sharing: one supernet (models.builders.build_shared) trained with a sample per step."""
  name = ONE_SHOT
  collective_scoring = False  # only the chief scores; other workers wait at the next epoch

  def __init__(self, config: RunConfig, space: SearchSpace, dataset: FaceDataset,
               reward: RewardData, placement: distribute.Placement, steps_per_epoch: int):
    self.config, self.space, self.dataset, self.reward = config, space, dataset, reward
    self.placement, self.steps_per_epoch = placement, steps_per_epoch
    train = config.train
    with placement.strategy.scope():
      self.child = builders.build_shared(config.model, name="child")
      if placement.name != "default":
        distribute.per_replica_batch_norm(self.child)  # synchronised BN fails inside tf.cond
      self.head = build_head(config.head, dataset.num_classes, config.model.embedding_dim)
      self.optimizer = train_lib.make_optimizer(train, steps_per_epoch, config.search.epochs)
      self.optimizer.build(self.child.trainable_variables + self.head.trainable_variables)
    self.train_step = train_lib.make_train_step(
        self.child, self.head, self.optimizer, train.label_smoothing, dataset.num_classes,
        train.batch_size, placement.strategy, takes_arc=True,
        extra=train_lib.extra_losses(config.head), shared_update=config.search.shared_update)
    self.accuracy_step = make_accuracy_step(self.child, self.head)
    self.embed_step = make_embed_step(self.child)
    self.mean = None
    self._batches = None

  def trackables(self) -> dict:
    return {"child": self.child, "head": self.head, "child_optimizer": self.optimizer,
            "random_state": loop.random_state(self.child)}

  def start(self, restored: bool) -> None:
    """Channel statistics: from the training split on a fresh start, else the checkpoint's."""
    mean, std = pipeline.split_statistics(self.dataset.train)
    if not restored:
      self.child.standardize.set_statistics(mean, std)
    self.mean = mean

  def train_epoch(self, epoch: int, draw: Callable[[int], np.ndarray]) -> loop.EpochResult:
    """One pass over the training split, sample `draw(steps)[k]` at step k."""
    config, train = self.config, self.config.train
    batches = distribute.distribute_training_data(
        self.placement, lambda context: pipeline.train_dataset(
            self.dataset.train, train.batch_size, self.mean, seed=train.seed, epoch=epoch,
            random_flip=config.data.random_flip, pad=config.data.pad, cutout=config.data.cutout,
            input_context=context), self.dataset.streamed)
    arcs = draw(self.steps_per_epoch)
    return loop.run_epoch(self.train_step, batches,
                          self.steps_per_epoch, train.batch_size, epoch, config.run_dir,
                          self.placement.is_chief,
                          step_args=lambda step: (tf.constant(arcs[step]),))

  def begin_scoring(self, epoch: int) -> None:
    self._batches = self.reward.classification_batches(epoch)

  def score(self, choices: np.ndarray, whole: bool = False,
            batch_statistics: bool = True) -> float:
    """The reward metric of `choices` with the shared weights; BatchNorm on each batch's
    statistics (the search), or with `batch_statistics=False` on the moving ones (after
    they were recalibrated for these choices: supernet_score.py)."""
    arc = tf.constant(np.asarray(choices, np.int32))
    if self.reward.metric == "classification":
      batches = next(self.reward.classification_batches(0, whole=True)) if whole else \
          next(self._batches)
      correct = sum(float(self.accuracy_step(tf.constant(x, tf.float32),
                                             tf.constant(y.astype(np.int32)), arc,
                                             batch_statistics))
                    for x, y in batches)
      return correct / sum(len(y) for _, y in batches)
    return self.reward.verification_score(self.embed(self.reward.pairs.images, choices,
                                                     batch_statistics))

  def embed(self, images: np.ndarray, choices: np.ndarray,
            batch_statistics: bool = True) -> np.ndarray:
    """Embeddings of `images` for `choices` with the shared weights, in batches of the
    reward's batch size (BatchNorm as in `score`)."""
    arc = tf.constant(np.asarray(choices, np.int32))
    size = self.reward.batch_size
    return np.concatenate([
        self.embed_step(tf.constant(images[s:s + size], tf.float32), arc,
                        batch_statistics).numpy()
        for s in range(0, len(images), size)])

  def score_many(self, choices: np.ndarray, epoch: int) -> list[float]:
    del epoch
    return [self.score(row) for row in choices]

  def final_candidates(self, sampler, count: int) -> list[Candidate]:
    """`count` draws of the trained sampler, distinct ones scored on the whole reward data."""
    seen, out = set(), []
    for sample in (sampler.sample() for _ in range(count)):
      choices = sample.arc.numpy()
      if tuple(choices) in seen:
        continue
      seen.add(tuple(choices))
      out.append(Candidate(choices, self.score(choices, whole=True), float(sample.log_prob)))
    return out


def make_accuracy_step(child: keras.Model, head: keras.layers.Layer):
  """Number of correct top-1 predictions (head argmax) of a batch for architecture `arc`
  with the shared weights (BatchNorm on batch statistics: see SharedChild.call; on the
  moving ones with batch_statistics=False, a Python bool: one trace each)."""

  @tf.function
  def accuracy(images, labels, arc, batch_statistics=True):
    scores = head(child(images, arc=arc, training=False, batch_statistics=batch_statistics))
    return train_lib.batch_accuracy(scores, labels)

  return accuracy


def make_embed_step(child: keras.Model):
  """Embeddings of a batch for architecture `arc` with the shared weights (batch statistics,
  or the moving ones with batch_statistics=False)."""

  @tf.function
  def embed(images, arc, batch_statistics=True):
    return child(images, arc=arc, training=False, batch_statistics=batch_statistics)

  return embed


class MultiTrial:
  """Each sample trained from scratch for --trial_epochs, then scored; results cached."""
  name = MULTI_TRIAL
  collective_scoring = True  # every worker trains every trial; the chief scores

  def __init__(self, config: RunConfig, space: SearchSpace, dataset: FaceDataset,
               reward: RewardData, placement: distribute.Placement):
    self.config, self.space, self.dataset, self.reward = config, space, dataset, reward
    self.placement = placement
    self.path = os.path.join(config.run_dir, runlog.TRIALS)
    self.trials = {r["encoding"]: r for r in runlog.read(self.path)} if placement.is_chief else {}
    self.trained_this_invocation = 0
    self.runner = None
    if config.search.trial_workers > 1 or config.search.ray_address:
      if placement.name != "default":
        raise ConfigError(f"--trial_workers={config.search.trial_workers} / --ray_address run "
                          f"trials on Ray workers; --distribution_strategy={placement.name} is "
                          "not supported with them (each Ray worker trains on its own device)")
      self.runner = trial_workers.RayTrialRunner(run_trial, config.search.trial_workers,
                                                 config.search.ray_address,
                                                 config.search.trial_gpus)

  def trackables(self) -> dict:
    return {}

  def start(self, restored: bool) -> None:
    del restored

  def train_epoch(self, epoch: int, draw) -> loop.EpochResult:
    """Nothing is shared: the samples are trained when they are scored."""
    del epoch, draw
    return loop.EpochResult(float("nan"), float("nan"), float("nan"), 0.0, 0.0)

  def begin_scoring(self, epoch: int) -> None:
    del epoch

  def trial_config(self, sample) -> RunConfig:
    """The fixed-training config of one trial: the search's settings, trial_epochs epochs."""
    config = self.config
    epochs = config.search.trial_epochs
    encoding = self.space.to_string(sample)
    train = dataclasses.replace(config.train, epochs=epochs,
                                warmup_epochs=min(config.train.warmup_epochs, epochs - 1))
    return dataclasses.replace(
        config, mode="fixed", arc=sample, train=train, candidate_arcs=(), top_k=1,
        run_dir=os.path.join(config.run_dir, runlog.TRIALS_DIR,
                             encoding.replace(" ", "-") or "empty"))

  def score_many(self, choices: np.ndarray, epoch: int) -> list[float | None]:
    """Trains the samples not in the cache (every worker: `choices` [Q, n] are the chief's,
    broadcast by the search loop), scores them (the chief; None elsewhere). With Ray trial
    workers (--trial_workers > 1 or --ray_address) the new samples train side by side.
    With --halving_eta, successive halving over the Q samples (score_halving)."""
    if self.config.search.halving_eta:
      return self.score_halving(choices, epoch)
    chief = self.placement.is_chief
    samples = [self.space.decode(row.tolist(), self.config.model) for row in choices]
    encodings = [self.space.to_string(s) for s in samples]
    known = np.array([[e in self.trials] for e in encodings], np.int32)
    known = distribute.broadcast_from_chief(self.placement, known)
    new = {}  # encoding -> sample, each new sample once
    for sample, encoding, (cached,) in zip(samples, encodings, known):
      if not cached:
        new.setdefault(encoding, sample)
    configs = [self.trial_config(sample) for sample in new.values()]
    def finished(result: dict | None) -> None:
      self.trained_this_invocation += 1
      if result is not None:
        self._record(dict(result, search_epoch=epoch + 1))

    if self.runner is not None:
      self.runner.run(configs, self.dataset, self.reward, finished)
    else:
      for trial in configs:
        finished(run_trial(trial, self.dataset, self.reward, self.placement))
    if not chief:
      return [None] * len(samples)
    return [self.trials[encoding]["score"] for encoding in encodings]

  def score_halving(self, choices: np.ndarray, epoch: int) -> list[float]:
    """Successive halving (Jamieson & Talwalkar 2016; Li et al. 2018) over the step's distinct
    samples: all trained to the first rung of halving_rungs(E, eta), the best ceil(n / eta)
    resumed to the next, and so on; each sample scored at the last rung it reached. A trial's
    record keeps its score per rung reached ("rung_scores"), so nothing is trained twice."""
    eta, full = self.config.search.halving_eta, self.config.search.trial_epochs
    samples = [self.space.decode(row.tolist(), self.config.model) for row in choices]
    encodings = [self.space.to_string(s) for s in samples]
    alive = list(dict.fromkeys(encodings))
    by_encoding = dict(zip(encodings, samples))
    reached: dict[str, float] = {}
    rungs = halving_rungs(full, eta)
    for position, rung in enumerate(rungs):
      scores = {}
      for encoding in alive:
        known = self.trials.get(encoding, {}).get("rung_scores", {})
        if str(rung) not in known:
          result = run_trial(self.trial_config(by_encoding[encoding]), self.dataset,
                             self.reward, self.placement, stop_after=rung)
          self.trained_this_invocation += 1
          result["rung_scores"] = {**known, str(rung): result["score"]}
          self._record(dict(result, search_epoch=epoch + 1))
        scores[encoding] = float(self.trials[encoding]["rung_scores"][str(rung)])
      reached.update(scores)
      if position + 1 < len(rungs):
        keep = max(1, math.ceil(len(alive) / eta))
        alive = sorted(alive, key=lambda e: -scores[e])[:keep]
    return [reached[e] for e in encodings]

  def _record(self, record: dict) -> None:
    """Logs one finished trial in trials.jsonl and caches it (the chief)."""
    runlog.append(self.path, [record])
    self.trials[record["encoding"]] = record
    logging.info("trial %s: %s %.4f in %.0f s", record["encoding"], self.reward.metric,
                 record["score"], record["train_seconds"])

  def final_candidates(self, sampler, count: int) -> list[Candidate]:
    """Every trained trial (all have their full score already); log p under the sampler.
    Samples that could not be trained (a cleaning that left nothing to train on) are not
    candidates."""
    del count
    out = []
    for record in self.trials.values():
      if "not_trained" in record or record.get("trial_epochs", 0) < self.config.search.trial_epochs:
        continue  # not trained, or stopped at a lower rung of successive halving
      choices = np.array(self.space.encode(self.space.from_json(record["sample"],
                                                                self.config.model)), np.int32)
      out.append(Candidate(choices, float(record["score"]),
                           float(sampler.evaluate(choices).log_prob)))
    return out


def halving_rungs(epochs: int, eta: int) -> list[int]:
  """The epochs successive halving scores at: round(E / eta^2), round(E / eta), E (each at
  least 1, duplicates dropped), e.g. E = 10, eta = 3: [1, 3, 10]."""
  return sorted({max(1, round(epochs / eta ** 2)), max(1, round(epochs / eta)), epochs})


def run_trial(trial: RunConfig, dataset: FaceDataset, reward: RewardData,
              placement: distribute.Placement | None = None,
              stop_after: int | None = None) -> dict | None:
  """Trains one trial (a fixed run, resumable) and scores it: the record of trials.jsonl, or
  None on a non-chief worker. The trial's weights are deleted afterwards (its score is all
  the search needs again), unless `stop_after` stopped it before its last epoch (a rung of
  successive halving: it may be resumed)."""
  placement = placement or distribute.make_placement("default")
  keras.utils.set_random_seed(trial.train.seed)  # a trial's result does not depend on order
  os.makedirs(trial.run_dir, exist_ok=True)
  space = spaces.of(trial.model)
  record = {"encoding": space.to_string(trial.arc), "sample": space.to_json(trial.arc),
            "reward_metric": reward.metric,
            "trial_epochs": min(stop_after or trial.train.epochs, trial.train.epochs),
            "worker": f"{socket.gethostname()}:{os.getpid()}"}
  try:
    state = fixed.train(trial, dataset, placement, stop_after=stop_after)
  except cleaning.DegenerateCleaning as error:  # nothing to train: the worst score
    logging.info("trial %s not trained: %s", record["encoding"], error)
    return dict(record, score=0.0, train_seconds=0.0, final_train_loss=None,
                not_trained=str(error)) if placement.is_chief else None
  if not placement.is_chief:
    return None
  history = fixed.read_history(trial.run_dir)
  extractor = fixed.EmbeddingExtractor(state.child, trial.eval.batch_size)
  if reward.metric == "classification":
    score = fixed.classification_accuracy(extractor, state.head, reward.val.images,
                                          reward.val.labels)
  else:
    score = reward.verification_score(extractor(reward.pairs.images))
  record.update(score=score, train_seconds=float(sum(h["seconds"] for h in history)),
                final_train_loss=history[-1]["loss"] if history else None)
  if "cleaning" in state.dataset.report:
    record["cleaning"] = state.dataset.report["cleaning"]
  if record["trial_epochs"] == trial.train.epochs:
    shutil.rmtree(checkpoints.checkpoint_dir(trial.run_dir), ignore_errors=True)
  return record


# The strategies of the search loop by --search_strategy name (the differentiable search runs
# its own loop: differentiable.py).
LOOP_STRATEGIES = {OneShot.name: OneShot, MultiTrial.name: MultiTrial}


def make_strategy(config: RunConfig, space: SearchSpace, dataset: FaceDataset, reward: RewardData,
                  placement: distribute.Placement, steps_per_epoch: int):
  """The --search_strategy of `config`, one of LOOP_STRATEGIES."""
  name = config.search.strategy
  if name not in LOOP_STRATEGIES:
    raise ValueError(f"unknown search strategy {name!r}; expected one of "
                     f"{', '.join(LOOP_STRATEGIES)}")
  if name == OneShot.name:
    return OneShot(config, space, dataset, reward, placement, steps_per_epoch)
  return LOOP_STRATEGIES[name](config, space, dataset, reward, placement)
