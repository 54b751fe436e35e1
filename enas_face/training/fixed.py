"""Training one architecture from scratch, and evaluating it.

Optimiser (paper Section 4): SGD, momentum 0.9, weight decay 1e-4, linear
warmup to lr_max then Eq. 6 down to lr_min (training/step.py); loss = the
cross-entropy of the configured head (softmax or a margin head, heads.py) with
optional label smoothing, plus the run's extra terms (RegularFace, distillation):
training/step.py's TaskLoss, the loss of every training step.

A run folder holds `checkpoints/` (one per epoch, `tf.train.CheckpointManager`)
and `train_history.jsonl` (one record per epoch, runlog.py): rerunning with the
same folder resumes after the last finished epoch.

Every --eval_every epochs (and after the last) each verification set is scored
(`pairs/<set>/<metric>` in the history and TensorBoard); the epoch with the best
accuracy on --best_pairs is kept in `best/`: a checkpoint of child and head,
`best/ckpt-<epoch>`, and `best/best.json` (epoch, set, metric, value, checkpoint),
written after the checkpoint files so it always names a complete one, and read
back on resume.
"""
from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from enas_face.config import ConfigError, RunConfig
from enas_face import costs
from enas_face.data.base import FaceDataset, LabelledImages
from enas_face.data import cleaning
from enas_face.data import pipeline
from enas_face import distribute
from enas_face.evaluation import verification
from enas_face.models import builders
from enas_face.models.heads import build_head
from enas_face import runlog
from enas_face import spaces
from enas_face.training import checkpoints
from enas_face.training import distill
from enas_face.training import loop
from enas_face.training import step as train_lib



@dataclasses.dataclass
class TrainingState:
  """Everything a checkpoint holds for fixed training."""
  child: keras.Model
  head: keras.layers.Layer
  optimizer: keras.optimizers.Optimizer
  epoch: tf.Variable
  manager: tf.train.CheckpointManager
  # What was trained: the run's config and dataset after its sample's training setup (the
  # comprehensive spaces' loss and data cleaning: SearchSpace.prepare_training).
  config: RunConfig | None = None
  dataset: FaceDataset | None = None
  # The teacher and learned projection of --distill_from (distill.py), or None.
  distillation: object = None


def create_state(config: RunConfig, num_classes: int, steps_per_epoch: int,
                 placement: distribute.Placement) -> TrainingState:
  """Builds child, head and optimiser in the strategy's scope, and their checkpoint."""
  train = config.train
  with placement.strategy.scope():
    child = builders.build_child(config)
    head = build_head(config.head, num_classes, config.model.embedding_dim)
    distillation = distill.build(config.distill, config.model.embedding_dim, num_classes)
    extra = [distillation.projection] if distillation is not None else []
    optimizer = train_lib.make_optimizer(train, steps_per_epoch, train.epochs)
    optimizer.build(child.trainable_variables + head.trainable_variables
                    + [v for layer in extra for v in layer.trainable_variables])
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
  checkpoint = tf.train.Checkpoint(child=child, head=head, optimizer=optimizer, epoch=epoch,
                                   random_state=loop.random_state(child),
                                   **({"distill": distillation.projection} if extra else {}))
  manager = tf.train.CheckpointManager(checkpoint, placement.checkpoint_dir(config.run_dir),
                                       max_to_keep=train.keep_checkpoints)
  return TrainingState(child, head, optimizer, epoch, manager, distillation=distillation)


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
          placement: distribute.Placement | None = None,
          stop_after: int | None = None) -> TrainingState:
  """Trains (or resumes) the run's architecture; returns the final state.

  Per epoch: history record, then checkpoint (both by the chief only). With `stop_after`
  = e, stops after epoch e of the run's --epochs schedule (a rerun with a larger e resumes:
  successive halving's rungs); the last epoch verifies the pairs as the final one does.
  """
  placement = placement or distribute.make_placement("default")
  config, dataset = prepare_training(config, dataset, placement.is_chief)
  train_cfg = config.train
  steps_per_epoch = training_steps_per_epoch(config, dataset, placement)
  state = create_state(config, dataset.num_classes, steps_per_epoch, placement)
  state.config, state.dataset = config, dataset
  fresh = tf.train.latest_checkpoint(checkpoints.checkpoint_dir(config.run_dir)) is None
  mean = loop.restore_or_start(state.manager, state.child, dataset, "training", state.epoch,
                               train_cfg.epochs, checkpoints.checkpoint_dir(config.run_dir))
  if fresh and train_cfg.init_checkpoint:
    checkpoints.initialize_child(state.child, train_cfg.init_checkpoint)
    state.child.standardize.set_statistics(*pipeline.split_statistics(dataset.train))
  extra, cross_entropy_weight = train_lib.run_terms(config.head, state.distillation)
  targets = (state.distillation.training_targets(dataset.train)
             if state.distillation is not None else None)
  unlabelled, unlabelled_targets, unlabelled_batch = unlabelled_setup(
      config, dataset, state.distillation, placement.num_replicas)
  train_step = train_lib.make_train_step(
      state.child, state.head, state.optimizer, train_cfg.label_smoothing, dataset.num_classes,
      train_cfg.batch_size, placement.strategy, extra=extra,
      cross_entropy_weight=cross_entropy_weight, unlabelled_batch_size=unlabelled_batch)
  extractor = EmbeddingExtractor(state.child, config.eval.batch_size)
  pair_extractor = EmbeddingExtractor(state.child, config.eval.batch_size, config.eval.flip_test)
  best_set, best_metric = best_selection(config, dataset)
  best = None if fresh else checkpoints.read_best(config.run_dir)
  if best is not None and (best["set"], best["metric"]) != (best_set, best_metric):
    best = None  # another --best_pairs or --protocol: pick again from here on
  chief = placement.is_chief
  writer = (tf.summary.create_file_writer(os.path.join(config.run_dir, runlog.TENSORBOARD_DIR))
            if chief else None)

  def batches_of(epoch: int, context):
    labelled = pipeline.train_dataset(
        dataset.train, train_cfg.batch_size, mean, seed=train_cfg.seed, epoch=epoch,
        random_flip=config.data.random_flip, pad=config.data.pad, cutout=config.data.cutout,
        input_context=context, targets=targets)
    if unlabelled is None:
      return labelled
    return pipeline.with_unlabelled(labelled, pipeline.unlabelled_dataset(
        unlabelled.images, unlabelled_batch, mean, seed=train_cfg.seed, epoch=epoch,
        steps=steps_per_epoch, random_flip=config.data.random_flip, pad=config.data.pad,
        cutout=config.data.cutout, targets=unlabelled_targets))

  def train_epoch(epoch: int) -> loop.EpochResult:
    batches = distribute.distribute_training_data(
        placement, lambda context: batches_of(epoch, context), dataset.streamed)
    return loop.run_epoch(train_step, batches,
                          steps_per_epoch, train_cfg.batch_size, epoch, config.run_dir, chief)

  def finish_epoch(epoch: int, result: loop.EpochResult) -> list[dict]:
    nonlocal best
    if not chief:
      return []
    val_acc = classification_accuracy(extractor, state.head, dataset.val.images,
                                      dataset.val.labels)
    record = {"epoch": epoch + 1, "loss": result.loss, "train_accuracy": result.accuracy,
              "val_accuracy": val_acc, "lr": result.lr, "seconds": result.seconds,
              "images_per_second": result.images_per_second, "replicas": placement.num_replicas}
    if len(result.terms) > 1:  # the loss's terms, when it has more than the cross-entropy
      record.update({f"loss/{name}": value for name, value in result.terms.items()})
    logging.info("epoch %d/%d  loss %.4f  train acc %.3f  val acc %.3f  %.0f img/s",
                 epoch + 1, train_cfg.epochs, record["loss"], record["train_accuracy"],
                 val_acc, result.images_per_second)
    if verify_now(epoch, train_cfg.epochs, config.eval.eval_every) or epoch + 1 == last:
      record.update(pair_set_accuracies(config, dataset, pair_extractor))
      logging.info("epoch %d pairs: %s", epoch + 1, "  ".join(
          f"{key[len('pairs/'):]} {value:.4f}" for key, value in record.items()
          if key.startswith("pairs/")))
      best = keep_best(config.run_dir, best, epoch + 1, best_set, best_metric,
                       record[pair_key(best_set, best_metric)],
                       tf.train.Checkpoint(child=state.child, head=state.head))
    with writer.as_default(step=epoch + 1):
      for key in ("loss", "train_accuracy", "val_accuracy", "lr", "images_per_second"):
        tf.summary.scalar(key, record[key])
      for key, value in record.items():
        if key.startswith(("pairs/", "loss/")):
          tf.summary.scalar(key, value)
    return [record]

  last = train_cfg.epochs if stop_after is None else min(int(stop_after), train_cfg.epochs)
  loop.run_epochs(epoch=state.epoch, epochs=last, manager=state.manager,
                  log_path=history_path(config.run_dir), chief=chief, train_epoch=train_epoch,
                  finish_epoch=finish_epoch)
  if writer is not None:
    writer.flush()
  placement.cleanup(config.run_dir)
  return state


def unlabelled_setup(config: RunConfig, dataset: FaceDataset, distillation, num_replicas: int):
  """(the unlabelled images that teach, their precomputed targets or None, the global
  unlabelled batch B_u), or (None, None, 0) without --unlabelled. ConfigError naming
  --unlabelled without a teacher, --unlabelled_batch_size when it does not split over the
  replicas."""
  if dataset.unlabelled is None:
    return None, None, 0
  if distillation is None:
    raise ConfigError(f"--unlabelled={config.data.unlabelled}: unlabelled images are seen by "
                      "the distillation terms only; give a teacher with --distill_from")
  if distillation.teacher.precomputed:
    from enas_face.data import unlabelled as unlabelled_lib
    clashes = unlabelled_lib.key_clashes(dataset)
    if clashes:
      raise ConfigError(
          f"--unlabelled={config.data.unlabelled}: {len(clashes)} unlabelled images share their "
          f"key (path in their source) with another image of the run (first: {clashes[:3]}), "
          f"so --distill_from={distillation.teacher.source} holds one embedding for both; "
          "rename the files or use a teacher that runs on the batch")
  batch = config.data.unlabelled_batch_size or config.train.batch_size
  if batch % num_replicas:
    raise ConfigError(f"--unlabelled_batch_size={batch} must be a multiple of the "
                      f"{num_replicas} replicas")
  images, targets = distillation.unlabelled_targets(dataset.unlabelled)
  logging.info("unlabelled: %d images, %d in each step beside %d labelled (distillation only)",
               len(images), batch, config.train.batch_size)
  return images, targets, batch


def prepare_training(config: RunConfig, dataset: FaceDataset,
                     chief: bool = True) -> tuple[RunConfig, FaceDataset]:
  """The run's sample's training setup (its space's prepare_training: the loss and the data
  cleaning of a comprehensive recipe); a cleaning's manifest goes to
  RUN_DIR/cleaning_manifest.json."""
  space = spaces.of(config.model)
  config, dataset, result = space.prepare_training(config, dataset, config.arc)
  if result is not None and chief:
    summary = cleaning.write_manifest(
        os.path.join(config.run_dir, runlog.CLEANING_MANIFEST), config.arc.cleaning, result,
        config.data.cleaning_embeddings)
    logging.info("cleaning: kept %d training images of %d identities, removed %d %s",
                 summary["kept_images"], summary["classes_after"], summary["removed_images"],
                 summary["removed_by_rule"])
  return config, dataset


def verify_now(epoch: int, epochs: int, eval_every: int) -> bool:
  """Whether epoch `epoch` (0-based) verifies the pair sets: every eval_every-th and the last."""
  return epoch + 1 == epochs or (eval_every > 0 and (epoch + 1) % eval_every == 0)


def pair_key(name: str, metric: str) -> str:
  """History / TensorBoard key of one set's metric: pairs/<set>/<metric>."""
  return f"pairs/{name}/{metric}"


def accuracy_metrics(protocol: str) -> list[str]:
  """The accuracy keys a protocol reports: verification_accuracy and/or the insightface one."""
  return {"exact": ["verification_accuracy"],
          "insightface": ["insightface_verification_accuracy"],
          "both": ["verification_accuracy", "insightface_verification_accuracy"]}[protocol]


def best_selection(config: RunConfig, dataset: FaceDataset) -> tuple[str, str]:
  """(set, metric) that picks best/: --best_pairs (default the primary set) and the first
  accuracy of --protocol; ConfigError naming --best_pairs when the set is unknown."""
  name = config.eval.best_pairs or next(iter(dataset.pair_sets))
  if name not in dataset.pair_sets:
    raise ConfigError(f"--best_pairs={name}: no such pair set; the sets are "
                      f"{', '.join(dataset.pair_sets)}")
  return name, accuracy_metrics(config.eval.protocol)[0]


def pair_set_accuracies(config: RunConfig, dataset: FaceDataset,
                        extractor: EmbeddingExtractor) -> dict[str, float]:
  """{pairs/<set>/<accuracy metric>: value} of every set, with the --protocol(s)."""
  out = {}
  for name, pairs in dataset.pair_sets.items():
    report = verification.protocol_report(extractor(pairs.images), pairs.pairs, pairs.is_same,
                                          pairs.num_folds, config.eval.far, config.eval.protocol)
    for metric in accuracy_metrics(config.eval.protocol):
      out[pair_key(name, metric)] = report[metric]
  return out


def keep_best(run_dir: str, best: dict | None, epoch: int, name: str, metric: str, value: float,
              checkpoint: tf.train.Checkpoint) -> dict:
  """If value > best["value"] (or there is no best yet): writes best/ckpt-<epoch>, then
  best.json naming it (atomic), then removes older best checkpoints; returns the best."""
  if best is not None and not value > best["value"]:
    return best
  folder = checkpoints.best_dir(run_dir)
  os.makedirs(folder, exist_ok=True)
  prefix = f"ckpt-{epoch}"
  checkpoint.write(os.path.join(folder, prefix))
  best = {"epoch": epoch, "set": name, "metric": metric, "value": float(value),
          "checkpoint": prefix}
  runlog.write_json(os.path.join(folder, runlog.BEST), best)
  for entry in os.listdir(folder):
    if entry.startswith("ckpt-") and entry.split(".")[0] != prefix:
      os.remove(os.path.join(folder, entry))
  logging.info("best %s %s %.4f at epoch %d -> %s", name, metric, value, epoch, folder)
  return best


def history_path(run_dir: str) -> str:
  return os.path.join(run_dir, runlog.TRAIN_HISTORY)


def read_history(run_dir: str) -> list[dict]:
  """The per-epoch records of a fixed run (a torn last line is dropped)."""
  return runlog.read(history_path(run_dir))


def evaluate(config: RunConfig, dataset: FaceDataset, child: keras.Model,
             head: keras.layers.Layer | None = None) -> dict:
  """Verification of every pair set, identification, PCA baseline and model cost.

  The top-level verification keys are the primary set's (exact protocol, plus the
  insightface_ keys with --protocol=insightface/both); `pair_sets` holds every set's
  report under its name, `pair_set_names` their order (the primary first).
  """
  eval_cfg = config.eval
  pairs = dataset.pairs
  embed = EmbeddingExtractor(child, eval_cfg.batch_size, eval_cfg.flip_test)
  protocol = "both" if eval_cfg.protocol != "exact" else "exact"
  pair_sets = {}
  for name, one in dataset.pair_sets.items():
    pair_sets[name] = verification.protocol_report(embed(one.images), one.pairs, one.is_same,
                                                   num_folds=one.num_folds, far=eval_cfg.far,
                                                   protocol=protocol)
  metrics = dict(next(iter(pair_sets.values())))
  metrics["pair_sets"] = pair_sets
  metrics["pair_set_names"] = list(pair_sets)  # their order (JSON files sort keys)
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
    metrics["flops"] = spaces.of(config.model).flops(config.model, config.arc)
  except NotImplementedError:
    metrics["flops"] = None
  metrics["architecture"] = spaces.of(config.model).to_string(config.arc)
  return metrics
