"""Distillation from a teacher: the loss is 0 when the student is the teacher, the teacher
loads from a run folder or an exported SavedModel, the projection trains when sizes differ,
and bad teachers are refused by flag."""
import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from enas_face.training import distill
from enas_face.training import teachers
from enas_face import export
from enas_face.training import fixed
from enas_face import flags as enas_flags
from enas_face.config import ConfigError, DistillConfig
from enas_face.data import load_dataset
from enas_face.models import builders
from enas_face import spaces

TINY = ["--dataset=synthetic", "--image_size=16", "--synthetic_identities=6",
        "--synthetic_images_per_identity=8", "--synthetic_heldout_identities=4",
        "--synthetic_heldout_images_per_identity=4", "--num_pairs=20", "--num_folds=2",
        "--num_layers=2", "--num_reductions=1", "--base_filters=4", "--embedding_dim=8",
        "--batch_size=16", "--epochs=1", "--warmup_epochs=0", "--eval_every=0"]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
  """A trained (1 epoch) tiny enas_macro teacher run folder, its config and dataset."""
  values = flags.FLAGS
  run_dir = str(tmp_path_factory.mktemp("teacher") / "run")
  values.unparse_flags()
  values(["prog", *TINY, "--mode=fixed", f"--run_dir={run_dir}"])
  config = enas_flags.config_from_flags(values)
  values.unparse_flags()
  os.makedirs(run_dir, exist_ok=True)
  spaces.save_config(config, os.path.join(run_dir, "config.json"))
  dataset = load_dataset(config.data)
  state = fixed.train(config, dataset)
  return run_dir, config, dataset, state


def images_of(dataset, count=6):
  return tf.constant(dataset.val.images[:count].astype("float32"))


def test_distillation_loss_is_zero_when_the_student_is_the_teacher(teacher_run):
  run_dir, config, dataset, state = teacher_run
  settings = DistillConfig(teacher=run_dir, embedding_weight=1.0, kl_alpha=0.9, temperature=4.0)
  distillation = distill.build(settings, config.model.embedding_dim, dataset.num_classes)
  images = images_of(dataset)
  student = state.child(images, training=False)
  loss = distillation.loss(student, state.head, images).numpy()
  assert loss.shape == (6,)
  np.testing.assert_allclose(loss, 0.0, atol=1e-5)
  # another student (random weights): both terms are positive
  other = builders.build_child(config)
  other.standardize.set_statistics(*[w.numpy() for w in state.child.standardize.weights])
  loss = distillation.loss(other(images, training=False), state.head, images).numpy()
  assert (loss > 1e-3).all()
  assert distillation.cross_entropy_weight == pytest.approx(0.1)


def test_teacher_from_a_run_folder_is_its_trained_child(teacher_run):
  run_dir, config, dataset, state = teacher_run
  teacher = teachers.load_teacher(run_dir)
  images = images_of(dataset)
  embeddings, logits = teacher(images)
  expected = tf.math.l2_normalize(state.child(images, training=False), -1)
  np.testing.assert_allclose(embeddings.numpy(), expected.numpy(), atol=1e-5)
  assert logits.shape == (6, dataset.num_classes)
  assert teacher.num_classes == dataset.num_classes
  # a student of another input size sees the teacher's input resized
  larger = tf.image.resize(images, (32, 32))
  assert teacher(larger)[0].shape == (6, config.model.embedding_dim)


def test_teacher_from_an_exported_saved_model(teacher_run, tmp_path):
  run_dir, config, dataset, state = teacher_run
  path = export.export_saved_model(state.child, config.model.image_size, str(tmp_path / "sm"))
  teacher = teachers.load_teacher(path)
  assert teacher.head is None and teacher.embedding_dim == config.model.embedding_dim
  images = images_of(dataset)  # integer pixels: the uint8 signature sees them unchanged
  embeddings, logits = teacher(images)
  assert logits is None
  expected = tf.math.l2_normalize(state.child(images, training=False), -1)
  np.testing.assert_allclose(embeddings.numpy(), expected.numpy(), atol=1e-4)
  with pytest.raises(ConfigError, match="--distill_kl_alpha=0.5 needs the teacher's logits"):
    distill.build(DistillConfig(teacher=path, kl_alpha=0.5), 8, dataset.num_classes)


def test_projection_trains_when_the_sizes_differ(teacher_run):
  run_dir, config, dataset, state = teacher_run
  distillation = distill.build(DistillConfig(teacher=run_dir), 5, dataset.num_classes)
  assert distillation.projection.dense is not None
  student = tf.Variable(tf.random.normal((6, 5), seed=1))
  images = images_of(dataset)
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(distillation.loss(student, None, images))
  gradients = tape.gradient(loss, distillation.projection.trainable_variables + [student])
  assert all(float(tf.norm(g)) > 0 for g in gradients)
  # the same size: no projection, nothing to train
  assert distill.build(DistillConfig(teacher=run_dir), 8,
                       dataset.num_classes).projection.trainable_variables == []


def test_bad_teachers_are_refused_by_flag(teacher_run, tmp_path):
  run_dir, config, dataset, state = teacher_run
  with pytest.raises(ConfigError, match="--distill_from=.*no such file or folder"):
    teachers.load_teacher(str(tmp_path / "missing"))
  with pytest.raises(ConfigError, match="neither a run folder"):
    teachers.load_teacher(str(tmp_path))
  with pytest.raises(ConfigError, match="has 6 classes, this run's data 9"):
    distill.build(DistillConfig(teacher=run_dir, kl_alpha=0.9), 8, 9)
  empty = tmp_path / "untrained"
  empty.mkdir()
  spaces.save_config(dataclasses.replace(config, run_dir=str(empty)), str(empty / "config.json"))
  with pytest.raises(ConfigError, match="no checkpoint yet"):
    teachers.load_teacher(str(empty))


def test_ce_weight_scales_the_classification_term_and_is_refused_without_a_teacher(
    teacher_run):
  """w_CE = --distill_ce_weight (1 - alpha); 0 leaves the teacher's terms alone; the flag
  without a teacher, or below 0, is an error naming it."""
  run_dir, _, dataset, _ = teacher_run
  for weight, alpha, expected in ((1.0, 0.0, 1.0), (0.0, 0.0, 0.0), (0.5, 0.9, 0.05)):
    built = distill.build(DistillConfig(teacher=run_dir, cross_entropy_weight=weight,
                                        kl_alpha=alpha), 8, dataset.num_classes)
    assert built.cross_entropy_weight == pytest.approx(expected)
  with pytest.raises(ConfigError, match="--distill_ce_weight=0.0 .*--distill_from"):
    DistillConfig(cross_entropy_weight=0.0).validate()
  with pytest.raises(ConfigError, match="--distill_ce_weight=-1.0 must be >= 0"):
    DistillConfig(teacher=run_dir, cross_entropy_weight=-1.0).validate()


def test_file_targets_are_centred_on_the_training_mean(monkeypatch):
  """--distill_centre_targets: t - mu, mu the mean of the training images' targets (rows
  without a target neither count nor move); unlabelled targets take the same mu."""
  train = np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]], np.float32)  # the last: no target
  unlabelled = np.array([[2.0, 2.0]], np.float32)
  monkeypatch.setattr(distill, "training_targets", lambda teacher, split, missing: train)
  monkeypatch.setattr(distill, "unlabelled_targets",
                      lambda teacher, split, missing: ("images", unlabelled))
  teacher = teachers.Teacher(None, None, 0, 2, None, "file", "embeddings", object())
  centred = distill.Distillation(DistillConfig(teacher="file"), teacher,
                                 distill.Projection(2, 2))
  np.testing.assert_allclose(centred.training_targets(None), [[-1, -1], [1, 1], [0, 0]])
  assert centred.unlabelled_targets(None)[1].tolist() == [[0.0, -1.0]]  # mu = (2, 3)
  raw = distill.Distillation(DistillConfig(teacher="file", centre_targets=False), teacher,
                             distill.Projection(2, 2))
  np.testing.assert_array_equal(raw.training_targets(None), train)
  np.testing.assert_array_equal(raw.unlabelled_targets(None)[1], unlabelled)
