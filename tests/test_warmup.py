"""TuNAS's warm-up schedules (search/warmup.py): the controller's frozen epochs, the path
dropout probability p(t) = p0 (1 - t/T) and the widening it drives, seeded per epoch."""
import numpy as np
import pytest

from enas_face import spaces
from enas_face.config import ModelConfig
from enas_face.search import warmup


def test_controller_warmup_epochs_is_the_floor_of_the_fraction():
  assert warmup.controller_warmup_epochs(0.25, 20) == 5
  assert warmup.controller_warmup_epochs(0.25, 3) == 0
  assert warmup.controller_warmup_epochs(0.34, 3) == 1
  assert warmup.controller_warmup_epochs(0.3, 10) == 3  # 0.3 * 10 = 2.9999999999999996
  assert warmup.controller_warmup_epochs(0.0, 100) == 0


def test_keep_probability_falls_linearly_from_p0_to_zero():
  assert warmup.path_keep_probability(0, 100, 1.0) == 1.0
  assert warmup.path_keep_probability(25, 100, 0.8) == pytest.approx(0.6)
  assert warmup.path_keep_probability(99, 100, 1.0) == pytest.approx(0.01)
  assert warmup.path_keep_probability(100, 100, 1.0) == 0.0
  assert warmup.path_keep_probability(5, 0, 1.0) == 0.0


def test_widen_replaces_each_decision_with_probability_p_and_is_seeded():
  config = ModelConfig(image_size=32, search_space="mobilefacenet")
  space = spaces.get("mobilefacenet")
  widest = space.widest_choices(config)
  assert space.decode(widest, config) == space.default(config)  # the supernet itself
  steps, samples = 400, np.zeros((400, len(widest)), np.int32)  # the narrowest, shallowest
  # Epoch 1 of 2 warm-up epochs of 400 steps: t = 400..799, p = 0.5 .. 0.00125.
  widened, p = warmup.widen(samples, widest, epoch=1, steps_per_epoch=steps, warmup_steps=800,
                            p0=1.0, seed=7)
  np.testing.assert_allclose(p, 1.0 - (400 + np.arange(steps)) / 800)
  replaced = widened != samples
  assert set(np.unique(widened[replaced] - np.broadcast_to(widest, samples.shape)[replaced])) == {0}
  assert abs(replaced.mean() - p.mean()) < 0.03  # one Bernoulli(p(t)) per decision
  assert replaced[:100].mean() > replaced[-100:].mean() + 0.3
  again, _ = warmup.widen(samples, widest, 1, steps, 800, 1.0, seed=7)
  np.testing.assert_array_equal(again, widened)  # a resumed epoch widens alike
  other, _ = warmup.widen(samples, widest, 1, steps, 800, 1.0, seed=8)
  assert (other != widened).any()
  after, p_after = warmup.widen(samples, widest, 2, steps, 800, 1.0, seed=7)
  np.testing.assert_array_equal(after, samples)
  assert not p_after.any()


def test_spaces_whose_choices_do_not_nest_have_no_widest_choice():
  assert spaces.get("enas_macro").widest_choices(ModelConfig()) is None
