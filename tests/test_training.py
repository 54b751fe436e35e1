"""The training library: every head trains a tiny fixed run (with label smoothing), extra
loss terms add exactly their weighted value, and the search runs with a margin head."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_face import fixed, search
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
  loss, accuracy, _ = step(images, labels)
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
