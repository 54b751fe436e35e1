"""Differentiable width/depth search with an optional teacher (--search_strategy=differentiable).

Mechanics of TAS (Dong & Yang 2019; METHODS.md §4), the closest public relative of the
teacher-guided NAS seed (Wang 2021), on the mobilefacenet supernet:

  * one logit vector a_k per decision (initialised N(0, 0.01)); p_k = softmax(a_k);
  * width decisions: two candidates drawn by Gumbel top-2 on a_k + g, mixed with
    softmax((a + g)_{top2} / tau); depth decisions: the stage output sum_d p_d h_d;
  * E[FLOPs] (spaces/mobilefacenet.flops_formula) with E[C] = sum_k p_k C_k and
    P(depth >= b) = sum_{d >= b} p_d;
  * L_F = log E[FLOPs] if the argmax architecture's FLOPs > T, -log E[FLOPs] if they are
    < T (1 - tol), else 0;
  * alternating steps on two fixed halves of the training split: weights (supernet, head,
    distillation projection) by SGD on the task loss (half A), logits by Adam (lr 1e-3,
    wd 1e-3) on task loss + lambda_F L_F (half B);
  * tau from tau_max to tau_min on a cosine over the epochs; read-out: argmax p_k.

The task loss L is the training seam's (training/step.py TaskLoss, the loss of --mode=fixed):

    L = w_CE CE(head(e, y), y) + w_R RegularFace(W) + L_distill

with the --head's CE, RegularFace on its class weights W when --regularface_weight = w_R > 0,
and with --distill_from the distillation term (distill.py; then w_CE = 1 - alpha). A teacher
embeddings file (precomputed targets) is looked up for each half's images by their keys and
its targets ride through the input pipeline beside them, as in fixed training. Using the
teacher during the search is the seed's teacher guidance as we implement it (inferred:
METHODS.md §4); without a teacher this is TAS-like search.

Run folder: checkpoints/ (supernet, head, logits, both optimisers, epoch), distributions.jsonl
(per epoch: losses, tau, p_k of every decision, E[FLOPs], the argmax architecture, its FLOPs
and its validation accuracy with the supernet's weights), distributions.png,
arcs_ranked.json (the argmax architecture, for --mode=fixed --arc_file) and
search_summary.json. A rerun resumes after the last finished epoch.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from enas_face.config import DIFFERENTIABLE, ConfigError, RunConfig
from enas_face.data.base import FaceDataset, LabelledImages
from enas_face.data import pipeline
from enas_face import distribute
from enas_face.models import builders
from enas_face.models.heads import build_head
from enas_face.models import mobilefacenet as model_lib
from enas_face import runlog
from enas_face.search import plots
from enas_face import spaces
from enas_face.spaces import mobilefacenet as space_lib
from enas_face.training import checkpoints
from enas_face.training import distill as distill_lib
from enas_face.training import fixed
from enas_face.training import loop
from enas_face.training import step as train_lib



def temperature(epoch: int, epochs: int, tau_max: float, tau_min: float) -> float:
  """tau_e = tau_min + (tau_max - tau_min) (1 + cos(pi e / (E - 1))) / 2, e = 0..E-1."""
  if epochs <= 1:
    return tau_max
  return tau_min + (tau_max - tau_min) * (1 + math.cos(math.pi * epoch / (epochs - 1))) / 2


def flops_loss_sign(argmax_flops: float, target: float, tolerance: float) -> float:
  """+1 (push E[FLOPs] down) over T, -1 (push it up) under T (1 - tol), else 0."""
  if argmax_flops > target:
    return 1.0
  if argmax_flops < target * (1 - tolerance):
    return -1.0
  return 0.0


class Distributions(keras.layers.Layer):
  """The logits a [D, K] of every decision (choices beyond a decision's count masked)."""

  def __init__(self, model_config, seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.space = space_lib.MobileFaceNetSpace()
    self.model_config = model_config
    decisions = self.space.decisions(model_config)
    self.names = [d.name for d in decisions]
    self.num_choices = [d.num_choices for d in decisions]
    self.max_choices = max(self.num_choices)
    valid = np.arange(self.max_choices)[None, :] < np.array(self.num_choices)[:, None]
    self.valid = tf.constant(valid)
    self.is_depth = tf.constant([name.endswith("_depth") for name in self.names])
    self.seed = seed
    self.logits = self.add_weight(
        shape=(len(decisions), self.max_choices),
        initializer=keras.initializers.RandomNormal(0.0, 0.01, seed=seed), name="logits")

  def masked_logits(self):
    return tf.where(self.valid, self.logits, tf.fill(tf.shape(self.logits), -1e9))

  def probabilities(self):
    """p_k = softmax(a_k) per decision (0 for choices a decision lacks), [D, K]."""
    return tf.nn.softmax(self.masked_logits(), axis=-1)

  def sample(self, tau, seed):
    """The supernet's mixing weights [D, K]: Gumbel top-2 for widths, p for depths."""
    logits = self.masked_logits()
    uniform = tf.random.stateless_uniform(tf.shape(logits), seed, minval=1e-10, maxval=1.0)
    perturbed = logits - tf.math.log(-tf.math.log(uniform))
    top, indices = tf.math.top_k(perturbed, k=2)
    two = tf.nn.softmax(top / tau, axis=-1)  # [D, 2]
    gumbel = tf.reduce_sum(two[..., None] * tf.one_hot(indices, self.max_choices), axis=1)
    return tf.where(self.is_depth[:, None], self.probabilities(), gumbel)

  def argmax_choices(self) -> list[int]:
    probs = self.probabilities().numpy()
    return [int(np.argmax(row[:n])) for row, n in zip(probs, self.num_choices)]

  def argmax_sample(self) -> space_lib.Shape:
    return self.space.decode(self.argmax_choices(), self.model_config)


def candidate_channels(model_config, max_channels: int) -> tf.Tensor:
  """[K]: the channel count of every width ratio."""
  return tf.constant([space_lib.channels(max_channels, model_config.width_multiplier, r)
                      for r in space_lib.WIDTH_RATIOS], tf.float32)


def expected_flops(model_config, probabilities):
  """E[FLOPs] of the distributions (probabilities [D, K], rows in decision order)."""
  rows = {name: i for i, name in enumerate(space_lib.decision_names())}
  k = len(space_lib.WIDTH_RATIOS)

  def expected(decision, max_channels):
    return tf.reduce_sum(probabilities[rows[decision]][:k]
                         * candidate_channels(model_config, max_channels))

  widths, expansions, depth_weights = [], [], []
  for stage in space_lib.STAGES:
    widths.append(expected(f"{stage.name}_width", stage.channels))
    expansions.append([expected(f"{stage.name}_expansion", e) for e in stage.expansions])
    p = probabilities[rows[f"{stage.name}_depth"]][:stage.max_depth]
    at_least = tf.math.cumsum(p, reverse=True)  # P(depth >= b + 1), b = 0..n-1
    depth_weights.append([at_least[b] for b in range(stage.max_depth)])
  return space_lib.flops_formula(
      model_config.image_size, model_config.embedding_dim,
      expected("stem_width", space_lib.STEM_CHANNELS), widths, expansions,
      expected("head_width", space_lib.HEAD_CHANNELS), depth_weights)


def flops_loss(expected, sign, weight: float):
  """lambda_F * sign * log E[FLOPs] (sign from flops_loss_sign)."""
  return weight * sign * tf.math.log(expected)


def half_rows(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """The rows of two disjoint halves of a training split: each identity's images shuffled
  (seeded) and dealt alternately, so both halves hold every identity with 2+ images."""
  rng = np.random.default_rng(seed)
  first, second = [], []
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    first.extend(members[0::2])
    second.extend(members[1::2])
  return np.sort(np.array(first, int)), np.sort(np.array(second, int))


def split_halves(train: LabelledImages, seed: int) -> tuple[LabelledImages, LabelledImages]:
  """The two halves of `half_rows` (images, labels and paths)."""
  return tuple(train.take(rows) for rows in half_rows(train.labels, seed))


def make_steps(supernet: keras.Model, distributions: Distributions,
               task_loss: train_lib.TaskLoss, optimizer: keras.optimizers.Optimizer,
               arch_optimizer: keras.optimizers.Optimizer, model_config, flops_weight: float):
  """(weight_step, arch_step): the alternating updates on L = task_loss of the supernet's
  embeddings e = supernet(x, m), m = distributions.sample(tau, seed).

      weight_step(x, y, tau, seed[, t]) -> (L, batch accuracy, lr): w <- SGD(dL/dw), m held
        fixed, w the supernet's weights and task_loss.variables (head, distillation projection);
      arch_step(x, y, tau, seed, sign[, t]) -> (L, E[FLOPs]): a <- Adam(d(L + L_F)/da),
        L_F = flops_weight * sign * log E[FLOPs].

  t: the batch's precomputed teacher embeddings (an embeddings-file teacher; LossInputs.targets).
  Both return L before their update (one device: B the batch); the head's margin schedule
  reads optimizer.iterations.
  """
  weight_variables = supernet.trainable_variables + task_loss.variables

  def loss_on(images, labels, mix, targets):
    embeddings = supernet(images, mix=mix, training=True)
    return task_loss(images, labels, embeddings, optimizer.iterations, targets)

  @tf.function
  def weight_step(images, labels, tau, seed, targets=None):
    mix = tf.stop_gradient(distributions.sample(tau, seed))
    with tf.GradientTape() as tape:
      loss, scores = loss_on(images, labels, mix, targets)
    optimizer.apply_gradients(zip(tape.gradient(loss, weight_variables), weight_variables))
    accuracy = train_lib.batch_accuracy(scores, labels) / tf.cast(tf.shape(labels)[0], tf.float32)
    return loss, accuracy, optimizer.learning_rate

  @tf.function
  def arch_step(images, labels, tau, seed, sign, targets=None):
    with tf.GradientTape() as tape:
      loss, _ = loss_on(images, labels, distributions.sample(tau, seed), targets)
      expected = expected_flops(model_config, distributions.probabilities())
      total = loss + flops_loss(expected, sign, flops_weight)
    gradients = tape.gradient(total, [distributions.logits])
    arch_optimizer.apply_gradients(zip(gradients, [distributions.logits]))
    return loss, expected

  return weight_step, arch_step


@dataclasses.dataclass
class SearchState:
  """What the search trains and checkpoints, its loss (TaskLoss) and its two steps."""
  supernet: keras.Model
  head: keras.layers.Layer
  distributions: Distributions
  distillation: distill_lib.Distillation | None
  task_loss: train_lib.TaskLoss
  optimizer: keras.optimizers.Optimizer
  arch_optimizer: keras.optimizers.Optimizer
  epoch: tf.Variable
  weight_step: object
  arch_step: object


def create_state(config: RunConfig, num_classes: int, steps_per_epoch: int,
                 placement: distribute.Placement) -> SearchState:
  """Builds supernet, head, distributions, the teacher's distillation, the run's loss
  (train_lib.run_task_loss: as --mode=fixed's) and both optimisers in the strategy's
  scope, and the steps on them (make_steps)."""
  search_cfg, train_cfg, model_cfg = config.search, config.train, config.model
  with placement.strategy.scope():
    supernet = builders.build_supernet(model_cfg, name="supernet")
    head = build_head(config.head, num_classes, model_cfg.embedding_dim)
    head(tf.zeros((1, model_cfg.embedding_dim)))
    distributions = Distributions(model_cfg, seed=train_cfg.seed, name="distributions")
    distillation = distill_lib.build(config.distill, model_cfg.embedding_dim, num_classes)
    task_loss = train_lib.run_task_loss(config, head, num_classes, distillation)
    optimizer = train_lib.make_optimizer(train_cfg, steps_per_epoch, search_cfg.epochs)
    optimizer.build(supernet.trainable_variables + task_loss.variables)
    arch_optimizer = keras.optimizers.Adam(search_cfg.arch_lr,
                                           weight_decay=search_cfg.arch_weight_decay or None)
    arch_optimizer.build([distributions.logits])
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
  weight_step, arch_step = make_steps(supernet, distributions, task_loss, optimizer,
                                      arch_optimizer, model_cfg, search_cfg.flops_loss_weight)
  return SearchState(supernet, head, distributions, distillation, task_loss, optimizer,
                     arch_optimizer, epoch, weight_step, arch_step)


def log_path(run_dir: str) -> str:
  return os.path.join(run_dir, runlog.DISTRIBUTIONS)


def search(config: RunConfig, dataset: FaceDataset,
           placement: distribute.Placement | None = None) -> dict:
  """Runs (or resumes) the width/depth search; returns the summary (search_summary.json)."""
  placement = placement or distribute.make_placement("default")
  search_cfg, train_cfg, model_cfg = config.search, config.train, config.model
  space = spaces.of(model_cfg)
  if dataset.streamed:
    raise ConfigError("--search_strategy=differentiable splits the training split in two "
                      "halves in memory; use --stream=never")
  rows = half_rows(dataset.train.labels, config.data.seed)
  half_a, half_b = (dataset.train.take(r) for r in rows)
  batch = train_cfg.batch_size
  steps = loop.steps_per_epoch(batch, min(len(half_a.labels), len(half_b.labels)), 1)
  built = create_state(config, dataset.num_classes, steps, placement)
  supernet, head, distributions, distillation = (built.supernet, built.head, built.distributions,
                                                 built.distillation)
  optimizer, arch_optimizer, epoch = built.optimizer, built.arch_optimizer, built.epoch
  checkpoint = tf.train.Checkpoint(
      supernet=supernet, head=head, distributions=distributions, optimizer=optimizer,
      arch_optimizer=arch_optimizer, epoch=epoch,
      **({"distill": distillation.projection} if distillation else {}))
  manager = tf.train.CheckpointManager(checkpoint, checkpoints.checkpoint_dir(config.run_dir),
                                       max_to_keep=train_cfg.keep_checkpoints)
  mean = loop.restore_or_start(manager, supernet, dataset, "width/depth search", epoch,
                               search_cfg.epochs, checkpoints.checkpoint_dir(config.run_dir))
  weight_step, arch_step = built.weight_step, built.arch_step

  state = {"tau": search_cfg.tau_max, "arch_losses": [], "signs": []}

  def argmax_flops() -> int:
    return space.flops(model_cfg, distributions.argmax_sample())

  # An embeddings-file teacher: the split's targets (looked up by key), each half's beside its
  # images (as in fixed training); a teacher that runs on the batch needs none.
  targets = distillation.training_targets(dataset.train) if distillation is not None else None
  targets_a, targets_b = (None, None) if targets is None else (targets[r] for r in rows)

  def both_halves(index: int):
    def batches(part, offset, targets):
      return pipeline.train_dataset(part, batch, mean, seed=train_cfg.seed + offset, epoch=index,
                                    random_flip=config.data.random_flip, pad=config.data.pad,
                                    cutout=config.data.cutout, targets=targets).take(steps)
    return zip(batches(half_a, 0, targets_a), batches(half_b, 7919, targets_b))

  def train_epoch(index: int) -> loop.EpochResult:
    tau = temperature(index, search_cfg.epochs, search_cfg.tau_max, search_cfg.tau_min)
    state.update(tau=tau, arch_losses=[], signs=[])
    tau_t = tf.constant(tau, tf.float32)

    def combined_step(a, b, step):
      """a, b: (images, labels[, targets]) of half A (weights) and half B (logits)."""
      seed = tf.constant([train_cfg.seed, index * 100003 + 2 * step], tf.int32)
      loss, accuracy, lr = weight_step(*a[:2], tau_t, seed, *a[2:])
      sign = flops_loss_sign(argmax_flops(), search_cfg.cost_target, search_cfg.flops_tolerance)
      arch_loss, _ = arch_step(*b[:2], tau_t, seed + [0, 1], tf.constant(sign, tf.float32),
                               *b[2:])
      state["arch_losses"].append(float(arch_loss))
      state["signs"].append(sign)
      return loss, accuracy, lr

    # run_epoch unpacks (images, labels, *targets) per batch: each slot holds both halves'.
    flat = (tuple(zip(a, b)) for a, b in both_halves(index))
    return loop.run_epoch(
        lambda images, labels, *rest: combined_step(
            (images[0], labels[0], *(t[0] for t in rest[:-1])),
            (images[1], labels[1], *(t[1] for t in rest[:-1])), rest[-1]),
        flat, steps, batch, index, config.run_dir, placement.is_chief,
        step_args=lambda step: (step,))

  @tf.function
  def embed_argmax(images, mix):
    return supernet(images, mix=mix, training=False)

  def finish_epoch(index: int, result: loop.EpochResult) -> list[dict]:
    sample = distributions.argmax_sample()
    mix = tf.constant(model_lib.one_hot_mix(model_cfg, sample))
    def embed(images):
      return np.concatenate([embed_argmax(b, mix).numpy() for b in
                             pipeline.eval_dataset(images, config.eval.batch_size)])

    val_accuracy = fixed.classification_accuracy(embed, head, dataset.val.images,
                                                 dataset.val.labels)
    probabilities = distributions.probabilities().numpy()
    record = {
        "epoch": index + 1, "tau": state["tau"], "loss": result.loss,
        "train_accuracy": result.accuracy, "arch_loss": float(np.mean(state["arch_losses"])),
        "lr": result.lr, "seconds": result.seconds,
        "expected_flops": float(expected_flops(model_cfg, probabilities)),
        "argmax_flops": space.flops(model_cfg, sample),
        "argmax_params": space.params(model_cfg, sample),
        "argmax_val_accuracy": val_accuracy,
        "flops_loss_sign": {"down": state["signs"].count(1.0), "up": state["signs"].count(-1.0),
                            "none": state["signs"].count(0.0)},
        **spaces.sample_record(space, sample),
        "probabilities": {name: [round(float(p), 5) for p in row[:n]] for name, row, n in
                          zip(distributions.names, probabilities, distributions.num_choices)}}
    logging.info("epoch %d/%d  tau %.2f  loss %.3f  E[FLOPs] %.3g  argmax %.3g FLOPs (T %.3g)  "
                 "val acc %.3f  %s", index + 1, search_cfg.epochs, state["tau"], result.loss,
                 record["expected_flops"], record["argmax_flops"], search_cfg.cost_target,
                 val_accuracy, space.describe(sample))
    return [record]

  tic = time.perf_counter()
  loop.run_epochs(epoch=epoch, epochs=search_cfg.epochs, manager=manager,
                  log_path=log_path(config.run_dir), chief=placement.is_chief,
                  train_epoch=train_epoch, finish_epoch=finish_epoch)
  return write_results(config, distributions, time.perf_counter() - tic, distillation)


def write_results(config: RunConfig, distributions: Distributions, seconds: float,
                  distillation) -> dict:
  """arcs_ranked.json (the argmax architecture), distributions.png and search_summary.json."""
  space, model_cfg, search_cfg = spaces.of(config.model), config.model, config.search
  sample = distributions.argmax_sample()
  flops, params = space.flops(model_cfg, sample), space.params(model_cfg, sample)
  entry = {**spaces.sample_record(space, sample), "description": space.describe(sample),
           "flops": flops, "params": params, "cost": flops, "cost_unit": "FLOPs",
           "cost_model": "flops", "within_budget": flops <= search_cfg.cost_target, "rank": 1,
           "probabilities": [float(p) for p in
                             np.max(distributions.probabilities().numpy(), axis=-1)]}
  runlog.write_json(os.path.join(config.run_dir, runlog.ARCS_RANKED), {
      "space": space.name, "strategy": DIFFERENTIABLE,
      "ranked_by": "argmax of the learned distributions", "cost_model": "flops",
      "cost_unit": "FLOPs", "cost_target": search_cfg.cost_target,
      "teacher": config.distill.teacher, "architectures": [entry]})
  records = runlog.read(log_path(config.run_dir))
  labels = {d.name: ([str(d_ + 1) for d_ in range(d.num_choices)] if d.name.endswith("_depth")
                     else [f"{r:g}" for r in space_lib.WIDTH_RATIOS])
            for d in space.decisions(model_cfg)}
  plot = plots.plot_distributions(records, os.path.join(config.run_dir, runlog.DISTRIBUTIONS_PLOT),
                                  search_cfg.cost_target, labels)
  full = space.default(model_cfg)
  summary = {"space": space.name, "strategy": DIFFERENTIABLE, "epochs": search_cfg.epochs,
             "teacher": config.distill.teacher or None,
             "distillation": (None if distillation is None else
                              {"embedding_weight": config.distill.embedding_weight,
                               "kl_alpha": config.distill.kl_alpha,
                               "temperature": config.distill.temperature}),
             "cost_target": search_cfg.cost_target, "best": entry,
             "supernet_flops": space.flops(model_cfg, full),
             "supernet_params": space.params(model_cfg, full),
             "final_expected_flops": records[-1]["expected_flops"] if records else None,
             "seconds_this_invocation": seconds, "plot": plot,
             "retrain": "python -m enas_face.main --mode=fixed --search_space=mobilefacenet "
                        f"--arc_file={os.path.join(config.run_dir, runlog.ARCS_RANKED)} "
                        "--run_dir=RETRAIN_DIR [--distill_from=TEACHER] (with the search's data "
                        "and model flags)"}
  runlog.write_json(os.path.join(config.run_dir, runlog.SEARCH_SUMMARY), summary)
  logging.info("width/depth search: %s, %d FLOPs (target %g), %d params", space.describe(sample),
               flops, search_cfg.cost_target, params)
  return summary
