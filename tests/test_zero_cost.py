"""Zero-cost scores (search/zero_cost.py): jacob_cov against its formula, and the Jacobians
of a tiny network against finite differences."""
import numpy as np
import pytest
import tensorflow as tf

from enas_face.search import zero_cost


def test_jacob_cov_score_is_its_formula():
  rng = np.random.default_rng(0)
  rows = rng.normal(size=(6, 20))
  eigenvalues = np.linalg.eigvalsh(np.corrcoef(rows))
  k = zero_cost.JACOB_COV_K
  expected = -np.sum(np.log(eigenvalues + k) + 1 / (eigenvalues + k))
  assert zero_cost.jacob_cov_score(rows) == pytest.approx(expected)
  # Identical rows (the network does not tell the images apart) score lower than distinct ones.
  assert zero_cost.jacob_cov_score(np.repeat(rows[:1], 6, axis=0)) < \
      zero_cost.jacob_cov_score(rows)
  with pytest.raises(ValueError, match="at least 2 images"):
    zero_cost.jacob_cov_score(rows[:1])


def test_input_jacobians_match_finite_differences():
  tf.keras.utils.set_random_seed(0)
  model = tf.keras.Sequential([tf.keras.Input((4, 4, 1)), tf.keras.layers.Flatten(),
                               tf.keras.layers.Dense(3, activation="tanh")])
  images = np.random.default_rng(1).normal(size=(3, 4, 4, 1)).astype(np.float32)
  jacobians = zero_cost.input_jacobians(model, images)
  assert jacobians.shape == (3, 16)
  eps = 1e-3
  for i in range(3):
    for p in (0, 7, 15):
      plus, minus = images.copy(), images.copy()
      plus[i].flat[p] += eps
      minus[i].flat[p] -= eps
      numeric = (float(tf.reduce_sum(model(plus[i:i + 1]))) -
                 float(tf.reduce_sum(model(minus[i:i + 1])))) / (2 * eps)
      assert jacobians[i, p] == pytest.approx(numeric, abs=2e-3)
