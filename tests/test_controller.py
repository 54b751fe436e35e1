"""Tests for the ENAS macro controller, TuNAS's categorical policy, the random sampler and
REINFORCE."""
from __future__ import annotations

import collections
import json
import math
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_face.search.controller import (CategoricalController, Controller, ControllerSample,
                                         RandomSampler, ReinforceTrainer, StepDecayWithFloor,
                                         controller_optimizer, piecewise_lr)
from enas_face.spaces.base import Decision
from enas_face.spaces.enas_macro import Architecture, decisions


def _arc(arc_tensor) -> Architecture:
  return Architecture.from_ints(np.asarray(arc_tensor).ravel().tolist())


def _uniform_entropy(decision_list) -> float:
  """sum_k log(num_choices_k)."""
  return float(sum(math.log(d.num_choices) for d in decision_list))


def _sample_many(sampler, count: int) -> list[ControllerSample]:
  return [sampler.sample() for _ in range(count)]


def _trained_controller(num_layers=4, steps=5, seed=0, **controller_kwargs):
  """A controller with non-zero output weights after a few Adam steps on random rewards."""
  controller = Controller(decisions(num_layers), hidden_units=32, seed=seed, **controller_kwargs)
  trainer = ReinforceTrainer(controller, controller_optimizer("adam", 0.05))
  rewards_rng = np.random.default_rng(seed)
  for _ in range(steps):
    arcs = tf.stack([controller.sample().arc for _ in range(4)])
    trainer.update(arcs, rewards_rng.uniform(size=4).astype(np.float32))
  return controller, trainer


# --------------------------------------------------------- uniform start
def test_untrained_controller_is_exactly_uniform():
  decision_list = decisions(5)
  expected = 5 * math.log(4) + 10 * math.log(2)
  assert _uniform_entropy(decision_list) == pytest.approx(expected)
  controller = Controller(decision_list, seed=3)
  for sample in _sample_many(controller, 5):
    assert float(sample.entropy) == pytest.approx(expected, abs=1e-5)
    assert float(sample.log_prob) == pytest.approx(-expected, abs=1e-5)
    # KL(Bern(0.5) || Bern(0.4)) per skip decision.
    kl = 0.5 * math.log(0.5 / 0.4) + 0.5 * math.log(0.5 / 0.6)
    assert float(sample.skip_penalty) == pytest.approx(10 * kl, abs=1e-5)


def test_uniform_start_also_with_temperature_and_tanh():
  decision_list = decisions(3)
  controller = Controller(decision_list, hidden_units=16, temperature=5.0, tanh_constant=2.5)
  sample = controller.sample()
  assert float(sample.entropy) == pytest.approx(_uniform_entropy(decision_list), abs=1e-5)


def test_temperature_and_tanh_constant_shape_the_logits():
  controller = Controller(decisions(1), hidden_units=8, temperature=5.0, tanh_constant=1.5)
  controller.w_soft_op.bias.assign([10.0, 0.0, 0.0, 0.0])  # logits/T = [2, 0, 0, 0], then 1.5 tanh
  logits = 1.5 * np.tanh(np.array([2.0, 0.0, 0.0, 0.0]))
  log_p = logits - np.log(np.sum(np.exp(logits)))
  for op in range(4):
    assert float(controller.evaluate([op]).log_prob) == pytest.approx(log_p[op], abs=1e-5)


# ------------------------------------------------------------- sampling
def test_samples_are_valid_encodings():
  decision_list = decisions(5)
  controller = Controller(decision_list, hidden_units=32)
  for sample in _sample_many(controller, 20):
    assert sample.arc.dtype == tf.int32 and sample.arc.shape == (len(decision_list),)
    arc = _arc(sample.arc)
    assert isinstance(arc, Architecture) and arc.num_layers == 5
    assert Architecture.from_ints(sample.arc.numpy().tolist(), num_layers=5) == arc
    assert float(sample.num_skips) == arc.num_skips


def test_same_seed_same_sequence_different_seed_differs():
  decision_list = decisions(5)
  runs = {}
  for name, seed in (("a", 7), ("b", 7), ("c", 8)):
    controller = Controller(decision_list, hidden_units=16, seed=seed)
    runs[name] = [tuple(s.arc.numpy()) for s in _sample_many(controller, 10)]
  assert runs["a"] == runs["b"]
  assert runs["a"] != runs["c"]
  assert len(set(runs["a"])) > 1  # the stream advances


def _randomise_outputs(controller, seed=0, scale=0.5):
  """Non-zero output projections, so the distribution is far from uniform."""
  rng = np.random.default_rng(seed)
  for variable in (controller.w_soft_op.kernel, controller.w_soft_op.bias, controller.v_attn.kernel):
    variable.assign(rng.normal(scale=scale, size=variable.shape).astype(np.float32))


def _assert_evaluate_matches_sample(controller, count=8):
  uniform = _uniform_entropy(controller.decision_list)
  for sample in _sample_many(controller, count):
    evaluated = controller.evaluate(sample.arc)
    np.testing.assert_array_equal(evaluated.arc.numpy(), sample.arc.numpy())
    assert float(evaluated.log_prob) == pytest.approx(float(sample.log_prob), abs=1e-4)
    assert float(evaluated.entropy) == pytest.approx(float(sample.entropy), abs=1e-4)
    assert float(evaluated.skip_penalty) == pytest.approx(float(sample.skip_penalty), abs=1e-4)
    assert float(evaluated.num_skips) == float(sample.num_skips)
    assert float(sample.log_prob) <= 0 and float(sample.entropy) < uniform


def test_evaluate_matches_sample_with_non_uniform_weights():
  controller = Controller(decisions(4), hidden_units=32, tanh_constant=2.5)
  _randomise_outputs(controller)
  _assert_evaluate_matches_sample(controller)
  arcs = tf.stack([s.arc for s in _sample_many(controller, 3)])
  batched = controller.evaluate(arcs)
  assert batched.log_prob.shape == (3,)
  for row in range(3):
    assert float(batched.log_prob[row]) == pytest.approx(float(controller.evaluate(arcs[row]).log_prob),
                                                         abs=1e-4)


def test_invalid_decision_lists_are_rejected():
  decision_list = decisions(3)
  with pytest.raises(ValueError, match="skip decisions must directly follow the categorical decision opening their layer 1"):
    Controller(decision_list[:1] + decision_list[2:])
  with pytest.raises(ValueError, match="skip from layer 0 into layer 2"):
    Controller(decision_list[:4] + decision_list[5:] + decision_list[4:5])
  with pytest.raises(ValueError, match="at least one decision"):
    Controller([])


# ----------------------------------------------------------- REINFORCE
@pytest.mark.parametrize("seed", range(5))
def test_update_moves_log_prob_with_the_advantage(seed):
  # A small step, so the first-order effect decides the sign (lr 0.1 could overshoot).
  keras.utils.set_random_seed(seed)
  controller = Controller(decisions(3), hidden_units=32, seed=seed)
  _randomise_outputs(controller)
  trainer = ReinforceTrainer(controller, controller_optimizer("sgd", 0.01), baseline_decay=1.0,
                             entropy_weight=0.0, skip_weight=0.0)
  arc = controller.sample().arc
  for reward in (1.0, -1.0, -1.0):  # advantage = reward, the baseline stays frozen at 0
    before = float(controller.evaluate(arc).log_prob)
    stats = trainer.update(arc[None, :], [reward])
    after = float(controller.evaluate(arc).log_prob)
    assert stats["baseline"] == 0.0 and stats["advantage"] == pytest.approx(reward)
    assert stats["log_prob"] == pytest.approx(before, abs=1e-4)
    assert stats["loss"] == pytest.approx(-reward * before, rel=1e-4)
    assert reward * (after - before) > 1e-3


def test_update_statistics_baseline_and_gradient_clipping():
  controller = Controller(decisions(3), hidden_units=16)
  weights_before = [v.numpy() for v in controller.trainable_variables]
  trainer = ReinforceTrainer(controller, controller_optimizer("sgd", 1.0), baseline_decay=0.9,
                             entropy_weight=0.5, grad_clip_norm=1e-3)
  arcs = tf.stack([s.arc for s in _sample_many(controller, 4)])
  rewards = np.array([1.0, 0.0, 0.5, 0.5], np.float32)
  stats = trainer.update(arcs, rewards)
  assert set(stats) == {"loss", "baseline", "advantage", "grad_norm", "entropy", "skip_penalty",
                        "skip_density", "log_prob"}
  assert all(type(value) is float for value in stats.values())
  entropy = _uniform_entropy(controller.decision_list)
  shaped_mean = 0.5 + 0.5 * entropy  # r' = r + entropy_weight * H, H uniform at the start
  assert stats["entropy"] == pytest.approx(entropy, abs=1e-4)
  assert stats["log_prob"] == pytest.approx(-entropy, abs=1e-4)
  assert stats["baseline"] == pytest.approx(0.1 * shaped_mean, rel=1e-5)
  assert float(trainer.baseline) == pytest.approx(stats["baseline"])
  assert stats["advantage"] == pytest.approx(shaped_mean - stats["baseline"], rel=1e-5)
  num_skips = sum(_arc(a).num_skips for a in arcs)
  assert stats["skip_density"] == pytest.approx(num_skips / 4 / 3)
  # The unclipped norm is reported; SGD with lr 1 then moves the weights by exactly grad_clip_norm.
  assert stats["grad_norm"] > 1e-3
  step = np.sqrt(sum(np.sum((v.numpy() - w) ** 2)
                     for v, w in zip(controller.trainable_variables, weights_before)))
  assert step == pytest.approx(1e-3, rel=1e-3)


def test_single_layer_controller_trains():
  controller = Controller(decisions(1), hidden_units=8)
  trainer = ReinforceTrainer(controller, controller_optimizer("adam", 0.05))
  stats = trainer.update(controller.sample().arc[None, :], [1.0])
  assert stats["skip_density"] == 0.0 and stats["skip_penalty"] == 0.0


def test_skip_penalty_pulls_skip_probability_to_target():
  controller = Controller(decisions(4), hidden_units=32, skip_target=0.2, seed=1)
  trainer = ReinforceTrainer(controller, controller_optimizer("adam", 0.02), baseline_decay=1.0,
                             entropy_weight=0.0, skip_weight=1.0)

  def mean_p_skip():
    arcs = tf.stack([s.arc for s in _sample_many(controller, 16)])
    return float(tf.reduce_mean(controller.skip_probabilities(arcs)))

  def skip_density(count=100):
    return np.mean([float(s.num_skips) / 6 for s in _sample_many(controller, count)])

  start_p, start_density = mean_p_skip(), skip_density()
  assert start_p == pytest.approx(0.5, abs=1e-6)
  for _ in range(30):
    arcs = tf.stack([s.arc for s in _sample_many(controller, 4)])
    stats = trainer.update(arcs, np.zeros(4, np.float32))
    assert stats["advantage"] == 0.0
  end_p, end_density = mean_p_skip(), skip_density()
  assert end_p < start_p - 0.15
  assert abs(end_p - 0.2) < abs(start_p - 0.2)
  assert end_density < start_density - 0.1
  assert abs(end_density - 0.2) < 0.1


def test_controller_beats_random_on_a_preferred_architecture():
  decision_list = decisions(3)
  target_ops = (2, 0, 3)
  keras.utils.set_random_seed(0)
  controller = Controller(decision_list, hidden_units=32, seed=0)
  # Only the op reward drives learning: entropy_weight=0 keeps every advantage exactly 0 until the
  # target is first drawn, skip_weight=0 keeps the KL term from dragging the shared LSTM around.
  # (With Adam at lr 0.05 this sparse-reward problem often collapses onto a wrong arc; 0.01 is stable.)
  trainer = ReinforceTrainer(controller, controller_optimizer("adam", 0.01), baseline_decay=0.9,
                             entropy_weight=0.0, skip_weight=0.0)

  def reward(arc) -> float:
    return 1.0 if _arc(arc).ops == target_ops else 0.0

  for _ in range(250):
    samples = _sample_many(controller, 4)
    trainer.update(tf.stack([s.arc for s in samples]),
                   np.array([reward(s.arc) for s in samples], np.float32))
  hits = np.mean([reward(s.arc) for s in _sample_many(controller, 200)])
  random_hits = np.mean([reward(s.arc) for s in _sample_many(RandomSampler(decision_list), 200)])
  assert random_hits < 0.06  # 1/64 in expectation
  assert hits > 0.5 and hits > 10 * max(random_hits, 1 / 64)
  _assert_evaluate_matches_sample(controller)  # trained, so far from uniform


# ----------------------------------------------------------- checkpoints
def _weights(controller):
  return [v.numpy() for v in controller.weights]


def test_checkpoint_round_trip_restores_weights_baseline_optimizer_and_rng(tmp_path):
  controller, trainer = _trained_controller(num_layers=3, steps=3, tanh_constant=2.5)
  optimizer = trainer.optimizer
  checkpoint = tf.train.Checkpoint(controller=controller, trainer_baseline=trainer.baseline,
                                   optimizer=optimizer)
  path = checkpoint.save(str(tmp_path / "ckpt"))
  saved_names = {name for name, _ in tf.train.list_variables(path)}
  assert any(name.startswith("controller/rng/") for name in saved_names)
  assert any(name.startswith("optimizer/") for name in saved_names)
  assert sum(name.startswith("controller/") for name in saved_names) == len(controller.weights) + 1
  saved_weights, saved_baseline = _weights(controller), float(trainer.baseline)
  saved_iterations = int(optimizer.iterations)
  saved_optimizer_vars = [v.numpy() for v in optimizer.variables]
  after_save = [tuple(s.arc.numpy()) for s in _sample_many(controller, 5)]

  for _ in range(3):  # continue: weights, baseline, optimizer and RNG all move on
    arcs = tf.stack([s.arc for s in _sample_many(controller, 4)])
    trainer.update(arcs, np.array([1.0, 0.0, 2.0, 0.5], np.float32))
  assert float(trainer.baseline) != saved_baseline
  assert any(not np.array_equal(a, b) for a, b in zip(_weights(controller), saved_weights))

  checkpoint.restore(path).assert_consumed()
  assert [tuple(s.arc.numpy()) for s in _sample_many(controller, 5)] == after_save
  for restored, saved in zip(_weights(controller), saved_weights):
    np.testing.assert_array_equal(restored, saved)
  assert float(trainer.baseline) == saved_baseline
  assert int(optimizer.iterations) == saved_iterations
  for restored, saved in zip(optimizer.variables, saved_optimizer_vars):
    np.testing.assert_array_equal(restored.numpy(), saved)

  # A fresh controller (other seed, other random init) restored from the file behaves identically.
  fresh = Controller(decisions(3), hidden_units=32, seed=99, tanh_constant=2.5)
  fresh_trainer = ReinforceTrainer(fresh, controller_optimizer("adam", 0.05))
  tf.train.Checkpoint(controller=fresh, trainer_baseline=fresh_trainer.baseline,
                      optimizer=fresh_trainer.optimizer).restore(path).assert_consumed()
  assert [tuple(s.arc.numpy()) for s in _sample_many(fresh, 5)] == after_save
  for restored, saved in zip(_weights(fresh), saved_weights):
    np.testing.assert_array_equal(restored, saved)
  assert float(fresh_trainer.baseline) == saved_baseline


# ------------------------------------------------------- random sampler
def test_random_sampler_statistics_and_uniformity(tmp_path):
  decision_list = decisions(5)
  sampler = RandomSampler(decision_list, seed=0)
  assert not sampler.trainable_variables
  expected = 5 * math.log(4) + 10 * math.log(2)
  samples = _sample_many(sampler, 1500)
  op_counts, skip_bits = collections.Counter(), []
  for sample in samples[:20]:
    assert float(sample.entropy) == pytest.approx(expected, abs=1e-5)
    assert float(sample.log_prob) == pytest.approx(-expected, abs=1e-5)
    arc = _arc(sample.arc)
    assert sample.arc.shape == (15,) and float(sample.num_skips) == arc.num_skips
  for sample in samples:
    arc = _arc(sample.arc)
    op_counts.update(arc.ops)
    skip_bits.extend(bit for bits in arc.skips for bit in bits)
  frequencies = np.array([op_counts[op] for op in range(4)]) / (5 * len(samples))
  np.testing.assert_allclose(frequencies, 0.25, atol=0.02)
  assert np.mean(skip_bits) == pytest.approx(0.5, abs=0.02)
  evaluated = sampler.evaluate(samples[0].arc)
  assert float(evaluated.log_prob) == pytest.approx(-expected, abs=1e-5)

  same = RandomSampler(decision_list, seed=0)
  assert [tuple(s.arc.numpy()) for s in _sample_many(same, 5)] == [tuple(s.arc.numpy()) for s in samples[:5]]
  checkpoint = tf.train.Checkpoint(sampler=same)
  path = checkpoint.save(str(tmp_path / "sampler"))
  after_save = [tuple(s.arc.numpy()) for s in _sample_many(same, 5)]
  checkpoint.restore(path).assert_consumed()
  assert [tuple(s.arc.numpy()) for s in _sample_many(same, 5)] == after_save


# ----------------------------------------------------- optimizer, schedule
def test_piecewise_lr_values_and_config():
  schedule = piecewise_lr(0.1, 1e-4, steps_per_decay=100)
  for step, expected in [(0, 0.1), (99, 0.1), (100, 0.01), (199, 0.01), (250, 1e-3), (300, 1e-4),
                         (399, 1e-4), (10_000, 1e-4)]:
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)
  assert float(piecewise_lr(steps_per_decay=10, factor=0.5, lr_end=0.02)(35)) == pytest.approx(0.02)
  config = schedule.get_config()
  assert config == {"lr_start": 0.1, "lr_end": 1e-4, "steps_per_decay": 100, "factor": 0.1}
  assert StepDecayWithFloor.from_config(config).get_config() == config
  restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
  assert isinstance(restored, StepDecayWithFloor) and restored.get_config() == config
  with pytest.raises(ValueError, match="steps_per_decay"):
    piecewise_lr(steps_per_decay=0)


def test_controller_optimizer_choices():
  schedule = piecewise_lr(steps_per_decay=5)
  sgd = controller_optimizer("sgd", schedule)
  assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.0
  assert float(sgd.learning_rate) == pytest.approx(0.1)
  adam = controller_optimizer("Adam", 0.001)
  assert isinstance(adam, keras.optimizers.Adam) and adam.beta_1 == 0.0
  with pytest.raises(ValueError, match="bogus"):
    controller_optimizer("bogus", 0.1)


# ------------------------------------------------------------ decision kinds
def test_enas_macro_samples_match_the_recorded_controller_on_a_fixed_seed():
  """The decision-driven controller reproduces, on the ENAS macro space, the samples the
  ENAS-only controller drew (recorded in tests/data before the rewrite): 10 untrained,
  10 after 5 REINFORCE updates, and their log-probabilities."""
  recorded = json.loads((pathlib.Path(__file__).parent / "data" / "enas_controller_samples.json")
                        .read_text())
  keras.utils.set_random_seed(0)
  controller = Controller(decisions(5), hidden_units=32, seed=3)
  trainer = ReinforceTrainer(controller, keras.optimizers.Adam(0.05, beta_1=0.0, epsilon=1e-3))
  untrained = [controller.sample().arc.numpy().tolist() for _ in range(10)]
  for _ in range(5):
    arcs = np.stack([controller.sample().arc.numpy() for _ in range(4)])
    rewards = (arcs[:, [0, 1, 3, 6, 10]] == 0).mean(axis=1) + 0.1 * arcs.sum(axis=1) / arcs.shape[1]
    trainer.update(arcs, rewards.astype(np.float32))
  trained = [controller.sample().arc.numpy().tolist() for _ in range(10)]
  assert untrained == recorded["untrained"]
  assert trained == recorded["trained"]
  log_prob = controller.evaluate(np.array(trained, np.int32)).log_prob.numpy()
  np.testing.assert_allclose(log_prob, recorded["trained_log_prob"], rtol=1e-4, atol=1e-5)


def _toy_decisions():
  """Categorical decisions only: two of group "width" (3 choices), one "kernel" (2)."""
  return [Decision("stage0/width", 3, group="width"), Decision("stage1/width", 3, group="width"),
          Decision("kernel", 2)]


def test_categorical_space_samples_uniformly_and_has_no_skip_weights():
  controller = Controller(_toy_decisions(), hidden_units=16, seed=1)
  assert controller.groups == ("width", "kernel")
  assert not hasattr(controller, "v_attn") and controller.num_skip_decisions == 0
  samples = np.stack([controller.sample().arc.numpy() for _ in range(300)])
  assert samples.shape == (300, 3)
  for column, choices in enumerate((3, 3, 2)):
    counts = np.bincount(samples[:, column], minlength=choices)
    assert len(counts) == choices and counts.min() > 300 / choices * 0.6, counts
  sample = controller.sample()
  assert float(sample.entropy) == pytest.approx(2 * math.log(3) + math.log(2), abs=1e-5)
  assert float(sample.num_skips) == 0.0 and float(sample.skip_penalty) == 0.0


def test_categorical_space_learns_the_rewarded_choice_and_checkpoints(tmp_path):
  """Reward 1 when stage1/width picks choice 2: REINFORCE makes it the likely choice,
  and a restored controller continues with the same weights and random stream."""
  keras.utils.set_random_seed(0)
  controller = Controller(_toy_decisions(), hidden_units=16, seed=4)
  trainer = ReinforceTrainer(controller, controller_optimizer("adam", 0.05), baseline_decay=0.9)
  for _ in range(60):
    arcs = np.stack([controller.sample().arc.numpy() for _ in range(8)])
    trainer.update(arcs, (arcs[:, 1] == 2).astype(np.float32))
  picked = np.mean([controller.sample().arc.numpy()[1] == 2 for _ in range(100)])
  assert picked > 0.8, picked  # 1/3 untrained
  checkpoint = tf.train.Checkpoint(controller=controller, optimizer=trainer.optimizer,
                                   baseline=trainer.baseline)
  path = checkpoint.save(str(tmp_path / "ckpt"))
  expected = [controller.sample().arc.numpy().tolist() for _ in range(5)]
  keras.utils.set_random_seed(1)
  other = Controller(_toy_decisions(), hidden_units=16, seed=99)
  tf.train.Checkpoint(controller=other).restore(path).expect_partial()
  assert [other.sample().arc.numpy().tolist() for _ in range(5)] == expected


def test_decision_lists_the_controller_cannot_unroll_are_rejected():
  with pytest.raises(ValueError, match="group 'width' has 3 choices elsewhere, 4 here"):
    Controller([Decision("a", 3, group="width"), Decision("b", 4, group="width")])
  with pytest.raises(ValueError, match="skip decisions must directly follow"):
    Controller([Decision("s", 2, "skip", layer=1, source=0)])
  with pytest.raises(ValueError, match="opens anchor 1; expected 0"):
    Controller([Decision("op1", 4, group="op", layer=1)])
  with pytest.raises(ValueError, match="kind must be one of"):
    Decision("x", 2, kind="op")


# ------------------------------------------------ TuNAS's independent categorical policy
def _mixed_decisions():
  """Categorical decisions of 3, 8 and 5 choices, then a skip bit (2 choices)."""
  return [Decision("a", 3), Decision("b", 8, group="width"), Decision("c", 5),
          Decision("s", 2, "skip", layer=1, source=0)]


def _numpy_policy(logits, counts, temperature=1.0, tanh_constant=None):
  """Reference log p_k over each decision's own choices."""
  out = []
  for row, count in zip(np.asarray(logits, np.float64), counts):
    z = row[:count] / temperature
    if tanh_constant:
      z = tanh_constant * np.tanh(z)
    z = z - z.max()
    out.append(z - np.log(np.exp(z).sum()))
  return out


@pytest.mark.parametrize("temperature,tanh_constant", [(None, None), (2.0, 1.5)])
def test_categorical_log_prob_entropy_and_gradient_match_numpy(temperature, tanh_constant):
  """log p(arc) = sum_k log p_k(c_k), H = sum_k H(p_k), KL skip penalty, and the gradient
  d log p / d z_k = (onehot(c_k) - p_k) * d shape / d z, against numpy."""
  decisions_ = _mixed_decisions()
  counts = [d.num_choices for d in decisions_]
  policy = CategoricalController(decisions_, temperature=temperature, tanh_constant=tanh_constant,
                                 seed=0)
  rng = np.random.default_rng(0)
  logits = rng.normal(0.0, 1.0, policy.logits.shape).astype(np.float32)
  policy.logits.assign(logits)
  arcs = np.array([[2, 7, 0, 1], [0, 3, 4, 0]], np.int32)
  with tf.GradientTape() as tape:
    stats = policy.evaluate(arcs)
    total = tf.reduce_sum(stats.log_prob)
  grad = tape.gradient(total, policy.logits).numpy()
  log_p = _numpy_policy(logits, counts, temperature or 1.0, tanh_constant)
  entropy = -sum((np.exp(lp) * lp).sum() for lp in log_p)
  p_skip = np.exp(log_p[3][1])
  kl = p_skip * np.log(p_skip / 0.4) + (1 - p_skip) * np.log((1 - p_skip) / 0.6)
  expected_grad = np.zeros_like(logits, np.float64)
  for row, arc in enumerate(arcs):
    np.testing.assert_allclose(stats.log_prob.numpy()[row],
                               sum(lp[c] for lp, c in zip(log_p, arc)), rtol=1e-5)
    for k, (lp, c) in enumerate(zip(log_p, arc)):
      z = np.asarray(logits[k, :counts[k]], np.float64) / (temperature or 1.0)
      chain = (tanh_constant * (1 - np.tanh(z) ** 2) if tanh_constant else 1.0) / (temperature or 1.0)
      expected_grad[k, :counts[k]] += (np.eye(counts[k])[c] - np.exp(lp)) * chain
  np.testing.assert_allclose(stats.entropy.numpy(), [entropy] * 2, rtol=1e-5)
  np.testing.assert_allclose(stats.skip_penalty.numpy(), [kl] * 2, rtol=1e-5)
  np.testing.assert_allclose(stats.num_skips.numpy(), [1.0, 0.0])
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
  assert not grad[0, 3:].any()  # nothing past a decision's choices


def test_categorical_policy_starts_uniform_and_samples_each_decision_independently():
  decisions_ = _mixed_decisions()
  policy = CategoricalController(decisions_, seed=1)
  sample = policy.sample()
  assert float(sample.entropy) == pytest.approx(_uniform_entropy(decisions_), abs=1e-5)
  assert float(sample.log_prob) == pytest.approx(-_uniform_entropy(decisions_), abs=1e-5)
  samples = np.stack([policy.sample().arc.numpy() for _ in range(400)])
  for column, count in enumerate(d.num_choices for d in decisions_):
    counts = np.bincount(samples[:, column], minlength=count)
    assert len(counts) == count and counts.min() > 400 / count * 0.5, (column, counts)
  first = [CategoricalController(decisions_, seed=5).sample().arc.numpy().tolist()
           for _ in range(2)]
  assert first[0] == first[1]  # the same seed, the same draw


def test_categorical_policy_learns_the_rewarded_choice_and_checkpoints(tmp_path):
  """REINFORCE (ReinforceTrainer, Adam beta_1 = 0) raises the rewarded choice; observe()
  (the warm-up) moves the baseline only; a restored policy continues the same stream."""
  policy = CategoricalController(_toy_decisions(), seed=4)
  trainer = ReinforceTrainer(policy, controller_optimizer("adam", 0.1), baseline_decay=0.95,
                             entropy_weight=0.0)
  arcs = np.stack([policy.sample().arc.numpy() for _ in range(8)])
  before = policy.logits.numpy().copy()
  report = trainer.observe(arcs, np.ones(8, np.float32))
  np.testing.assert_array_equal(policy.logits.numpy(), before)
  assert report["baseline"] == pytest.approx(0.05) and report["grad_norm"] == 0.0
  for _ in range(60):
    arcs = np.stack([policy.sample().arc.numpy() for _ in range(8)])
    trainer.update(arcs, (arcs[:, 1] == 2).astype(np.float32))
  assert policy.probabilities()[1][2] > 0.8, policy.probabilities()
  assert [len(p) for p in policy.probabilities()] == [3, 3, 2]
  checkpoint = tf.train.Checkpoint(controller=policy, optimizer=trainer.optimizer,
                                   baseline=trainer.baseline)
  path = checkpoint.save(str(tmp_path / "ckpt"))
  expected = [policy.sample().arc.numpy().tolist() for _ in range(5)]
  other = CategoricalController(_toy_decisions(), seed=99)
  tf.train.Checkpoint(controller=other).restore(path).expect_partial()
  assert [other.sample().arc.numpy().tolist() for _ in range(5)] == expected
