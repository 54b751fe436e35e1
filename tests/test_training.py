"""The training library: every head trains a tiny fixed run (with label smoothing), extra
loss terms add exactly their weighted value, and the search runs with a margin head."""
import dataclasses
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_face.training import fixed

from enas_face.search import loop as search
from enas_face.models import heads
from enas_face.spaces import enas_macro
from enas_face.models.child import FixedChild
from enas_face.config import (HEADS, DataConfig, EvalConfig, HeadConfig, ModelConfig, RunConfig,
                              SearchConfig, TrainConfig)
from enas_face.data import load_dataset
from enas_face.training import step as train_lib

MODEL = ModelConfig(image_size=16, num_layers=2, num_reductions=1, base_filters=8,
                    embedding_dim=16)
DATA = DataConfig(image_size=16, synthetic_identities=8, synthetic_images_per_identity=10,
                  synthetic_heldout_identities=4, synthetic_heldout_images_per_identity=5,
                  num_pairs=20)


@pytest.fixture(scope="module")
def dataset():
  return load_dataset(DATA)


def tiny_config(run_dir, head: HeadConfig, mode="fixed", epochs=4) -> RunConfig:
  return RunConfig(mode=mode, run_dir=str(run_dir), arc=enas_macro.default_architecture(2),
                   model=MODEL, data=DATA,
                   train=TrainConfig(epochs=epochs, batch_size=16, warmup_epochs=1, lr_max=0.1,
                                     label_smoothing=0.1),
                   eval=EvalConfig(batch_size=64), head=head,
                   search=SearchConfig(epochs=epochs, controller_steps=1, controller_samples=2,
                                       controller_hidden=8, latency_warmup=1, latency_repeats=1,
                                       val_batch_size=8, num_final_samples=3, num_ranked=2,
                                       reward="accuracy"))


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
def test_every_head_trains_a_tiny_fixed_run_with_label_smoothing(tmp_path, dataset, head):
  """Loss finite every epoch and lower after 4 epochs than after the first (AdaCos scale)."""
  keras.utils.set_random_seed(0)
  config = tiny_config(tmp_path, HeadConfig(head=head, margin_scale="auto"))
  state = fixed.train(config, dataset)
  history = fixed.read_history(config.run_dir)
  losses = [r["loss"] for r in history]
  assert len(losses) == 4 and all(np.isfinite(losses))
  assert losses[-1] < losses[0], losses
  assert isinstance(state.head, heads.MarginHead) == (head != "softmax")
  metrics = fixed.evaluate(config, dataset, state.child, state.head)
  assert 0.0 <= metrics["val_classification_accuracy"] <= 1.0


def _step_loss(extra):
  """Loss of one train step from a seeded initial state, with the given extra terms."""
  keras.utils.set_random_seed(1)
  child = FixedChild(MODEL, enas_macro.default_architecture(2)).build_for_input()
  head = heads.build_head(HeadConfig(head="cosface", margin_scale="16"), 8, MODEL.embedding_dim)
  optimizer = train_lib.make_optimizer(TrainConfig(epochs=2, warmup_epochs=1), 10, 2)
  step = train_lib.make_train_step(child, head, optimizer, 0.0, 8, 8, extra=extra)
  images = tf.random.stateless_uniform([8, 16, 16, 3], seed=[3, 4])
  labels = tf.range(8, dtype=tf.int32)
  initial_regularface = float(heads.regularface_loss(head.class_weights))
  loss, accuracy, _, _ = step(images, labels)
  return float(loss), float(accuracy), initial_regularface


def test_extra_loss_terms_add_their_weighted_value():
  """L = CE + w * RegularFace(W), evaluated before the update; per-example terms are
  averaged over the global batch."""
  plain, accuracy, regularface = _step_loss([])
  with_term, _, _ = _step_loss(train_lib.extra_losses(HeadConfig(head="cosface",
                                                                 regularface_weight=0.5)))
  np.testing.assert_allclose(with_term - plain, 0.5 * regularface, rtol=1e-4)
  per_example = train_lib.ExtraLoss("norm", 2.0, lambda inputs: tf.norm(inputs.embeddings, axis=-1),
                                    per_example=True)
  with_norm, _, _ = _step_loss([per_example])
  assert with_norm > plain
  assert 0.0 <= accuracy <= 1.0


def test_train_step_loss_is_the_seam_loss():
  """The step of fixed training and of the one-shot search takes TaskLoss on its batch
  (before the update): L = w_CE CE(smoothed) + w_R RegularFace(W) + w mean |e|, in numpy."""
  keras.utils.set_random_seed(2)
  model = dataclasses.replace(MODEL, dropblock_keep_prob=1.0)  # e the same in both calls
  child = FixedChild(model, enas_macro.default_architecture(2)).build_for_input()
  head = heads.build_head(HeadConfig(head="arcface", margin_scale="16"), 8, MODEL.embedding_dim)
  optimizer = train_lib.make_optimizer(TrainConfig(epochs=2, warmup_epochs=1), 10, 2)
  extra, ce_weight = train_lib.run_terms(HeadConfig(regularface_weight=0.5))
  extra.append(train_lib.ExtraLoss("norm", 2.0, lambda inputs: tf.norm(inputs.embeddings, axis=-1),
                                   per_example=True))
  images = tf.random.stateless_uniform([8, 16, 16, 3], seed=[5, 6], maxval=255.0)
  labels = tf.constant([0, 1, 2, 3, 4, 5, 6, 0], tf.int32)
  embeddings = child(images, training=True)
  seam, _ = train_lib.TaskLoss(head, 8, 0.1, 8, extra, 0.6)(images, labels, embeddings,
                                                            optimizer.iterations)
  logits = head.training_logits(embeddings, labels, step=optimizer.iterations)[0].numpy()
  logits = logits.astype(np.float64) - logits.max(-1, keepdims=True)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  target = 0.9 * np.eye(8)[labels.numpy()] + 0.1 / 8
  w = head.class_weights.numpy().astype(np.float64)
  w /= np.linalg.norm(w, axis=0)
  reference = (0.6 * -(target * log_p).sum(-1).mean()
               + 0.5 * (w.T @ w - 3 * np.eye(8)).max(-1).mean()
               + 2.0 * np.linalg.norm(embeddings.numpy(), axis=-1).mean())
  np.testing.assert_allclose(float(seam), reference, rtol=1e-5)
  step = train_lib.make_train_step(child, head, optimizer, 0.1, 8, 8, extra=extra,
                                   cross_entropy_weight=0.6)
  loss, _, _, terms = step(images, labels)
  np.testing.assert_allclose(float(loss), float(seam), rtol=1e-6)
  # The step's terms: each weighted part, summing to L (what the history logs per epoch).
  assert sorted(terms) == ["cross_entropy", "norm", "regularface"]
  np.testing.assert_allclose(sum(float(v) for v in terms.values()), float(loss), rtol=1e-6)
  np.testing.assert_allclose(float(terms["regularface"]),
                             0.5 * (w.T @ w - 3 * np.eye(8)).max(-1).mean(), rtol=1e-5)
  assert ce_weight == 1.0 and [term.name for term in extra] == ["regularface", "norm"]


def test_run_terms_add_distillation_and_its_cross_entropy_weight():
  """With a teacher: RegularFace then distillation's term, w_CE = 1 - alpha."""
  term = train_lib.ExtraLoss("distill", 1.0, lambda inputs: inputs.embeddings, per_example=True)
  teacher = types.SimpleNamespace(term=lambda: term, cross_entropy_weight=0.1)
  extra, ce_weight = train_lib.run_terms(HeadConfig(regularface_weight=0.3), teacher)
  assert [t.name for t in extra] == ["regularface", "distill"] and extra[0].weight == 0.3
  assert ce_weight == 0.1
  assert train_lib.run_terms(HeadConfig(), teacher) == ([term], 0.1)
  assert train_lib.run_terms(HeadConfig()) == ([], 1.0)


def test_no_extra_terms_without_regularface():
  assert train_lib.extra_losses(HeadConfig(head="arcface")) == []


@pytest.mark.slow
def test_search_runs_with_a_margin_head(tmp_path, dataset, frozen_gc):
  """The shared child trains with ArcFace, and rewards use the cosine argmax (in [0, 1])."""
  keras.utils.set_random_seed(0)
  config = tiny_config(tmp_path, HeadConfig(head="arcface", margin_scale="auto"), mode="search",
                       epochs=2)
  summary = search.search(config, dataset)
  records = search.read_log(config.run_dir)
  assert len(records) == 2 * 1 * 2
  assert all(0.0 <= r["score"] <= 1.0 for r in records)
  assert 0.0 <= summary["final_score_best"] <= 1.0
  names = [name for name, _ in tf.train.list_variables(
      tf.train.latest_checkpoint(f"{config.run_dir}/checkpoints"))]
  assert any(n.startswith("head/kernel") for n in names)  # the margin head's W, no bias
  assert not any(n.startswith("head/dense") for n in names)
