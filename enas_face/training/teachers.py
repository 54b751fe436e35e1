"""Teachers for distillation (distill.py): what --distill_from names, loaded as one callable.

Kinds (data/teacher_files.py tells them apart without loading them):
- a run folder (its config.json and latest checkpoint: child, and head for the KL term);
- an exported SavedModel (uint8 images -> embeddings, any embedder; embedding terms only);
- an .onnx file (runtimes.OnnxRunner: uint8 or float input, NHWC or NCHW, read from the
  model; run through tf.numpy_function inside the train step);
- a teacher embeddings file (tools/teacher_embeddings.py): precomputed targets, one per
  training image, found by the image's key (its source path, or a hash of its pixels) and
  fed through the input pipeline beside the image (`Teacher.file`, `training_targets`).
  The target is the teacher's embedding of the *unaugmented* image (of the original photo
  for dlib), while the three kinds above see the augmented batch;
- dlib's model folder: it finds and aligns faces itself on the original photos, so it
  cannot run on the training crops; it teaches through an embeddings file.
The first three see the student's batch resized to their own input size when it differs.

`pair_report` verifies each --pairs set with the teacher's embeddings through the same
evaluator as the student's (evaluation.verification.protocol_report).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import logging

from enas_face.config import ConfigError, EvalConfig
from enas_face.data import keys
from enas_face.data import teacher_files
from enas_face.data.base import LabelledImages
from enas_face.evaluation import verification
from enas_face import runtimes
from enas_face import spaces
from enas_face.training import checkpoints

TOOL = teacher_files.TOOL


@dataclasses.dataclass
class Teacher:
  """images float [N, S, S, 3] in [0, 255] -> (unit embeddings [N, D_t], logits or None);
  an embeddings-file teacher (`file`, kind "embeddings") is not called: its targets come
  with the batch (`unit_targets`)."""
  embed: object
  head: object | None
  image_size: int
  embedding_dim: int
  num_classes: int | None
  source: str
  kind: str = "run"
  file: teacher_files.TeacherEmbeddings | None = None

  @property
  def precomputed(self) -> bool:
    return self.file is not None

  def __call__(self, images):
    if self.precomputed:
      raise ValueError(f"{self.source}: a precomputed teacher is not run; its targets come "
                       "with the batch")
    if images.shape[1] != self.image_size:
      images = tf.image.resize(images, (self.image_size, self.image_size))
    raw = tf.cast(self.embed(images), tf.float32)
    logits = None if self.head is None else tf.stop_gradient(self.head(raw))
    return tf.stop_gradient(tf.math.l2_normalize(raw, axis=-1)), logits


def is_saved_model(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "saved_model.pb"))


def unit_targets(targets):
  """(t / ||t||, has_target): precomputed teacher embeddings [N, D] as unit vectors, and 1.0
  where a row is non-zero (an image the file has no embedding for is a zero row)."""
  targets = tf.cast(targets, tf.float32)
  has_target = tf.cast(tf.reduce_sum(tf.square(targets), -1) > 0, tf.float32)
  return tf.math.l2_normalize(targets, axis=-1), has_target


def load_teacher(path: str, flag: str = "--distill_from", input_mean: float = 0.0,
                 input_std: float = 1.0) -> Teacher:
  """The teacher at `path` (module docstring; `input_mean`, `input_std`: an ONNX model's
  float input is fed (x - mean) / std). ConfigError naming `flag` when it is none of the
  kinds, has no checkpoint, needs a missing extra, or is dlib's model (the tool first)."""
  kind = teacher_files.teacher_kind(path, flag)
  if kind == "dlib":
    raise teacher_files.dlib_needs_the_tool(path, flag)
  if kind == "embeddings":
    loaded = teacher_files.TeacherEmbeddings.load(path, flag)
    logging.info("teacher: %s (%d embeddings of %s, %s)", path, len(loaded.keys),
                 loaded.header.get("teacher"), loaded.header.get("teacher_kind"))
    return Teacher(None, None, 0, loaded.embedding_dim, None, path, kind, loaded)
  if kind == "onnx":
    return _onnx_teacher(path, flag, input_mean, input_std)
  if kind == "saved_model":
    return _saved_model_teacher(path, flag)
  run = checkpoints.load_run(path, flag)
  logging.info("teacher: %s (%s)", run.checkpoint, spaces.of(run.config.model).describe(run.config.arc))
  child, head = run.child, run.head
  return Teacher(lambda images: child(images, training=False),
                 (lambda e: head(e)) if head is not None else None,
                 run.config.model.image_size, run.config.model.embedding_dim,
                 run.num_classes, run.checkpoint)


def _onnx_teacher(path: str, flag: str, mean: float, std: float) -> Teacher:
  try:
    runner = runtimes.OnnxRunner(path, mean, std)
  except runtimes.ModelInputError as e:
    raise ConfigError(f"{flag}={path}: {e}") from e
  dim = runner.embedding_dim

  def embed(images):
    out = tf.numpy_function(runner, [images], tf.float32, stateful=False)
    return tf.ensure_shape(out, [None, dim])

  logging.info("teacher: %s (ONNX, %s %s input of %dx%d, %d-d)", path, runner.layout,
               np.dtype(runner.dtype).name, runner.image_size, runner.image_size, dim)
  return Teacher(embed, None, runner.image_size, dim, None, path, "onnx")


def _saved_model_teacher(path: str, flag: str) -> Teacher:
  loaded = tf.saved_model.load(path)
  serve = loaded.signatures.get("serving_default")
  if serve is None:
    raise ConfigError(f"{flag}={path}: the SavedModel has no serving_default signature")
  (name, spec), = serve.structured_input_signature[1].items()
  if spec.dtype != tf.uint8 or spec.shape.rank != 4 or spec.shape[1] is None:
    raise ConfigError(f"{flag}={path}: serving_default takes {spec}; expected uint8 images "
                      "[N, S, S, 3] (as --mode=export writes)")
  output = next(iter(serve.structured_outputs))
  dim = int(serve.structured_outputs[output].shape[-1])

  def embed(images):
    pixels = tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)
    return serve(**{name: pixels})[output]

  embed.loaded = loaded  # the signature's variables live as long as the teacher

  return Teacher(embed, None, int(spec.shape[1]), dim, None, path, "saved_model")


def training_targets(teacher: Teacher, train, missing: str = "error") -> np.ndarray:
  """An embeddings-file teacher's targets [N, D_t] for the training split (rows in its
  order; zero rows for images without one when missing="skip"). ConfigError naming the
  file and the count of training images it lacks (missing="error"), or when the split
  streams (the targets ride in memory beside the images)."""
  if not isinstance(train, LabelledImages):
    raise ConfigError(f"--distill_from={teacher.source}: precomputed teacher targets need the "
                      "training split in memory; add --stream=never")
  targets, found = teacher.file.targets(train.images, train.paths, "training images", missing)
  if not found.all():
    logging.warning("teacher: %d of %d training images have no embedding in %s; they train "
                    "without the distillation terms (--distill_missing=skip)",
                    int((~found).sum()), len(found), teacher.source)
  return targets


def unlabelled_targets(teacher: Teacher, unlabelled, missing: str = "error"):
  """(the unlabelled images with a target, their targets [N', D_t]) of an embeddings-file
  teacher, by key. ConfigError naming the file and the count it lacks (missing="error");
  missing="skip" leaves those images out (an unlabelled image without a target teaches
  nothing)."""
  targets, found = teacher.file.targets(
      unlabelled.images, unlabelled.paths, "unlabelled images", missing,
      remedy=f"run {TOOL} with this run's data flags and --teacher_splits=unlabelled to add "
             "them, or pass --distill_missing=skip to leave those images out")
  if not found.all():
    logging.warning("teacher: %d of %d unlabelled images have no embedding in %s; left out "
                    "(--distill_missing=skip)", int((~found).sum()), len(found), teacher.source)
    if not found.any():
      raise ConfigError(f"--distill_from={teacher.source}: none of the {len(found)} unlabelled "
                        f"images has a teacher embedding there; run {TOOL} with "
                        "--teacher_splits=unlabelled")
  return unlabelled.take(found), targets[found]


class _CropEmbedder:
  """Batched e_t(x), or e_t(x) + e_t(flip(x)) (the student's test-time flip), of a crop
  teacher, through one traced function."""

  def __init__(self, teacher: Teacher, image_size: int, flip: bool):

    @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32)])
    def embed(batch):
      out = teacher(batch)[0]
      if flip:
        out = out + teacher(tf.image.flip_left_right(batch))[0]
      return out

    self._embed = embed

  def __call__(self, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([self._embed(tf.constant(images[i:i + batch_size], tf.float32)).numpy()
                           for i in range(0, len(images), batch_size)])


def pair_report(teacher: Teacher, pair_sets: dict, eval_config: EvalConfig) -> dict:
  """The teacher's verification of every pair set, through the student's evaluator
  (verification.protocol_report, --protocol both when not exact, --far): {"teacher",
  "teacher_kind", "pair_sets": {name: report}, "pair_set_names"}. A crop teacher embeds
  the pair images (as the student, with --flip_test); an embeddings file is looked up by
  the images' keys (as stored: no flip), and a set with images missing from it reports
  "missing_images" and no accuracy."""
  protocol = "both" if eval_config.protocol != "exact" else "exact"
  embedder = None
  reports = {}
  for name, pairs in pair_sets.items():
    if teacher.precomputed:
      embeddings, found = teacher.file.lookup(keys.image_keys(pairs.images,
                                                                       pairs.paths))
      if not found.all():
        reports[name] = {"num_pairs": int(len(pairs)), "num_images": int(len(found)),
                         "missing_images": int((~found).sum()),
                         "note": f"{int((~found).sum())} of the set's images have no embedding "
                                 f"in the teacher file; run {TOOL} with these --pairs"}
        continue
    else:
      if embedder is None:
        embedder = _CropEmbedder(teacher, int(pairs.images.shape[1]), eval_config.flip_test)
      embeddings = embedder(pairs.images, eval_config.batch_size)
    reports[name] = verification.protocol_report(embeddings, pairs.pairs, pairs.is_same,
                                                 num_folds=pairs.num_folds,
                                                 far=eval_config.far, protocol=protocol)
  return {"teacher": teacher.source, "teacher_kind": teacher.kind, "pair_sets": reports,
          "pair_set_names": list(reports),
          "flip_test": bool(eval_config.flip_test and not teacher.precomputed)}
