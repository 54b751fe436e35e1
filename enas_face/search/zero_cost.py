"""Zero-cost scores: how good an untrained network may become, from one minibatch.

jacob_cov (Mellor et al. 2021, "Neural Architecture Search without Training", v1): with
J_i = d(sum_d e_d(x_i)) / dx_i, the input gradient of image i's summed embedding
(flattened; the network in inference mode, so images do not interact), C the N x N
correlation matrix of the rows J_i (np.corrcoef) and lambda its eigenvalues,

    score = - sum_i [ log(lambda_i + k) + 1 / (lambda_i + k) ],  k = 1e-5;

higher when the images' local linear maps are less correlated (the network tells the
minibatch's images apart at initialisation).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

JACOB_COV_K = 1e-5


def jacob_cov_score(jacobians: np.ndarray, k: float = JACOB_COV_K) -> float:
  """The score above, of Jacobian rows [N, P] (N >= 2 images)."""
  jacobians = np.asarray(jacobians, np.float64).reshape(len(jacobians), -1)
  if len(jacobians) < 2:
    raise ValueError(f"jacob_cov needs at least 2 images, got {len(jacobians)}")
  correlation = np.corrcoef(jacobians)
  correlation = np.nan_to_num(correlation, nan=0.0)  # a constant row correlates with nothing
  eigenvalues = np.linalg.eigvalsh(correlation)
  return float(-np.sum(np.log(eigenvalues + k) + 1.0 / (eigenvalues + k)))


def input_jacobians(model: tf.keras.Model, images: np.ndarray) -> np.ndarray:
  """[N, H * W * C]: per image, the gradient of the sum of its outputs with respect to it
  (one backward pass over the batch, the model called with training=False)."""
  x = tf.convert_to_tensor(np.asarray(images, np.float32))
  with tf.GradientTape() as tape:
    tape.watch(x)
    total = tf.reduce_sum(model(x, training=False))
  return tape.gradient(total, x).numpy().reshape(len(images), -1)


def jacob_cov(model: tf.keras.Model, images: np.ndarray) -> float:
  """jacob_cov_score(input_jacobians(model, images))."""
  return jacob_cov_score(input_jacobians(model, images))
