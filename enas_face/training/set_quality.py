"""Set-based recognition on a trained run: `--mode=quality` trains a quality network on the
run's frozen embedder; set-to-set evaluation (`--mode=eval --aggregation=...`) and the set
SavedModel (`--mode=export --aggregation=...`).

A set's embedding is e = normalize(sum_i w_i normalize(f_i)), f_i = the frozen embedder's
frame embeddings, w_i from the frame scores (evaluation/sets.py):
  qan:   mu_i = sigmoid(branch(features_i)), w_i = mu_i / sum mu   (Liu et al. 2017)
  qanpp: q_i = cnn(frame_i); q'_i = min-max(q) for sets > 2;  w_i = q'_i / sum q'   (QAN++)
  best:  the frame of highest score (the QAN++ net's when trained, else QAN's); mean: 1/S.

Training (METHODS.md §2: QAN++'s recipe is not published; each item below is ours unless
marked): only the quality network learns, the embedder is frozen (QAN++'s authors' setting,
inferred); set-level identity labels only (QAN); per step P identities x 2 of their sets,
each as --quality_frames_per_set frames drawn from it (with replacement when the set is
smaller; few frames, so that one bad frame moves its set and the loss sees it); loss =
models.quality.set_contrastive_loss on the set embeddings (a batch-wide form of QAN's triplet
loss on sets); Adam at --quality_lr. Frame embeddings and features are computed once (the
embedder is frozen) and gathered per step. Everything lives in RUN_DIR/quality/<net>/:
checkpoints (resume after a kill), history.jsonl, settings.json, metrics.json.
"""
from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from enas_face.config import QUALITY_NETS, ConfigError, RunConfig, SetConfig
from enas_face.data import frame_sets, pipeline
from enas_face.evaluation import sets as set_ops
from enas_face import export
from enas_face.models import quality as quality_models
from enas_face import runlog
from enas_face.training import checkpoints
from enas_face.training import loop

SET_SIGNATURE_INPUT = "frames"
# Settings a resumed quality run must share with the one that started it.
TRAINING_FIELDS = ("sets", "set_size", "synthetic_identities", "videos_per_identity",
                   "degraded_fraction", "heldout", "heldout_fraction", "quality_net",
                   "quality_epochs", "quality_steps_per_epoch", "quality_lr",
                   "quality_identities_per_batch", "quality_frames_per_set", "quality_scale")


def quality_dir(run_dir: str, net: str) -> str:
  return os.path.join(run_dir, runlog.QUALITY_DIR, net)


def scoring_net(method: str, trained: set[str] | tuple[str, ...]) -> str | None:
  """The quality network whose scores a pooling method uses: none for mean, its own for qan /
  qanpp, and for best the QAN++ net when trained, else QAN's."""
  if method == "mean":
    return None
  if method == "best":
    return "qanpp" if "qanpp" in trained else "qan"
  return method


# ------------------------------------------------------------------ frames
@dataclasses.dataclass(frozen=True)
class FrameCodes:
  """What the frozen embedder gives each frame: embeddings [N, D] (un-normalised, with the
  run's test-time flip when asked) and pooled final features [N, C] (QAN's input)."""
  embeddings: np.ndarray
  features: np.ndarray


def embed_frames(child: keras.Model, frames: np.ndarray, batch_size: int,
                 flip: bool = False) -> FrameCodes:
  size = child.config.image_size

  @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
  def run(batch):
    embedding, features = child.embed_with_features(batch)
    if flip:
      embedding = embedding + child(tf.image.flip_left_right(batch), training=False)
    return embedding, features

  parts = [run(b) for b in pipeline.eval_dataset(frames, batch_size)]
  return FrameCodes(np.concatenate([p[0].numpy() for p in parts]),
                    np.concatenate([p[1].numpy() for p in parts]))


def build_net(net: str, image_size: int, feature_dim: int) -> keras.Model:
  """A quality network with its weights created: QanBranch on [.., C] or QualityCNN on frames."""
  if net == "qan":
    model = quality_models.QanBranch(name="qan")
    model(tf.zeros((1, feature_dim)))
  else:
    model = quality_models.QualityCNN(name="qanpp")
    model(tf.zeros((1, image_size, image_size, 3)))
  return model


def frame_scores(model: keras.Model, net: str, frames: np.ndarray, codes: FrameCodes,
                 batch_size: int) -> np.ndarray:
  """The network's score of every frame, float64 [N] (QAN: sigmoid; QAN++: raw)."""
  if net == "qan":
    return np.asarray(model(tf.constant(codes.features), training=False), np.float64)
  run = tf.function(lambda batch: model(batch, training=False))
  return np.concatenate([run(b).numpy() for b in pipeline.eval_dataset(frames, batch_size)]
                        ).astype(np.float64)


# ---------------------------------------------------------------- training
class SetBatches:
  """Per step: P identities (with >= 2 sets) x 2 of their sets x F frames; deterministic in
  (seed, epoch). Yields ((net inputs [2P, F, ...], embeddings [2P, F, D]), labels [2P])."""

  def __init__(self, sets: frame_sets.FrameSets, codes: FrameCodes, net: str,
               config: SetConfig, seed: int):
    self.sets, self.codes, self.net, self.config, self.seed = sets, codes, net, config, seed
    self.members = [np.flatnonzero(sets.set_ids == k) for k in range(sets.num_sets)]
    labels, counts = np.unique(sets.set_labels, return_counts=True)
    self.identities = labels[counts >= 2]
    self.sets_of = {int(l): np.flatnonzero(sets.set_labels == l) for l in self.identities}
    self.per_batch = min(config.quality_identities_per_batch, self.identities.size)

  def epoch(self, epoch: int):
    rng = np.random.default_rng([self.seed, 0x9A1, epoch])
    frames_per_set = self.config.quality_frames_per_set
    for _ in range(self.config.quality_steps_per_epoch):
      people = rng.choice(self.identities, size=self.per_batch, replace=False)
      chosen = np.concatenate([rng.choice(self.sets_of[int(p)], 2, replace=False)
                               for p in people])
      index = np.stack([rng.choice(self.members[k], frames_per_set,
                                   replace=self.members[k].size < frames_per_set)
                        for k in chosen])
      inputs = (self.codes.features[index] if self.net == "qan"
                else self.sets.frames[index].astype(np.float32))
      yield ((tf.constant(inputs), tf.constant(self.codes.embeddings[index], tf.float32)),
             tf.constant(self.sets.set_labels[chosen], tf.int32))


def make_train_step(model: keras.Model, net: str, optimizer: keras.optimizers.Optimizer,
                    scale: float):
  """One Adam step on L = set_contrastive_loss(pool_sets(f, scores(x), net)); returns (loss,
  set retrieval accuracy: the share of sets whose most similar other set is the same person,
  learning rate)."""

  @tf.function
  def step(inputs, labels):
    net_inputs, embeddings = inputs
    with tf.GradientTape() as tape:
      scores = model(net_inputs, training=True)
      pooled = quality_models.pool_sets(embeddings, scores, net)
      loss = quality_models.set_contrastive_loss(pooled, labels, scale)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    similarity = tf.matmul(pooled, pooled, transpose_b=True) - 3.0 * tf.eye(tf.shape(labels)[0])
    nearest = tf.gather(labels, tf.argmax(similarity, axis=1, output_type=tf.int32))
    accuracy = tf.reduce_mean(tf.cast(tf.equal(nearest, labels), tf.float32))
    return loss, accuracy, optimizer.learning_rate

  return step


def _check_settings(qdir: str, settings: dict) -> None:
  """A resumed quality run must use the settings that started it (errors name the flag)."""
  path = os.path.join(qdir, runlog.QUALITY_SETTINGS)
  previous = runlog.read_json(path)
  if previous is not None and previous != settings:
    changed = [f"--{name}: {previous.get(name)!r} there, {value!r} now"
               for name, value in settings.items() if previous.get(name) != value]
    raise ConfigError(f"{qdir} holds a quality network trained with other settings ("
                      + "; ".join(changed) + "); use the same flags or remove that folder")
  runlog.write_json(path, settings)


def train(config: RunConfig, child: keras.Model, train_sets: frame_sets.FrameSets,
          verbose: bool = True) -> keras.Model:
  """Trains (or resumes) --quality_net on the frozen child; returns the trained network."""
  sets_cfg, net = config.sets, config.sets.quality_net
  seed = sets_cfg.resolved_seed(config.data.seed)
  qdir = quality_dir(config.run_dir, net)
  os.makedirs(qdir, exist_ok=True)
  _check_settings(qdir, {f"{name}": getattr(sets_cfg, name) for name in TRAINING_FIELDS}
                  | {"embedder_checkpoint": config.eval.checkpoint,
                     "seed": seed})
  codes = embed_frames(child, train_sets.frames, config.eval.batch_size)
  keras.utils.set_random_seed(seed)
  model = build_net(net, config.model.image_size, codes.features.shape[1])
  optimizer = keras.optimizers.Adam(sets_cfg.quality_lr)
  epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(net=model, optimizer=optimizer, epoch=epoch),
      checkpoints.checkpoint_dir(qdir), max_to_keep=2)
  if checkpoints.resume(manager.checkpoint, checkpoints.checkpoint_dir(qdir)):
    logging.info("resuming the %s quality network from %s (epoch %d of %d)", net,
                 manager.latest_checkpoint, int(epoch.numpy()), sets_cfg.quality_epochs)
  batches = SetBatches(train_sets, codes, net, sets_cfg, seed)
  step = make_train_step(model, net, optimizer, sets_cfg.quality_scale)
  sets_per_step = 2 * batches.per_batch

  def train_epoch(index: int) -> loop.EpochResult:
    return loop.run_epoch(step, batches.epoch(index), sets_cfg.quality_steps_per_epoch,
                          sets_per_step, index, qdir, verbose)

  def finish_epoch(index: int, result: loop.EpochResult) -> list[dict]:
    logging.info("quality epoch %d/%d  loss %.4f  set retrieval acc %.3f", index + 1,
                 sets_cfg.quality_epochs, result.loss, result.accuracy)
    return [{"epoch": index + 1, "loss": result.loss, "set_retrieval_accuracy": result.accuracy,
             "seconds": result.seconds, "sets_per_second": result.images_per_second}]

  loop.run_epochs(epoch=epoch, epochs=sets_cfg.quality_epochs, manager=manager,
                  log_path=os.path.join(qdir, runlog.QUALITY_HISTORY), chief=True,
                  train_epoch=train_epoch, finish_epoch=finish_epoch)
  return model


def trained_nets(run_dir: str) -> list[str]:
  """The quality networks RUN_DIR/quality/ holds a checkpoint of."""
  return [net for net in QUALITY_NETS
          if checkpoints.latest(checkpoints.checkpoint_dir(quality_dir(run_dir, net)))]


def restore_net(config: RunConfig, net: str, feature_dim: int) -> keras.Model:
  """The trained quality network of RUN_DIR/quality/<net>/ (its latest checkpoint)."""
  latest = checkpoints.latest(checkpoints.checkpoint_dir(quality_dir(config.run_dir, net)))
  if latest is None:
    raise ConfigError(f"--aggregation: pooling with {net} scores needs a trained quality "
                      f"network, and {quality_dir(config.run_dir, net)} holds none; train it "
                      f"first with --mode=quality --quality_net={net}")
  model = build_net(net, config.model.image_size, feature_dim)
  checkpoints.restore(latest, net=model)
  return model


# -------------------------------------------------------------- evaluation
def evaluate(config: RunConfig, child: keras.Model, heldout: frame_sets.FrameSets,
             methods: tuple[str, ...], nets: dict[str, keras.Model] | None = None) -> dict:
  """Set-to-set verification of the held-out sets with each pooling method (10-fold accuracy,
  TAR at FAR 1e-3 and 1e-4, ROC AUC), plus per quality network the Spearman correlation of its
  scores with the known degradation level d (negative: worse frames score lower) and, as the
  headroom of quality-aware pooling, the QAN++ pooling of an oracle scoring q_i = -d_i."""
  from scipy import stats
  nets = dict(nets or {})
  # One pass: the features (QAN's input) do not depend on the test-time flip.
  codes = embed_frames(child, heldout.frames, config.eval.batch_size, flip=config.eval.flip_test)
  trained = set(nets) | set(trained_nets(config.run_dir))
  for net in sorted({scoring_net(m, trained) for m in methods} - {None} - set(nets)):
    nets[net] = restore_net(config, net, codes.features.shape[1])
  scores = {net: frame_scores(model, net, heldout.frames, codes, config.eval.batch_size)
            for net, model in nets.items()}
  pairs, is_same = frame_sets.set_pairs(heldout, config.sets, config.data.num_folds,
                                        config.sets.resolved_seed(config.data.seed))
  report = {"num_sets": heldout.num_sets, "num_identities": heldout.num_identities,
            "num_frames": int(len(heldout.frames)), "methods": list(methods), "by_method": {}}
  for method in methods:
    net = scoring_net(method, tuple(nets))
    pooled = set_ops.aggregate_sets(codes.embeddings, None if net is None else scores[net],
                                    heldout.set_ids, method)
    report["by_method"][method] = set_ops.set_verification_report(
        pooled, pairs, is_same, config.data.num_folds) | ({"scores_of": net} if net else {})
  if heldout.degradation is not None:  # the headroom: QAN++ pooling with q_i = -d_i
    report["oracle_qanpp"] = set_ops.set_verification_report(
        set_ops.aggregate_sets(codes.embeddings, -heldout.degradation, heldout.set_ids,
                               "qanpp"), pairs, is_same, config.data.num_folds)
    report["spearman_quality_vs_degradation"] = {
        net: float(stats.spearmanr(values, heldout.degradation).statistic)
        for net, values in scores.items()}
  return report


# ------------------------------------------------------------------ export
class SetEmbeddingModule(tf.Module):
  """frames uint8 [N, S, S, 3] (one set) -> set_embedding [D] (unit), frame_scores [N],
  frame_weights [N]: the embedder and the quality network in one SavedModel."""

  def __init__(self, child: keras.Model, method: str, net: keras.Model | None):
    super().__init__(name="enas_face_set_embedder")
    self.child, self.net, self.method = child, net, method
    size = child.config.image_size
    self.serve = tf.function(self._embed, input_signature=[
        tf.TensorSpec([None, size, size, 3], tf.uint8, name=SET_SIGNATURE_INPUT)])

  def _embed(self, frames):
    images = tf.cast(frames, tf.float32)
    embeddings, features = self.child.embed_with_features(images)
    if self.method == "mean":
      scores = tf.zeros(tf.shape(frames)[:1])
    elif isinstance(self.net, quality_models.QanBranch):
      scores = self.net(features, training=False)
    else:
      scores = self.net(images, training=False)
    weights = quality_models.pooling_weights(scores, self.method)
    return {"set_embedding": quality_models.pool_sets(embeddings, scores, self.method),
            "frame_scores": scores, "frame_weights": weights}


def export_set_model(child: keras.Model, method: str, net: keras.Model | None, out_dir: str,
                     metadata: dict) -> str:
  """Writes the set SavedModel to out_dir (replacing an older one atomically)."""
  module = SetEmbeddingModule(child, method, net)
  return export.save_module(module, module.serve, out_dir, metadata)
