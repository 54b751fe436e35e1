"""Optimiser, loss and train step: the seam every loss plugs into.

    L = w_CE (1/B) sum_b CE(softmax(z_b), smooth(onehot(y_b)))  +  sum_k w_k L_k

z = head(child(x), y, t): the head's training logits (heads.py: softmax or a margin
on the cosines); label smoothing acts on the one-hot target whatever the head.
w_CE is 1 but with a KL distillation term (1 - alpha, distill.py). L_k are extra terms:
per-example ones (distillation) are averaged over the
global batch B like the cross-entropy, whole-model ones (RegularFace) are
divided among the replicas, so N replicas take one device's step.

With unlabelled images (--unlabelled) a step also takes a batch U of B_u images without
labels; the child embeds both batches in one pass (BatchNorm statistics over B + B_u
images). The cross-entropy stays over the labelled batch L; a per-example term that reads
unlabelled rows (ExtraLoss.unlabelled: distillation) is averaged over both, the others as
above:

    L = w_CE (1/B) sum_{b in L} CE_b  +  sum_{k unlabelled} w_k (1/(B + B_u)) sum_{i in L u U} L_k,i
                                      +  sum_{k other} (as above)

TaskLoss is L, built once per run with the terms of `run_terms` (the flags' RegularFace,
the teacher's distillation): the train step of fixed training and of the one-shot search,
and both steps of the differentiable width/depth search (run_task_loss), evaluate it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import keras
import tensorflow as tf
from absl import logging

from enas_face.config import SHARED_UPDATES, HeadConfig, RunConfig, TrainConfig
from enas_face.models import heads
from enas_face.training import schedules
from enas_face.training import shared_update as shared_update_lib


@dataclasses.dataclass(frozen=True)
class UnlabelledRows:
  """A step's unlabelled batch: images [U, S, S, 3], the child's embeddings of them and their
  precomputed teacher embeddings [U, D_t] (or None)."""
  images: tf.Tensor
  embeddings: tf.Tensor
  targets: tf.Tensor | None = None


@dataclasses.dataclass(frozen=True)
class LossInputs:
  """What an extra loss term may read: the batch, the child's output and the head; targets:
  the batch's precomputed teacher embeddings [B, D_t] when the pipeline carries them;
  unlabelled: the step's unlabelled rows, or None."""
  images: tf.Tensor
  labels: tf.Tensor
  embeddings: tf.Tensor
  logits: tf.Tensor
  head: keras.layers.Layer
  targets: tf.Tensor | None = None
  unlabelled: UnlabelledRows | None = None

  def with_unlabelled(self):
    """(images, embeddings, targets) of the labelled rows followed by the unlabelled ones
    (the labelled rows alone without them; targets None when the batch has none)."""
    if self.unlabelled is None:
      return self.images, self.embeddings, self.targets
    u = self.unlabelled
    targets = None if self.targets is None else tf.concat([self.targets, u.targets], 0)
    return (tf.concat([self.images, u.images], 0),
            tf.concat([self.embeddings, u.embeddings], 0), targets)


@dataclasses.dataclass(frozen=True)
class ExtraLoss:
  """weight * fn(inputs): a scalar (per_example=False) or a [B] vector (per_example=True);
  unlabelled=True: the vector is [B + B_u] over LossInputs.with_unlabelled()'s rows,
  averaged over B + B_u. fn may return a dict of such values instead (the term's components,
  e.g. distillation's embedding and relational parts): the term is their sum, and each is
  logged on its own. `layer`'s trainable weights (distillation's projection) train with
  the child's."""
  name: str
  weight: float
  fn: Callable[[LossInputs], tf.Tensor]
  per_example: bool = False
  layer: keras.layers.Layer | None = None
  unlabelled: bool = False


def extra_variables(extra) -> list:
  """The trainable weights the extra terms bring (their layers')."""
  return [v for term in extra if term.layer is not None for v in term.layer.trainable_variables]


def regularface_term(weight: float) -> ExtraLoss:
  """RegularFace on the head's class weights (heads.regularface_loss)."""
  return ExtraLoss("regularface", weight,
                   lambda inputs: heads.regularface_loss(inputs.head.class_weights))


def extra_losses(head_config: HeadConfig) -> list[ExtraLoss]:
  """The extra terms a head configuration asks for (RegularFace when its weight > 0)."""
  return [regularface_term(head_config.regularface_weight)] if head_config.regularface_weight else []


def run_terms(head_config: HeadConfig, distillation=None) -> tuple[list[ExtraLoss], float]:
  """(extra terms, w_CE) of a run: RegularFace when --regularface_weight > 0 and, with a
  teacher (distill.Distillation), its term with w_CE = 1 - alpha; else w_CE = 1."""
  extra = extra_losses(head_config)
  if distillation is None:
    return extra, 1.0
  return extra + [distillation.term()], distillation.cross_entropy_weight


class TaskLoss:
  """L above on one replica's batch, built once: `loss(images, labels, embeddings, step[,
  targets, unlabelled])` -> (L, the head's scores).

      L = w_CE sum_b CE_b / B  +  sum_{k per-example} w_k sum_b L_k,b / B
                               +  sum_{k whole-model} w_k L_k / N

  z_b = head.training_logits(e_b, y_b, step); B the global batch, N the replicas. With
  `unlabelled` rows (UnlabelledRows, B_u = unlabelled_batch_size globally) a term with
  ExtraLoss.unlabelled sums over the B + B_u rows and divides by B + B_u.
  `variables` are what L trains besides the embedder: the head's and the extra terms'
  layers' (distillation's projection).
  """

  def __init__(self, head: keras.layers.Layer, num_classes: int, label_smoothing: float,
               global_batch_size: int, extra: list[ExtraLoss] | tuple = (),
               cross_entropy_weight: float = 1.0, unlabelled_batch_size: int = 0):
    self.head, self.num_classes, self.global_batch_size = head, num_classes, global_batch_size
    self.extra, self.cross_entropy_weight = tuple(extra), cross_entropy_weight
    self.unlabelled_batch_size = unlabelled_batch_size
    self.cross_entropy = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=label_smoothing, reduction=None)

  @property
  def variables(self) -> list:
    return self.head.trainable_variables + extra_variables(self.extra)

  def __call__(self, images, labels, embeddings, step, targets=None,
               unlabelled: UnlabelledRows | None = None):
    loss, scores, _ = self.with_terms(images, labels, embeddings, step, targets, unlabelled)
    return loss, scores

  def with_terms(self, images, labels, embeddings, step, targets=None,
                 unlabelled: UnlabelledRows | None = None):
    """(L, the head's scores, {name: this replica's share of each weighted term}): the
    terms sum to L; "cross_entropy" is w_CE CE, an extra term is "<name>" or, when its fn
    returns components, "<name>/<component>"."""
    logits, scores = self.head.training_logits(embeddings, labels, step=step)
    per_example = self.cross_entropy(tf.one_hot(labels, self.num_classes, dtype=tf.float32),
                                     tf.cast(logits, tf.float32))
    terms = {"cross_entropy": self.cross_entropy_weight * tf.nn.compute_average_loss(
        per_example, global_batch_size=self.global_batch_size)}
    inputs = LossInputs(images, labels, embeddings, logits, self.head, targets, unlabelled)
    for term in self.extra:
      rows = self.global_batch_size + (
          self.unlabelled_batch_size if term.unlabelled and unlabelled is not None else 0)
      values = term.fn(inputs)
      parts = ({f"{term.name}/{key}": value for key, value in values.items()}
               if isinstance(values, dict) else {term.name: values})
      for name, value in parts.items():
        value = tf.cast(value, tf.float32)
        terms[name] = term.weight * (
            tf.nn.compute_average_loss(value, global_batch_size=rows)
            if term.per_example else tf.nn.scale_regularization_loss(value))
    return tf.add_n(list(terms.values())), scores, terms


def run_task_loss(config: RunConfig, head: keras.layers.Layer, num_classes: int,
                  distillation=None) -> TaskLoss:
  """The run's L: its head and label smoothing, B = --batch_size, the terms of run_terms."""
  return TaskLoss(head, num_classes, config.train.label_smoothing, config.train.batch_size,
                  *run_terms(config.head, distillation))


def make_optimizer(train: TrainConfig, steps_per_epoch: int, epochs: int) -> keras.optimizers.SGD:
  """SGD(momentum, decoupled weight decay) on warmup + Eq. 6 over `epochs` epochs.

  Keras's `weight_decay` is decoupled (w <- w - lr wd w every step) and applies
  to all trainable weights, as original ENAS applied L2 to all weights (the one-shot
  search with --shared_update=taken: to those the step ran, shared_update.py).
  """
  schedule = schedules.WarmupSharpenedCosine(
      train.lr_max, train.lr_min, warmup_steps=train.warmup_epochs * steps_per_epoch,
      total_steps=epochs * steps_per_epoch,
      period_steps=train.cosine_period_epochs * steps_per_epoch,
      period_mult=train.cosine_period_mult)
  return keras.optimizers.SGD(learning_rate=schedule, momentum=train.momentum,
                              weight_decay=train.weight_decay)


def batch_accuracy(scores, labels):
  """Number of rows whose argmax score is the label (cosines for normalised heads)."""
  hits = tf.equal(tf.argmax(scores, -1, output_type=tf.int32), tf.cast(labels, tf.int32))
  return tf.reduce_sum(tf.cast(hits, tf.float32))


def make_train_step(child: keras.Model, head: keras.layers.Layer,
                    optimizer: keras.optimizers.Optimizer, label_smoothing: float,
                    num_classes: int, global_batch_size: int,
                    strategy: tf.distribute.Strategy | None = None, takes_arc: bool = False,
                    extra: list[ExtraLoss] | tuple = (), cross_entropy_weight: float = 1.0,
                    shared_update: str = "all", unlabelled_batch_size: int = 0):
  """One SGD step on L above (TaskLoss of `extra` and `cross_entropy_weight`).

  B is the global batch: each replica sums its own examples' losses and divides
  by B, and the optimiser sums the replicas' gradients (Keras all-reduce).
  Returns (loss, batch accuracy, learning rate, {term: its part of the loss}) (TaskLoss.
  with_terms); the accuracy is the argmax of the head's scores (no margin). With
  `takes_arc` (the shared child) the step is
  `train_step(images, labels, arc)`, arc an int32 tensor shared by every
  replica, so a new architecture does not retrace; else `train_step(images, labels[,
  targets][, unlabelled])`, targets the batch's precomputed teacher embeddings
  (LossInputs.targets) and unlabelled a dict {"images": [B_u, S, S, 3][, "targets"]} (the
  pipeline's with_unlabelled), embedded in the same pass as the labelled images.
  `shared_update` (--shared_update, with `takes_arc`): "all" applies the optimizer to every
  variable; "taken" only to those the step's architecture ran (shared_update.TakenUpdate:
  same arithmetic, same optimizer state).
  """
  strategy = strategy or tf.distribute.get_strategy()
  task_loss = TaskLoss(head, num_classes, label_smoothing, global_batch_size, extra,
                       cross_entropy_weight, unlabelled_batch_size)
  variables = child.trainable_variables + task_loss.variables
  if shared_update not in SHARED_UPDATES:
    raise ValueError(f"--shared_update={shared_update!r}; expected one of "
                     f"{', '.join(SHARED_UPDATES)}")
  taken_update = None
  if shared_update == "taken":
    if not takes_arc or not hasattr(child, "conditional_variables"):
      raise ValueError(f"--shared_update=taken needs a weight-sharing child that takes the "
                       f"architecture (SharedChild, the MobileFaceNet supernet), not "
                       f"{type(child).__name__}")
    with strategy.scope():
      rows = child.row_variables() if hasattr(child, "row_variables") else ()
      taken_update = shared_update_lib.TakenUpdate(optimizer, variables,
                                                   child.conditional_variables(), rows)

  def replica_step(images, labels, targets=None, unlabelled=None, **child_kwargs):
    with tf.GradientTape() as tape:
      if unlabelled is None:
        embeddings, rows = child(images, training=True, **child_kwargs), None
      else:  # logged once a replica, when traced
        logging.info("train step traced: %s labelled + %s unlabelled images a step (a replica)",
                     images.shape[0], unlabelled["images"].shape[0])
        both = child(tf.concat([images, unlabelled["images"]], 0), training=True,
                     **child_kwargs)
        count = tf.shape(images)[0]
        embeddings = both[:count]
        rows = UnlabelledRows(unlabelled["images"], both[count:], unlabelled.get("targets"))
      loss, scores, terms = task_loss.with_terms(images, labels, embeddings,
                                                 optimizer.iterations, targets, rows)
    gradients = tape.gradient(loss, variables)
    if taken_update is None:
      optimizer.apply_gradients(zip(gradients, variables))
    else:
      taken_update(gradients, child_kwargs["arc"])
    return loss, batch_accuracy(scores, labels) / global_batch_size, terms

  def step(images, labels, *rest, **child_kwargs):
    """rest: (targets,), (unlabelled,) or (targets, unlabelled); unlabelled is the dict."""
    unlabelled = rest[-1] if rest and isinstance(rest[-1], dict) else None
    targets = rest[0] if rest and not isinstance(rest[0], dict) else None
    args = (images, labels) if targets is None else (images, labels, targets)
    kwargs = dict(child_kwargs, **({"unlabelled": unlabelled} if unlabelled is not None else {}))

    loss, correct, terms = strategy.run(replica_step, args=args, kwargs=kwargs)
    total = tf.distribute.ReduceOp.SUM
    return (strategy.reduce(total, loss, axis=None), strategy.reduce(total, correct, axis=None),
            optimizer.learning_rate,
            {name: strategy.reduce(total, value, axis=None) for name, value in terms.items()})

  if takes_arc:
    return tf.function(lambda images, labels, arc: step(images, labels, arc=arc))
  return tf.function(step)
