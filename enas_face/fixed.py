"""Training one architecture from scratch, and evaluating it.

Optimiser (paper Section 4): SGD, momentum 0.9, weight decay 1e-4, linear
warmup to lr_max then Eq. 6 down to lr_min; loss = softmax cross-entropy with
optional label smoothing. Keras's `weight_decay` is decoupled
(w <- w - lr * wd * w every step) and applies to all trainable weights, as
original ENAS applied L2 to all weights.

A run folder holds `checkpoints/` (one per epoch, `tf.train.CheckpointManager`):
rerunning with the same folder resumes after the last finished epoch.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from enas_face import cost
from enas_face import distribute
from enas_face import heads
from enas_face import schedules
from enas_face import verification
from enas_face.child import FixedChild
from enas_face.config import ConfigError, RunConfig, TrainConfig
from enas_face.data import pipeline
from enas_face.data.base import FaceDataset


HISTORY_NAME = "train_history.jsonl"


@dataclasses.dataclass
class TrainingState:
  """Everything a checkpoint holds for fixed training."""
  child: FixedChild
  head: heads.SoftmaxHead
  optimizer: keras.optimizers.Optimizer
  epoch: tf.Variable
  manager: tf.train.CheckpointManager


def checkpoint_dir(run_dir: str) -> str:
  return os.path.join(run_dir, "checkpoints")


def build_child(config: RunConfig) -> FixedChild:
  return FixedChild(config.model, config.arc, name="child").build_for_input()


def make_child_optimizer(train: TrainConfig, steps_per_epoch: int,
                         epochs: int) -> keras.optimizers.SGD:
  """SGD(momentum, decoupled weight decay) on warmup + Eq. 6 over `epochs` epochs."""
  schedule = schedules.WarmupSharpenedCosine(
      train.lr_max, train.lr_min, warmup_steps=train.warmup_epochs * steps_per_epoch,
      total_steps=epochs * steps_per_epoch,
      period_steps=train.cosine_period_epochs * steps_per_epoch,
      period_mult=train.cosine_period_mult)
  return keras.optimizers.SGD(learning_rate=schedule, momentum=train.momentum,
                              weight_decay=train.weight_decay)


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


def create_state(config: RunConfig, num_classes: int, steps_per_epoch: int,
                 placement: distribute.Placement) -> TrainingState:
  """Builds child, head and optimiser in the strategy's scope, and their checkpoint."""
  train = config.train
  with placement.strategy.scope():
    child = build_child(config)
    head = heads.SoftmaxHead(num_classes, name="head")
    head.build((None, config.model.embedding_dim))
    optimizer = make_child_optimizer(train, steps_per_epoch, train.epochs)
    optimizer.build(child.trainable_variables + head.trainable_variables)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
  checkpoint = tf.train.Checkpoint(child=child, head=head, optimizer=optimizer, epoch=epoch,
                                   random_state=random_state(child))
  manager = tf.train.CheckpointManager(checkpoint, placement.checkpoint_dir(config.run_dir),
                                       max_to_keep=train.keep_checkpoints)
  return TrainingState(child, head, optimizer, epoch, manager)


def restore_child(config: RunConfig) -> FixedChild:
  """The trained child of a run folder (latest checkpoint), for eval and export."""
  latest = tf.train.latest_checkpoint(checkpoint_dir(config.run_dir))
  if latest is None:
    raise ConfigError(f"--run_dir={config.run_dir}: no checkpoint in "
                      f"{checkpoint_dir(config.run_dir)}; train it first with --mode=fixed")
  child = build_child(config)
  tf.train.Checkpoint(child=child).restore(latest).expect_partial().assert_existing_objects_matched()
  logging.info("restored %s", latest)
  return child


def make_train_step(child: keras.Model, head: keras.layers.Layer,
                    optimizer: keras.optimizers.Optimizer, label_smoothing: float,
                    num_classes: int, global_batch_size: int,
                    strategy: tf.distribute.Strategy | None = None, takes_arc: bool = False):
  """One SGD step on L = (1/B) sum_b CE(softmax(head(child(x_b))), smooth(onehot(y_b))).

  B is the global batch: each replica sums its own examples' losses and divides
  by B, and the optimiser sums the replicas' gradients (Keras all-reduce), so
  any number of replicas takes the same step as one device on the whole batch.
  Returns (loss, batch accuracy, learning rate). With `takes_arc` (the shared
  child) the step is `train_step(images, labels, arc)`, arc an int32 tensor
  shared by every replica, so a new architecture does not retrace.
  """
  strategy = strategy or tf.distribute.get_strategy()
  variables = child.trainable_variables + head.trainable_variables
  loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing,
                                                 reduction=None)

  def replica_step(images, labels, **child_kwargs):
    with tf.GradientTape() as tape:
      logits = head(child(images, training=True, **child_kwargs), training=True)
      loss = tf.nn.compute_average_loss(loss_fn(tf.one_hot(labels, num_classes), logits),
                                        global_batch_size=global_batch_size)
    gradients = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(gradients, variables))
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                             labels), tf.float32)) / global_batch_size
    return loss, correct

  def step(images, labels, **child_kwargs):
    loss, correct = strategy.run(replica_step, args=(images, labels), kwargs=child_kwargs)
    total = tf.distribute.ReduceOp.SUM
    return (strategy.reduce(total, loss, axis=None), strategy.reduce(total, correct, axis=None),
            optimizer.learning_rate)

  if takes_arc:
    return tf.function(lambda images, labels, arc: step(images, labels, arc=arc))
  return tf.function(step)


class EmbeddingExtractor:
  """Batched inference e(x), or e(x) + e(flip(x)) with `flip` (insightface's test-time flip).

  Holds one traced function, so repeated calls (every epoch) do not retrace.
  """

  def __init__(self, child: keras.Model, batch_size: int, flip: bool = False):
    self.batch_size = batch_size
    size = child.config.image_size

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def embed(batch):
      out = child(batch, training=False)
      if flip:
        out = out + child(tf.image.flip_left_right(batch), training=False)
      return out

    self._embed = embed

  def __call__(self, images: np.ndarray) -> np.ndarray:
    return np.concatenate([self._embed(b).numpy()
                           for b in pipeline.eval_dataset(images, self.batch_size)])


def classification_accuracy(extractor: EmbeddingExtractor, head, images, labels) -> float:
  """Top-1 of argmax softmax(head(e(x))) against the labels."""
  logits = head(extractor(images), training=False)
  return float(np.mean(np.argmax(np.asarray(logits), -1) == labels))


def training_steps_per_epoch(config: RunConfig, dataset: FaceDataset,
                             placement: distribute.Placement) -> int:
  """floor(|train split| / global batch); errors name --batch_size if that is 0 or if the
  global batch does not split evenly over the replicas."""
  batch = config.train.batch_size
  if batch % placement.num_replicas:
    raise ConfigError(f"--batch_size={batch} (the global batch) must be a multiple of the "
                      f"{placement.num_replicas} replicas")
  steps = len(dataset.train) // batch
  if steps < 1:
    raise ConfigError(f"--batch_size={batch} is larger than the training split "
                      f"({len(dataset.train)} images)")
  return steps


def restore_or_start(manager: tf.train.CheckpointManager, child: keras.Model,
                     dataset: FaceDataset, what: str, epoch: tf.Variable, epochs: int,
                     restore_dir: str) -> np.ndarray:
  """Restores the latest checkpoint of `restore_dir` (the chief's), or starts by setting
  the child's standardisation to the training split's statistics; returns the
  per-channel mean (for augmentation)."""
  mean, std = pipeline.channel_statistics(dataset.train.images)
  latest = tf.train.latest_checkpoint(restore_dir)
  if latest:
    manager.checkpoint.restore(latest).assert_existing_objects_matched()
    logging.info("resuming %s from %s (epoch %d of %d)", what, latest, int(epoch.numpy()), epochs)
  else:
    child.standardize.set_statistics(mean, std)
  return mean


def check_finite(loss: float, epoch: int, step: int, run_dir: str) -> None:
  """Stops the run at the first NaN/inf loss; the checkpoints on disk stay as they were."""
  if np.isfinite(loss):
    return
  latest = tf.train.latest_checkpoint(checkpoint_dir(run_dir))
  kept = (f"the last good checkpoint, {os.path.basename(latest)}, is kept in "
          f"{checkpoint_dir(run_dir)}" if latest else "no checkpoint was written yet")
  raise FloatingPointError(f"training loss is {loss} at epoch {epoch}, step {step}; stopping. "
                           f"{kept}. Lower --lr_max (or raise --warmup_epochs) and rerun.")


def write_history(run_dir: str, record: dict) -> None:
  with open(os.path.join(run_dir, HISTORY_NAME), "a") as f:
    f.write(json.dumps(record) + "\n")


def truncate_history(run_dir: str, last_epoch: int) -> None:
  """Keeps only records of checkpointed epochs (written before the checkpoint, so a
  crash between the two leaves no gap; this removes the duplicate on resume)."""
  path = os.path.join(run_dir, HISTORY_NAME)
  records = [r for r in read_history(run_dir) if r["epoch"] <= last_epoch]
  with open(path + ".tmp", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
  os.replace(path + ".tmp", path)


def train(config: RunConfig, dataset: FaceDataset,
          placement: distribute.Placement | None = None) -> TrainingState:
  """Trains (or resumes) the run's architecture; returns the final state.

  Per epoch: history record, then checkpoint (both by the chief only).
  """
  placement = placement or distribute.make_placement("default")
  train_cfg = config.train
  steps_per_epoch = training_steps_per_epoch(config, dataset, placement)
  state = create_state(config, dataset.num_classes, steps_per_epoch, placement)
  mean = restore_or_start(state.manager, state.child, dataset, "training", state.epoch,
                          train_cfg.epochs, checkpoint_dir(config.run_dir))
  train_step = make_train_step(state.child, state.head, state.optimizer,
                               train_cfg.label_smoothing, dataset.num_classes,
                               train_cfg.batch_size, placement.strategy)
  extractor = EmbeddingExtractor(state.child, config.eval.batch_size)
  chief = placement.is_chief
  writer = tf.summary.create_file_writer(os.path.join(config.run_dir, "tensorboard")) if chief else None
  start_epoch = int(state.epoch.numpy())
  if chief:
    truncate_history(config.run_dir, start_epoch)
  for epoch in range(start_epoch, train_cfg.epochs):
    ds = pipeline.train_dataset(dataset.train, train_cfg.batch_size, mean, seed=train_cfg.seed,
                                epoch=epoch, random_flip=config.data.random_flip,
                                pad=config.data.pad, cutout=config.data.cutout)
    progbar = keras.utils.Progbar(steps_per_epoch, stateful_metrics=["lr"],
                                  verbose=1 if chief else 0)
    losses, accuracies = [], []
    tic = time.perf_counter()
    for step, (images, labels) in enumerate(distribute.distribute_dataset(placement, ds)):
      loss, acc, lr = (float(v) for v in train_step(images, labels))
      check_finite(loss, epoch + 1, step + 1, config.run_dir)
      losses.append(loss)
      accuracies.append(acc)
      progbar.update(step + 1, [("loss", loss), ("acc", acc), ("lr", lr)])
    seconds = time.perf_counter() - tic
    images_per_second = steps_per_epoch * train_cfg.batch_size / seconds
    state.epoch.assign(epoch + 1)
    if chief:
      val_acc = classification_accuracy(extractor, state.head, dataset.val.images,
                                        dataset.val.labels)
      record = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
                "train_accuracy": float(np.mean(accuracies)), "val_accuracy": val_acc,
                "lr": lr, "seconds": seconds, "images_per_second": images_per_second,
                "replicas": placement.num_replicas}
      logging.info("epoch %d/%d  loss %.4f  train acc %.3f  val acc %.3f  %.0f img/s",
                   epoch + 1, train_cfg.epochs, record["loss"], record["train_accuracy"],
                   val_acc, images_per_second)
      with writer.as_default(step=epoch + 1):
        for key in ("loss", "train_accuracy", "val_accuracy", "lr", "images_per_second"):
          tf.summary.scalar(key, record[key])
      write_history(config.run_dir, record)
    state.manager.save(checkpoint_number=epoch + 1)  # every worker saves (tf.distribute rule)
  if writer is not None:
    writer.flush()
  placement.cleanup(config.run_dir)
  return state


def read_history(run_dir: str) -> list[dict]:
  path = os.path.join(run_dir, HISTORY_NAME)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def evaluate(config: RunConfig, dataset: FaceDataset, child: keras.Model,
             head: keras.layers.Layer | None = None) -> dict:
  """LFW-protocol verification, identification, PCA baseline and model cost."""
  eval_cfg = config.eval
  pairs = dataset.pairs
  embed = EmbeddingExtractor(child, eval_cfg.batch_size, eval_cfg.flip_test)
  metrics = verification.verification_report(embed(pairs.images), pairs.pairs, pairs.is_same,
                                              num_folds=pairs.num_folds, far=eval_cfg.far)
  metrics["identification_top1"] = verification.identification_top1(
      embed(dataset.train.images), dataset.train.labels, embed(dataset.test.images),
      dataset.test.labels)
  if head is not None:
    plain = EmbeddingExtractor(child, eval_cfg.batch_size)
    metrics["val_classification_accuracy"] = classification_accuracy(
        plain, head, dataset.val.images, dataset.val.labels)
    metrics["test_classification_accuracy"] = classification_accuracy(
        plain, head, dataset.test.images, dataset.test.labels)
  pca = verification.pca_embeddings(dataset.train.images, pairs.images,
                                    num_components=eval_cfg.pca_components, seed=config.data.seed)
  pca_report = verification.verification_report(pca, pairs.pairs, pairs.is_same,
                                                 num_folds=pairs.num_folds, far=eval_cfg.far)
  metrics["pca_baseline_verification_accuracy"] = pca_report["verification_accuracy"]
  metrics["pca_baseline_verification_std"] = pca_report["verification_std"]
  params = cost.count_params(child)
  metrics["params"] = params["trainable"]
  metrics["params_total"] = params["total"]
  metrics["flops"] = cost.count_flops(child, config.model.image_size)
  metrics["architecture"] = config.arc.to_string()
  return metrics
