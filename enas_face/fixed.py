"""Training one architecture from scratch, and evaluating it.

Optimiser (paper Section 4): SGD, momentum 0.9, weight decay 1e-4, linear
warmup to lr_max then Eq. 6 down to lr_min (training/step.py); loss = the
cross-entropy of the configured head (softmax or a margin head, heads.py) with
optional label smoothing, plus any extra terms (RegularFace).

A run folder holds `checkpoints/` (one per epoch, `tf.train.CheckpointManager`)
and `train_history.jsonl` (one record per epoch, runlog.py): rerunning with the
same folder resumes after the last finished epoch.
"""
from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from enas_face import costs
from enas_face import distribute
from enas_face import runlog
from enas_face import verification
from enas_face.config import ConfigError, RunConfig
from enas_face.data import pipeline
from enas_face.data.base import FaceDataset, LabelledImages
from enas_face.heads import build_head
from enas_face.training import loop
from enas_face.training import step as train_lib


HISTORY_NAME = "train_history.jsonl"


@dataclasses.dataclass
class TrainingState:
  """Everything a checkpoint holds for fixed training."""
  child: keras.Model
  head: keras.layers.Layer
  optimizer: keras.optimizers.Optimizer
  epoch: tf.Variable
  manager: tf.train.CheckpointManager


def build_child(config: RunConfig) -> keras.Model:
  """The run's sample as a stand-alone model, built by its search space."""
  return config.model.space.build_fixed(config.model, config.arc, name="child")


def create_state(config: RunConfig, num_classes: int, steps_per_epoch: int,
                 placement: distribute.Placement) -> TrainingState:
  """Builds child, head and optimiser in the strategy's scope, and their checkpoint."""
  train = config.train
  with placement.strategy.scope():
    child = build_child(config)
    head = build_head(config.head, num_classes, config.model.embedding_dim)
    optimizer = train_lib.make_optimizer(train, steps_per_epoch, train.epochs)
    optimizer.build(child.trainable_variables + head.trainable_variables)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
  checkpoint = tf.train.Checkpoint(child=child, head=head, optimizer=optimizer, epoch=epoch,
                                   random_state=loop.random_state(child))
  manager = tf.train.CheckpointManager(checkpoint, placement.checkpoint_dir(config.run_dir),
                                       max_to_keep=train.keep_checkpoints)
  return TrainingState(child, head, optimizer, epoch, manager)


def initialize_child(child: keras.Model, source: str) -> str:
  """Loads the child weights of `source` (a run folder: its latest checkpoint; or a
  checkpoint prefix) into `child`, module by module key: modules the source lacks keep
  their initialisation. Returns the checkpoint path; ConfigError names --init_checkpoint."""
  path = (tf.train.latest_checkpoint(loop.checkpoint_dir(source)) if os.path.isdir(source)
          else source)
  if not path or not tf.io.gfile.exists(path + ".index"):
    raise ConfigError(f"--init_checkpoint={source}: no checkpoint there (a run folder with "
                      "checkpoints/, or a checkpoint prefix such as RUN/checkpoints/ckpt-3)")
  names = [name for name, _ in tf.train.list_variables(path)]
  if not any(name.startswith("child/") for name in names):
    raise ConfigError(f"--init_checkpoint={source}: {path} holds no child weights")
  try:
    tf.train.Checkpoint(child=child).restore(path).expect_partial()
  except (ValueError, tf.errors.InvalidArgumentError) as error:
    raise ConfigError(f"--init_checkpoint={source}: its weights do not fit this model (another "
                      f"--base_filters, --image_size or --embedding_dim?): {error}") from None
  logging.info("child initialised from %s", path)
  return path


def restore_child(config: RunConfig) -> keras.Model:
  """The trained child of a run folder (latest checkpoint), for eval and export."""
  latest = tf.train.latest_checkpoint(loop.checkpoint_dir(config.run_dir))
  if latest is None:
    raise ConfigError(f"--run_dir={config.run_dir}: no checkpoint in "
                      f"{loop.checkpoint_dir(config.run_dir)}; train it first with --mode=fixed")
  child = build_child(config)
  tf.train.Checkpoint(child=child).restore(latest).expect_partial().assert_existing_objects_matched()
  logging.info("restored %s", latest)
  return child


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
  """Top-1 of argmax head(e(x)) against the labels (e W + b for softmax, the cosines for a
  margin head: the margin only shapes training)."""
  logits = head(extractor(images))
  return float(np.mean(np.argmax(np.asarray(logits), -1) == labels))


def training_steps_per_epoch(config: RunConfig, dataset: FaceDataset,
                             placement: distribute.Placement) -> int:
  return loop.steps_per_epoch(config.train.batch_size, len(dataset.train), placement.num_replicas)


def train(config: RunConfig, dataset: FaceDataset,
          placement: distribute.Placement | None = None) -> TrainingState:
  """Trains (or resumes) the run's architecture; returns the final state.

  Per epoch: history record, then checkpoint (both by the chief only).
  """
  placement = placement or distribute.make_placement("default")
  train_cfg = config.train
  steps_per_epoch = training_steps_per_epoch(config, dataset, placement)
  state = create_state(config, dataset.num_classes, steps_per_epoch, placement)
  fresh = tf.train.latest_checkpoint(loop.checkpoint_dir(config.run_dir)) is None
  mean = loop.restore_or_start(state.manager, state.child, dataset, "training", state.epoch,
                               train_cfg.epochs, loop.checkpoint_dir(config.run_dir))
  if fresh and train_cfg.init_checkpoint:
    initialize_child(state.child, train_cfg.init_checkpoint)
    state.child.standardize.set_statistics(*pipeline.split_statistics(dataset.train))
  train_step = train_lib.make_train_step(
      state.child, state.head, state.optimizer, train_cfg.label_smoothing, dataset.num_classes,
      train_cfg.batch_size, placement.strategy, extra=train_lib.extra_losses(config.head))
  extractor = EmbeddingExtractor(state.child, config.eval.batch_size)
  chief = placement.is_chief
  writer = tf.summary.create_file_writer(os.path.join(config.run_dir, "tensorboard")) if chief else None

  def train_epoch(epoch: int) -> loop.EpochResult:
    batches = distribute.distribute_training_data(
        placement, lambda context: pipeline.train_dataset(
            dataset.train, train_cfg.batch_size, mean, seed=train_cfg.seed, epoch=epoch,
            random_flip=config.data.random_flip, pad=config.data.pad, cutout=config.data.cutout,
            input_context=context), dataset.streamed)
    return loop.run_epoch(train_step, batches,
                          steps_per_epoch, train_cfg.batch_size, epoch, config.run_dir, chief)

  def finish_epoch(epoch: int, result: loop.EpochResult) -> list[dict]:
    if not chief:
      return []
    val_acc = classification_accuracy(extractor, state.head, dataset.val.images,
                                      dataset.val.labels)
    record = {"epoch": epoch + 1, "loss": result.loss, "train_accuracy": result.accuracy,
              "val_accuracy": val_acc, "lr": result.lr, "seconds": result.seconds,
              "images_per_second": result.images_per_second, "replicas": placement.num_replicas}
    logging.info("epoch %d/%d  loss %.4f  train acc %.3f  val acc %.3f  %.0f img/s",
                 epoch + 1, train_cfg.epochs, record["loss"], record["train_accuracy"],
                 val_acc, result.images_per_second)
    with writer.as_default(step=epoch + 1):
      for key in ("loss", "train_accuracy", "val_accuracy", "lr", "images_per_second"):
        tf.summary.scalar(key, record[key])
    return [record]

  loop.run_epochs(epoch=state.epoch, epochs=train_cfg.epochs, manager=state.manager,
                  log_path=history_path(config.run_dir), chief=chief, train_epoch=train_epoch,
                  finish_epoch=finish_epoch)
  if writer is not None:
    writer.flush()
  placement.cleanup(config.run_dir)
  return state


def history_path(run_dir: str) -> str:
  return os.path.join(run_dir, HISTORY_NAME)


def read_history(run_dir: str) -> list[dict]:
  """The per-epoch records of a fixed run (a torn last line is dropped)."""
  return runlog.read(history_path(run_dir))


def evaluate(config: RunConfig, dataset: FaceDataset, child: keras.Model,
             head: keras.layers.Layer | None = None) -> dict:
  """LFW-protocol verification, identification, PCA baseline and model cost."""
  eval_cfg = config.eval
  pairs = dataset.pairs
  embed = EmbeddingExtractor(child, eval_cfg.batch_size, eval_cfg.flip_test)
  metrics = verification.verification_report(embed(pairs.images), pairs.pairs, pairs.is_same,
                                              num_folds=pairs.num_folds, far=eval_cfg.far)
  gallery, probes = dataset.train_sample, dataset.test
  if dataset.streamed:  # the gallery is a sample: probe only the identities it holds
    probes = LabelledImages(*(part[np.isin(probes.labels, gallery.labels)]
                              for part in (probes.images, probes.labels)))
  metrics["identification_top1"] = verification.identification_top1(
      embed(gallery.images), gallery.labels, embed(probes.images), probes.labels)
  if head is not None:
    plain = EmbeddingExtractor(child, eval_cfg.batch_size)
    metrics["val_classification_accuracy"] = classification_accuracy(
        plain, head, dataset.val.images, dataset.val.labels)
    metrics["test_classification_accuracy"] = classification_accuracy(
        plain, head, dataset.test.images, dataset.test.labels)
  pca = verification.pca_embeddings(dataset.train_sample.images, pairs.images,
                                    num_components=eval_cfg.pca_components, seed=config.data.seed)
  pca_report = verification.verification_report(pca, pairs.pairs, pairs.is_same,
                                                 num_folds=pairs.num_folds, far=eval_cfg.far)
  metrics["pca_baseline_verification_accuracy"] = pca_report["verification_accuracy"]
  metrics["pca_baseline_verification_std"] = pca_report["verification_std"]
  params = costs.keras_params(child)
  metrics["params"] = params["trainable"]
  metrics["params_total"] = params["total"]
  try:
    metrics["flops"] = config.model.space.flops(config.model, config.arc)
  except NotImplementedError:
    metrics["flops"] = None
  metrics["architecture"] = config.model.space.to_string(config.arc)
  return metrics
