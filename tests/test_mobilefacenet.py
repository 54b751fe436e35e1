"""The mobilefacenet space and its supernet, and the differentiable search's mechanics:
parameter and FLOPs counts against Keras and TensorFlow's profiler, the paper's 0.99 M
parameters, channel masking equal to a network built at that width, E[FLOPs] exact on
one-hot distributions, and the FLOPs loss driving the argmax to the budget."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from enas_face import costs
from enas_face.search import differentiable
from enas_face import spaces
from enas_face.config import ConfigError, ModelConfig
from enas_face.data.base import LabelledImages
from enas_face.models import mobilefacenet as model_lib
from enas_face.spaces import mobilefacenet as space_lib
from enas_face.spaces.base import SampleError
from enas_face.models import builders
from flops_oracle import profiler_flops

SPACE = spaces.get("mobilefacenet")
SMALL = ModelConfig(image_size=32, embedding_dim=32, search_space="mobilefacenet",
                    width_multiplier=0.5)


def random_shapes(config, count, seed=0):
  rng = np.random.default_rng(seed)
  return [SPACE.sample_uniform(config, rng) for _ in range(count)]


# ------------------------------------------------------------------- the network and counts
def test_parameters_at_width_1_match_the_paper():
  """Chen et al. 2018: 0.99 M parameters at 112x112 with a 128-d embedding. Ours counts
  every BN's gamma and beta and every PReLU slope too: within 2 %."""
  config = ModelConfig(image_size=112, embedding_dim=128, search_space="mobilefacenet")
  net = builders.build_fixed(config, SPACE.default(config))
  params = costs.keras_params(net)["trainable"]
  assert params == SPACE.params(config, SPACE.default(config))
  assert abs(params - 0.99e6) / 0.99e6 < 0.02, params
  # ~0.22 G multiply-adds (the paper counts the convolutions): our FLOPs count 2 per MAdd
  # plus BN/PReLU elements.
  assert 0.44e9 < SPACE.flops(config, SPACE.default(config)) < 0.48e9


def test_analytic_counts_match_keras_and_the_profiler():
  for shape in [SPACE.default(SMALL)] + random_shapes(SMALL, 2):
    net = builders.build_fixed(SMALL, shape)
    assert costs.keras_params(net)["trainable"] == SPACE.params(SMALL, shape), shape
    assert profiler_flops(net, SMALL.image_size) == SPACE.flops(SMALL, shape), shape


def test_width_multiplier_and_depth_shrink_the_network():
  full = SPACE.default(SMALL)
  half = dataclasses.replace(SMALL, width_multiplier=0.25)
  shallow = space_lib.Shape(depths=(1, 1, 1))
  assert SPACE.flops(half, full) < SPACE.flops(SMALL, full) / 2.5
  assert SPACE.flops(SMALL, shallow) < SPACE.flops(SMALL, full)
  net = builders.build_fixed(SMALL, shallow)
  assert [len(names) for names in net.block_names] == [1, 1, 1]


def test_samples_round_trip_and_bad_ones_are_named():
  decisions = SPACE.decisions(SMALL)
  assert [d.name for d in decisions] == space_lib.decision_names()
  assert [d.num_choices for d in decisions if d.name.endswith("_depth")] == [5, 7, 3]
  for shape in random_shapes(SMALL, 5, seed=1):
    assert SPACE.decode(SPACE.encode(shape), SMALL) == shape
    assert SPACE.from_json(SPACE.to_json(shape), SMALL) == shape
    assert SPACE.from_string(SPACE.to_string(shape), SMALL) == shape
  with pytest.raises(SampleError, match="stage2 depth 9"):
    SPACE.from_json({"widths": [1, 1, 1], "depths": [5, 9, 3]}, SMALL)
  with pytest.raises(SampleError, match="ratio 0.33"):
    SPACE.from_json({"widths": [1, 0.33, 1]}, SMALL)
  with pytest.raises(SampleError, match="disagrees"):
    SPACE.from_json({**SPACE.to_json(SPACE.default(SMALL)), "encoding": "0 " * 11 + "0"}, SMALL)
  with pytest.raises(ConfigError, match="--image_size=40"):
    builders.build_fixed(dataclasses.replace(SMALL, image_size=40), SPACE.default(SMALL))


# ---------------------------------------------------------------------------- the supernet
def _randomize(net, seed=0):
  """Random weights and BN statistics, so that slicing mistakes show."""
  rng = np.random.default_rng(seed)
  for weight in net.weights:
    value = rng.normal(0.0, 0.3, weight.shape).astype("float32")
    if "variance" in weight.path or weight.path.endswith("std"):
      value = np.abs(value) + 0.5
    weight.assign(value)


def test_masking_at_a_width_equals_the_network_built_at_that_width():
  supernet = builders.build_supernet(SMALL)
  _randomize(supernet)
  images = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
  for shape in random_shapes(SMALL, 3, seed=2) + [space_lib.Shape(depths=(1, 7, 1))]:
    fixed = builders.build_fixed(SMALL, shape).load_supernet_weights(supernet, shape)
    mix = model_lib.one_hot_mix(SMALL, shape)
    expected = fixed(images, training=False).numpy()
    masked = supernet(images, mix=tf.constant(mix), training=False).numpy()
    np.testing.assert_allclose(masked, expected, rtol=1e-4, atol=1e-4)
    # in training mode too (batch statistics over the unmasked channels)
    np.testing.assert_allclose(supernet(images, mix=tf.constant(mix), training=True).numpy(),
                               fixed(images, training=True).numpy(), rtol=1e-3, atol=1e-3)


def test_supernet_needs_its_mixing_weights():
  with pytest.raises(ValueError, match="mix"):
    builders.build_supernet(SMALL)(np.zeros((1, 32, 32, 3), "float32"))


# -------------------------------------------------------------- the differentiable search
def one_hot(shape):
  return tf.constant(model_lib.one_hot_mix(SMALL, shape))


def test_expected_flops_are_exact_on_one_hot_distributions():
  for shape in [SPACE.default(SMALL)] + random_shapes(SMALL, 5, seed=3):
    expected = float(differentiable.expected_flops(SMALL, one_hot(shape)))
    assert expected == pytest.approx(SPACE.flops(SMALL, shape), rel=1e-6)


def test_expected_flops_average_over_a_mixture():
  a, b = random_shapes(SMALL, 2, seed=4)
  # Two shapes that differ in one width decision only: E[FLOPs] is linear in its p.
  b = dataclasses.replace(a, head=0.3 if a.head != 0.3 else 1.0)
  mix = 0.25 * one_hot(a) + 0.75 * one_hot(b)
  expected = float(differentiable.expected_flops(SMALL, mix))
  assert expected == pytest.approx(0.25 * SPACE.flops(SMALL, a) + 0.75 * SPACE.flops(SMALL, b),
                                   rel=1e-6)


def test_gumbel_sample_mixes_two_widths_and_weights_depths_by_p():
  distributions = differentiable.Distributions(SMALL, seed=0)
  mix = distributions.sample(tf.constant(1.0), tf.constant([0, 1])).numpy()
  probabilities = distributions.probabilities().numpy()
  np.testing.assert_allclose(mix.sum(-1), 1.0, rtol=1e-5)
  for row, name in enumerate(distributions.names):
    if name.endswith("_depth"):
      np.testing.assert_allclose(mix[row], probabilities[row], rtol=1e-6)
    else:
      assert np.count_nonzero(mix[row]) == 2
    assert not mix[row][distributions.num_choices[row]:].any()  # no choice beyond the count


def test_temperature_schedule_and_flops_loss_sign():
  assert differentiable.temperature(0, 10, 5.0, 0.1) == pytest.approx(5.0)
  assert differentiable.temperature(9, 10, 5.0, 0.1) == pytest.approx(0.1)
  assert 0.1 < differentiable.temperature(4, 10, 5.0, 0.1) < 5.0
  assert differentiable.flops_loss_sign(110, 100, 0.05) == 1.0
  assert differentiable.flops_loss_sign(90, 100, 0.05) == -1.0
  assert differentiable.flops_loss_sign(97, 100, 0.05) == 0.0


def test_flops_loss_pushes_the_argmax_into_the_budget():
  """Toy problem: the FLOPs loss alone, from distributions that favour the full network;
  Adam on the logits brings the argmax architecture into [T (1 - tol), T]."""
  distributions = differentiable.Distributions(SMALL, seed=0)
  start = np.zeros(distributions.logits.shape, np.float32)
  start[:, :] = np.linspace(0.0, 0.5, start.shape[1])  # the widest and deepest choices first
  for row, count in enumerate(distributions.num_choices):
    start[row, count - 1] = 1.0
  distributions.logits.assign(start)
  full = SPACE.flops(SMALL, distributions.argmax_sample())
  target, tolerance = full / 4, 0.1
  optimizer = tf.keras.optimizers.Adam(0.05)

  @tf.function
  def step(sign):
    with tf.GradientTape() as tape:
      loss = differentiable.flops_loss(
          differentiable.expected_flops(SMALL, distributions.probabilities()), sign, 2.0)
    optimizer.apply_gradients([(tape.gradient(loss, distributions.logits), distributions.logits)])

  signs = []
  for _ in range(400):
    flops = SPACE.flops(SMALL, distributions.argmax_sample())
    signs.append(differentiable.flops_loss_sign(flops, target, tolerance))
    step(tf.constant(signs[-1]))
  final = SPACE.flops(SMALL, distributions.argmax_sample())
  assert signs[0] == 1.0
  assert target * (1 - tolerance) <= final <= target, (final, target)


def test_split_halves_are_disjoint_with_the_same_identities():
  labels = np.repeat(np.arange(5), 8)
  images = np.repeat(np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1), 3, axis=-1)
  a, b = differentiable.split_halves(LabelledImages(images, labels), seed=0)
  assert len(a.labels) == len(b.labels) == 20
  assert not set(a.images[..., 0].ravel()) & set(b.images[..., 0].ravel())
  assert set(a.labels) == set(b.labels) == set(range(5))
