"""A space of categorical decisions only, registered at run time, searched by the
multi-trial strategy with the ENAS controller, and trained from its ranking: the
search core works for a space other than ENAS macro, its network registered with
models.builders (library level; the CLI tests
cover enas_macro)."""
from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import pytest

from enas_face.training import fixed

from enas_face.search import loop as search

from enas_face import runlog
from enas_face import spaces
from enas_face.models import builders, ops
from enas_face.config import (DataConfig, EvalConfig, ModelConfig, RunConfig, SearchConfig,
                              TrainConfig)
from enas_face.data import load_dataset
from enas_face.spaces.base import Decision, SampleError, SearchSpace

WIDTHS, KERNELS = (4, 8, 16), (3, 5)


class ToyNet(keras.Model):
  """standardize -> conv(width, kernel) -> ReLU -> global average pool -> dense(D)."""

  def __init__(self, config: ModelConfig, sample: dict, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.standardize = ops.ChannelStandardization(name="standardize")
    self.conv = keras.layers.Conv2D(sample["width"], sample["kernel"], padding="same",
                                    activation="relu")
    self.pool = keras.layers.GlobalAveragePooling2D()
    self.out = keras.layers.Dense(config.embedding_dim)

  def call(self, images, training=False):
    return self.out(self.pool(self.conv(self.standardize(images))))


class ToySpace(SearchSpace):
  name = "toy_categorical"

  def decisions(self, model_config):
    return (Decision("width", len(WIDTHS)), Decision("kernel", len(KERNELS)))

  def encode(self, sample):
    return [WIDTHS.index(sample["width"]), KERNELS.index(sample["kernel"])]

  def decode(self, choices, model_config):
    width, kernel = self.check_choices(choices, model_config)
    return {"width": WIDTHS[width], "kernel": KERNELS[kernel]}

  def to_json(self, sample):
    return dict(sample)

  def from_json(self, obj, model_config):
    if not isinstance(obj, dict) or obj.get("width") not in WIDTHS or obj.get("kernel") not in KERNELS:
      raise SampleError(f"not a toy sample: {obj!r}")
    return {"width": obj["width"], "kernel": obj["kernel"]}

  def default(self, model_config):
    return {"width": 8, "kernel": 3}


def build_toy_net(model_config, sample, name="child"):
  model = ToyNet(model_config, sample, name=name)
  size = model_config.image_size
  model(np.zeros((1, size, size, 3), np.float32))
  return model


@pytest.fixture(scope="module")
def toy_space():
  space = spaces.register(ToySpace())
  builders.register(space.name, fixed=build_toy_net)
  yield space
  builders.unregister(space.name)
  spaces._REGISTRY.pop(space.name)  # pylint: disable=protected-access


def _config(run_dir: str) -> RunConfig:
  model = ModelConfig(image_size=16, num_layers=3, num_reductions=1, base_filters=8,
                      embedding_dim=8, search_space="toy_categorical")
  data = DataConfig(image_size=16, synthetic_identities=8, synthetic_images_per_identity=6,
                    synthetic_heldout_identities=6, synthetic_heldout_images_per_identity=4,
                    num_pairs=24, num_folds=2)
  return RunConfig(
      mode="search", run_dir=run_dir, arc={"width": 8, "kernel": 3}, model=model, data=data,
      train=TrainConfig(epochs=1, batch_size=16, warmup_epochs=0), eval=EvalConfig(batch_size=64),
      search=SearchConfig(epochs=2, controller_steps=1, controller_samples=3, controller_hidden=8,
                          controller_optimizer="adam", controller_lr=0.01,
                          strategy="multi_trial", trial_epochs=1, reward="accuracy",
                          reward_metric="verification", reward_identities=2, reward_pairs=8,
                          latency_warmup=1, latency_repeats=2, num_ranked=4))


def test_toy_space_round_trips(toy_space):
  model = _config("unused").model
  rng = np.random.default_rng(0)
  for _ in range(10):
    sample = toy_space.sample_uniform(model, rng)
    assert toy_space.decode(toy_space.encode(sample), model) == sample
    assert toy_space.from_string(toy_space.to_string(sample), model) == sample
  assert not toy_space.supports_weight_sharing


@pytest.mark.slow
def test_multi_trial_search_and_fixed_training_of_a_categorical_space(toy_space, tmp_path,
                                                                       frozen_gc):
  config = _config(str(tmp_path / "search"))
  os.makedirs(config.run_dir)
  dataset = load_dataset(config.data)
  summary = search.search(config, dataset)
  assert summary["search_space"] == "toy_categorical" and summary["strategy"] == "multi_trial"
  records = search.read_log(config.run_dir)
  assert len(records) == 2 * 3
  assert {r["space"] for r in records} == {"toy_categorical"}
  for record in records:
    assert toy_space.from_json(record["sample"], config.model) is not None
    assert 0.0 <= record["score"] <= 1.0 and record["reward"] == pytest.approx(record["score"])
  assert summary["trials"] == len({r["encoding"] for r in records})
  # The ranking feeds fixed training, as --mode=fixed --arc_file does.
  best = spaces.load_samples(os.path.join(config.run_dir, runlog.ARCS_RANKED), toy_space,
                             config.model)[0]
  trained = dataclasses.replace(config, mode="fixed", arc=best, run_dir=str(tmp_path / "fixed"))
  state = fixed.train(trained, dataset)
  metrics = fixed.evaluate(trained, dataset, state.child, state.head)
  assert metrics["architecture"] == toy_space.to_string(best)
  assert 0.0 <= metrics["verification_accuracy"] <= 1.0 and metrics["params"] > 0
