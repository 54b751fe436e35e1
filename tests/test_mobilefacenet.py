"""The mobilefacenet space and its supernet, and the differentiable search's mechanics:
parameter and FLOPs counts against Keras and TensorFlow's profiler, the paper's 0.99 M
parameters, channel masking equal to a network built at that width, E[FLOPs] exact on
one-hot distributions, and the FLOPs loss driving the argmax to the budget."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from enas_face import costs
from enas_face import distribute
from enas_face.search import differentiable
from enas_face import spaces
from enas_face.config import (ConfigError, DataConfig, DistillConfig, EvalConfig, HeadConfig,
                              ModelConfig, RunConfig, SearchConfig, TrainConfig)
from enas_face.data.base import LabelledImages
from enas_face.models import mobilefacenet as model_lib
from enas_face.spaces import mobilefacenet as space_lib
from enas_face.spaces.base import SampleError
from enas_face.models import builders
from enas_face.training import distill
from enas_face.training import teachers
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


def test_shared_model_called_with_an_arc_is_that_architecture():
  """The one-shot search's shared model (the supernet called with arc=, blocks beyond the
  depth skipped by a cond) equals the fixed network of the arc with the supernet's weights,
  in inference and with batch statistics (the search's scores), in one trace for all arcs."""
  shared = builders.build_shared(SMALL)
  _randomize(shared, seed=3)
  images = np.random.default_rng(4).uniform(0, 255, (4, 32, 32, 3)).astype("float32")

  @tf.function
  def embed(images, arc, batch_statistics):
    return shared(images, arc=arc, training=False, batch_statistics=batch_statistics)

  for shape in random_shapes(SMALL, 3, seed=5) + [space_lib.Shape(depths=(1, 7, 2))]:
    fixed = builders.build_fixed(SMALL, shape).load_supernet_weights(shared, shape)
    arc = tf.constant(SPACE.encode(shape), tf.int32)
    np.testing.assert_allclose(embed(images, arc, False).numpy(),
                               fixed(images, training=False).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(embed(images, arc, True).numpy(),
                               fixed(images, training=True).numpy(), rtol=1e-3, atol=1e-3)
  assert embed.experimental_get_tracing_count() == 2  # one per batch_statistics value


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



# ------------------------------------------ the search's loss is the training seam's (step.py)
TINY = ModelConfig(image_size=16, embedding_dim=8, search_space="mobilefacenet",
                   width_multiplier=0.25)
CLASSES, BATCH, SMOOTHING, TAU, SEED = 6, 8, 0.1, tf.constant(1.0), tf.constant([3, 4])


def tiny_distillation(config: DistillConfig) -> distill.Distillation:
  """distill.build's stand-in: a random linear teacher (x / 255 -> 6-d) with a softmax head,
  and the 8 -> 6 projection."""
  embed = tf.keras.Sequential([tf.keras.layers.Reshape((16 * 16 * 3,)),
                               tf.keras.layers.Rescaling(1 / 255), tf.keras.layers.Dense(6)])
  teacher = teachers.Teacher(embed, tf.keras.layers.Dense(CLASSES), 16, 6, CLASSES, "tiny")
  teacher(tf.zeros((1, 16, 16, 3)))
  projection = distill.Projection(TINY.embedding_dim, 6)
  projection.build((None, TINY.embedding_dim))
  return distill.Distillation(config, teacher, projection)


class TinySearch:
  """The search's state (differentiable.create_state, as search() builds it) on a cosface
  head, with --regularface_weight and the tiny teacher, seeded identically, and a batch."""

  def __init__(self, regularface_weight=0.0, alpha=None):
    tf.keras.utils.set_random_seed(5)
    self.regularface_weight = regularface_weight
    config = RunConfig(
        mode="search", run_dir="", arc=None, model=TINY, data=DataConfig(), eval=EvalConfig(),
        train=TrainConfig(batch_size=BATCH, label_smoothing=SMOOTHING, warmup_epochs=1),
        search=SearchConfig(strategy="differentiable", epochs=2),
        head=HeadConfig(head="cosface", margin_scale="16", regularface_weight=regularface_weight),
        distill=DistillConfig(teacher="" if alpha is None else "tiny", embedding_weight=0.7,
                              kl_alpha=alpha or 0.0))
    with pytest.MonkeyPatch.context() as patch:  # no teacher folder: the tiny teacher
      patch.setattr(distill, "build",
                    lambda cfg, *_: tiny_distillation(cfg) if cfg.teacher else None)
      state = differentiable.create_state(config, CLASSES, 10, distribute.make_placement("default"))
    self.supernet, self.head, self.distributions = state.supernet, state.head, state.distributions
    self.distillation, self.optimizer = state.distillation, state.optimizer
    self.weight_step, self.arch_step = state.weight_step, state.arch_step
    rng = np.random.default_rng(0)
    self.images = tf.constant(rng.uniform(0, 255, (BATCH, 16, 16, 3)).astype("float32"))
    self.labels = tf.constant(rng.permutation(BATCH) % CLASSES, tf.int32)

  def steps(self):
    """(L of the weight step, its reference; L of the arch step after it, its reference)."""
    before = self.reference()
    loss, _, _ = self.weight_step(self.images, self.labels, TAU, SEED)
    after = self.reference()
    arch_loss, _ = self.arch_step(self.images, self.labels, TAU, SEED, tf.constant(1.0))
    return float(loss), before, float(arch_loss), after

  def reference(self) -> dict:
    """CE, RegularFace, the distillation term and L = w_CE CE + w_R RF + distill, in numpy
    from the model's outputs on the batch."""
    embeddings = self.supernet(self.images, mix=self.distributions.sample(TAU, SEED),
                               training=True)
    logits = self.head.training_logits(embeddings, self.labels, step=self.optimizer.iterations)[0]
    target = (1 - SMOOTHING) * np.eye(CLASSES)[self.labels.numpy()] + SMOOTHING / CLASSES
    cross_entropy = -(target * log_softmax(logits)).sum(-1).mean()
    w = unit(self.head.class_weights.numpy().T)  # [C, D]
    regularface = (w @ w.T - 3.0 * np.eye(CLASSES)).max(-1).mean()
    parts = {"ce": cross_entropy, "regularface": regularface, "distill": 0.0, "ce_weight": 1.0}
    if self.distillation is not None:
      cfg, teacher = self.distillation.config, self.distillation.teacher
      dense = teacher.embed.layers[-1]
      pixels = self.images.numpy().reshape(BATCH, -1) / 255.0
      raw = pixels @ dense.kernel.numpy() + dense.bias.numpy()
      student = unit(embeddings.numpy() @ self.distillation.projection.dense.kernel.numpy())
      term = cfg.embedding_weight * (1 - (student * unit(raw)).sum(-1))
      t = cfg.temperature
      log_p_t = log_softmax((raw @ teacher.head.kernel.numpy() + teacher.head.bias.numpy()) / t)
      log_p_s = log_softmax(self.head(embeddings).numpy() / t)
      term = term + cfg.kl_alpha * t * t * (np.exp(log_p_t) * (log_p_t - log_p_s)).sum(-1)
      parts.update(distill=term.mean(), ce_weight=1 - cfg.kl_alpha)
    parts["loss"] = (parts["ce_weight"] * cross_entropy + self.regularface_weight * regularface
                     + parts["distill"])
    return parts


def log_softmax(logits):
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def searches():
  """(L of the weight step, its reference, L of the arch step, its reference) of tiny searches:
  plain, --regularface_weight=0.5, and that with a teacher (alpha 0.5). The steps run eagerly
  (the same code; tracing the supernet's gradient takes a minute on 2 cores)."""
  tf.config.run_functions_eagerly(True)
  try:
    return {"plain": TinySearch().steps(), "regularface": TinySearch(0.5).steps(),
            "distill": TinySearch(0.5, alpha=0.5).steps()}
  finally:
    tf.config.run_functions_eagerly(False)


def test_regularface_reaches_the_width_depth_search(searches):
  """--regularface_weight: both steps' L = CE + w RegularFace(W), not the CE alone."""
  loss, before, arch_loss, after = searches["regularface"]
  assert before["regularface"] > 0.05
  np.testing.assert_allclose(loss, before["ce"] + 0.5 * before["regularface"], rtol=1e-5)
  np.testing.assert_allclose(arch_loss, after["ce"] + 0.5 * after["regularface"], rtol=1e-5)
  plain, plain_before, plain_arch, _ = searches["plain"]
  np.testing.assert_allclose(plain, plain_before["ce"], rtol=1e-5)
  np.testing.assert_allclose(plain_before["ce"], before["ce"], rtol=1e-6)  # the same start
  np.testing.assert_allclose(loss - plain, 0.5 * before["regularface"], rtol=1e-4)
  assert abs(arch_loss - plain_arch) > 0.01


def test_distillation_reaches_the_width_depth_search(searches):
  """With a teacher: both steps' L = (1 - alpha) CE + w_R RegularFace + w_e (1 - cos)
  + alpha T^2 KL (distill.py's term, averaged over the batch)."""
  loss, before, arch_loss, after = searches["distill"]
  assert before["distill"] > 0.05 and before["ce_weight"] == 0.5
  np.testing.assert_allclose(loss, before["loss"], rtol=1e-5)
  np.testing.assert_allclose(arch_loss, after["loss"], rtol=1e-5)
  without = 0.5 * before["ce"] + 0.5 * before["regularface"]
  np.testing.assert_allclose(loss - without, before["distill"], rtol=1e-4)
  assert abs(loss - searches["regularface"][0]) > 0.05
