"""Tests for the classification heads and margin losses (heads.py).

Every margin is checked against an independent numpy (float64) reference written
from the formulas of ../shared/METHODS.md §1-§3, on hand-picked cosine matrices.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from enas_face import config as config_lib
from enas_face.models import heads

S = 64.0
COS_CLIP = 1e-7  # METHODS.md §1 numerics: c clipped to [-1 + 1e-7, 1 - 1e-7] before arccos

# 8 rows x 5 classes. The target cosines (at LABELS) are, row by row,
# 0.9, 0.3, -0.2, -0.95, 0.99999, -0.99999, -0.85, -0.9: with m = 0.5 the threshold
# cos(pi - m) = -0.878 puts -0.95, -0.99999 and -0.9 past theta + m > pi (fallback),
# -0.85 just before it.
COS = np.array([
    [0.9, 0.3, -0.2, -0.95, 0.1],
    [0.5, 0.3, 0.99999, -0.4, -0.99999],
    [0.0, 0.6, -0.2, 0.9, -0.7],
    [0.2, -0.5, 0.4, -0.95, 0.85],
    [0.99999, -0.3, 0.05, 0.7, -0.6],
    [0.1, -0.8, 0.3, 0.6, -0.99999],
    [-0.1, -0.85, 0.45, -0.9, 0.2],
    [0.35, 0.15, -0.9, -0.25, 0.65],
], dtype=np.float32)
LABELS = np.array([0, 1, 2, 3, 0, 4, 1, 2], dtype=np.int32)
ROWS = np.arange(len(LABELS))

# Cosines exactly at +1 and -1, as targets (rows 0-3) and as other classes.
EDGE_COS = np.array([
    [1.0, -1.0, 0.5, 0.2, -0.3],
    [-1.0, 1.0, 0.1, -0.2, 0.3],
    [1.0, 1.0, -1.0, -1.0, 0.0],
    [0.3, -1.0, 1.0, 0.2, -0.5],
], dtype=np.float32)
EDGE_LABELS = np.array([0, 0, 2, 2], dtype=np.int32)


# ---------------------------------------------------------------------------
# numpy references (float64, from the formulas; no heads.py helper is used).


def f64(x):
  return np.asarray(x, dtype=np.float64)


def ref_theta(c):
  """theta = arccos(c) with c clipped to [-1 + 1e-7, 1 - 1e-7]."""
  return np.arccos(np.clip(f64(c), -1.0 + COS_CLIP, 1.0 - COS_CLIP))


def ref_with_target(cos, labels, target):
  """A copy of cos with the entry of each row's label set to target."""
  out = f64(cos).copy()
  out[np.arange(len(labels)), labels] = target
  return out


def ref_arcface_target(c, m, easy_margin=False):
  """cos(theta + m); past theta + m > pi: c - m sin m (or c for c <= 0 with easy margin)."""
  c = f64(c)
  theta = ref_theta(c)
  if easy_margin:
    return np.where(c > 0, np.cos(theta + m), c)
  return np.where(theta + m < np.pi, np.cos(theta + m), c - m * np.sin(m))


def ref_cosface(cos, labels, s, m):
  cy = f64(cos)[np.arange(len(labels)), labels]
  return s * ref_with_target(cos, labels, cy - m)


def ref_arcface(cos, labels, s, m, easy_margin=False):
  cy = f64(cos)[np.arange(len(labels)), labels]
  return s * ref_with_target(cos, labels, ref_arcface_target(cy, m, easy_margin))


def ref_combined(cos, labels, s, m1, m2, m3):
  cy = f64(cos)[np.arange(len(labels)), labels]
  return s * ref_with_target(cos, labels, np.cos(m1 * ref_theta(cy) + m2) - m3)


def ref_arcnegface(cos, labels, s, m, alpha, sigma):
  cos = f64(cos)
  a = ref_arcface_target(cos[np.arange(len(labels)), labels], m)
  t = alpha * np.exp(-(cos - a[:, None]) ** 2 / sigma)
  return s * ref_with_target(t * cos + t - 1.0, labels, a)


def ref_rescaled(cos, labels, s_pos, s_neg, m1, m2, m3, clip_thresh, clip_value):
  cos = f64(cos)
  cy = cos[np.arange(len(labels)), labels]
  cy = np.where(cy > clip_thresh, clip_value, cy)
  out = s_neg * cos
  out[np.arange(len(labels)), labels] = s_pos * (np.cos(m1 * ref_theta(cy) + m2) - m3)
  return out


def ref_psi(c, m):
  """psi(theta) = (-1)^k cos(m theta) - 2k, k = floor(m theta / pi)."""
  theta = ref_theta(c)
  k = np.floor(m * theta / np.pi)
  return (-1.0) ** k * np.cos(m * theta) - 2.0 * k


def ref_lambda(t, base=1000.0, gamma=0.12, power=1.0, minimum=5.0):
  return max(minimum, base * (1.0 + gamma * t) ** (-power))


def ref_sphereface(cos, labels, m, lam, norm=None):
  cy = f64(cos)[np.arange(len(labels)), labels]
  out = ref_with_target(cos, labels, (lam * cy + ref_psi(cy, m)) / (1.0 + lam))
  return out if norm is None else f64(norm) * out


def call(margin, cos=COS, labels=LABELS, **kwargs):
  """The margin's logits as a numpy array."""
  return margin(tf.constant(cos), tf.constant(labels), **kwargs).numpy()


def assert_close(got, want, scale=S, atol=1e-5):
  """float32 tolerance: 1e-5 relative, `atol` absolute on the unscaled cosine."""
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol * scale)


# ---------------------------------------------------------------------------
# Margins against the references.


@pytest.mark.parametrize("m", [0.35, 0.1])
def test_cosface_matches_reference(m):
  """CosFace: z_y = s (c_y - m), z_j = s c_j."""
  assert_close(call(heads.CosFace(S, m)), ref_cosface(COS, LABELS, S, m))


@pytest.mark.parametrize("m", [0.5, 0.35, 1.2])
def test_arcface_matches_reference(m):
  """ArcFace: s cos(theta_y + m) before pi, s (c_y - m sin m) past it; others s c_j."""
  assert_close(call(heads.ArcFace(S, m)), ref_arcface(COS, LABELS, S, m))


def test_arcface_takes_the_fallback_past_pi():
  """Rows with theta_y + m > pi get s (c_y - m sin m), not s cos(theta_y + m)."""
  m = 0.5
  got = call(heads.ArcFace(S, m))[ROWS, LABELS]
  cy = f64(COS[ROWS, LABELS])
  theta = np.arccos(cy)
  past = theta + m > np.pi
  assert past.tolist() == [False, False, False, True, False, True, False, True]
  assert_close(got[past], S * (cy[past] - m * math.sin(m)))
  assert np.all(np.abs(got[past] - S * np.cos(theta[past] + m)) > 1.0)
  assert_close(got[~past], S * np.cos(theta[~past] + m))


def test_arcface_easy_margin():
  """Easy margin: s cos(theta_y + m) where c_y > 0, s c_y elsewhere (no fallback)."""
  m = 0.5
  got = call(heads.ArcFace(S, m, easy_margin=True))
  assert_close(got, ref_arcface(COS, LABELS, S, m, easy_margin=True))
  cy = f64(COS[ROWS, LABELS])
  nonpositive = cy <= 0
  assert_close(got[ROWS, LABELS][nonpositive], S * cy[nonpositive])
  assert_close(got[ROWS, LABELS][~nonpositive], S * np.cos(np.arccos(cy[~nonpositive]) + m))
  # -0.2 is before pi - m, so it is where easy and standard margins differ.
  row = 2
  assert abs(got[row, LABELS[row]] - call(heads.ArcFace(S, m))[row, LABELS[row]]) > 1.0


@pytest.mark.parametrize("m1,m2,m3", [(1.0, 0.3, 0.2), (1.5, 0.1, 0.05), (0.9, 0.0, 0.35)])
def test_combined_margin_matches_reference(m1, m2, m3):
  """Combined: z_y = s (cos(m1 theta_y + m2) - m3), no fallback; others s c_j."""
  assert_close(call(heads.CombinedMargin(S, m1, m2, m3)),
               ref_combined(COS, LABELS, S, m1, m2, m3))


@pytest.mark.parametrize("m,alpha,sigma", [(0.5, 1.2, 2.0), (0.3, 1.0, 0.5)])
def test_arcnegface_matches_reference(m, alpha, sigma):
  """ArcNegFace: z_y = s a_y; z_j = s (t_j c_j + t_j - 1),
  t_j = alpha exp(-(c_j - a_y)^2 / sigma)."""
  assert_close(call(heads.ArcNegFace(S, m, alpha, sigma)),
               ref_arcnegface(COS, LABELS, S, m, alpha, sigma))


def test_arcnegface_weights_have_no_gradient():
  """t_j is taken without gradient: d z_j / d c_j = s t_j (not s (t_j + (c_j + 1) dt_j/dc_j))."""
  margin = heads.ArcNegFace(S, 0.5, 1.2, 2.0)
  cos = tf.constant(COS)
  with tf.GradientTape() as tape:
    tape.watch(cos)
    logits = margin(cos, tf.constant(LABELS))
    z = tf.reduce_sum(logits * (1.0 - tf.one_hot(LABELS, 5)))  # the other classes only
  grad = tape.gradient(z, cos).numpy()
  a = ref_arcface_target(COS[ROWS, LABELS], 0.5)
  t = 1.2 * np.exp(-(f64(COS) - a[:, None]) ** 2 / 2.0)
  others = np.ones_like(t, dtype=bool)
  others[ROWS, LABELS] = False
  np.testing.assert_allclose(grad[others], S * t[others], rtol=1e-5)


@pytest.mark.parametrize("params", [
    dict(s_pos=64.0, s_neg=64.0, m1=1.0, m2=0.5, m3=0.0, clip_thresh=1.0, clip_value=1.0),
    dict(s_pos=40.0, s_neg=48.0, m1=1.15, m2=0.22, m3=0.0, clip_thresh=1.0, clip_value=1.0),
    dict(s_pos=30.0, s_neg=50.0, m1=1.1, m2=0.2, m3=0.1, clip_thresh=0.95, clip_value=0.8),
])
def test_rescaled_margin_matches_reference(params):
  """Rescaled: z_y = s_pos (cos(m1 arccos c_y + m2) - m3) after the clip, z_j = s_neg c_j."""
  got = call(heads.RescaledMargin(**params))
  assert_close(got, ref_rescaled(COS, LABELS, **params), scale=max(params["s_pos"],
                                                                    params["s_neg"]))


def test_rescaled_margin_clips_the_target_only():
  """c_y > clip_thresh becomes clip_value in the target; other logits keep s_neg c_j."""
  p = dict(s_pos=30.0, s_neg=50.0, m1=1.1, m2=0.2, m3=0.1, clip_thresh=0.95, clip_value=0.8)
  got = call(heads.RescaledMargin(**p))
  # Row 4's target is 0.99999 > 0.95: it is scored as if it were 0.8.
  expected = p["s_pos"] * (math.cos(p["m1"] * math.acos(0.8) + p["m2"]) - p["m3"])
  assert got[4, 0] == pytest.approx(expected, rel=1e-5)
  # Row 0's target 0.9 < 0.95 is untouched.
  expected = p["s_pos"] * (math.cos(p["m1"] * math.acos(0.9) + p["m2"]) - p["m3"])
  assert got[0, 0] == pytest.approx(expected, rel=1e-5)
  # Row 1 has a non-target 0.99999 above the threshold: no clip there.
  assert got[1, 2] == pytest.approx(p["s_neg"] * float(COS[1, 2]), rel=1e-6)


@pytest.mark.parametrize("step", [0, 100, 10**6])
def test_sphereface_matches_reference(step):
  """SphereFace: z_y = |x| (lambda c_y + psi(theta_y)) / (1 + lambda), z_j = |x| c_j."""
  norm = np.array([[1.0], [2.5], [0.5], [10.0], [3.0], [1.0], [7.0], [0.2]], np.float32)
  margin = heads.SphereFace(margin=4)
  got = call(margin, feature_norm=tf.constant(norm), step=step)
  lam = ref_lambda(step)
  assert_close(got, ref_sphereface(COS, LABELS, 4, lam, norm), scale=10.0)
  # Without feature_norm the logits are the unscaled ones.
  assert_close(call(margin, step=step), ref_sphereface(COS, LABELS, 4, lam), scale=1.0)


def test_sphereface_lambda_annealing():
  """lambda = max(lambda_min, base (1 + gamma t)^-power): base at t = 0, the floor at large t."""
  default = heads.SphereFace()
  assert float(default.annealed_lambda(0)) == pytest.approx(1000.0)
  assert float(default.annealed_lambda(100)) == pytest.approx(ref_lambda(100), rel=1e-6)
  assert ref_lambda(10**6) == 5.0  # the floor applies
  assert float(default.annealed_lambda(10**6)) == pytest.approx(5.0)
  custom = heads.SphereFace(margin=3, lambda_base=100.0, lambda_gamma=0.5, lambda_power=2.0,
                            lambda_min=1.0)
  for t in (0, 2, 10, 1000):
    want = ref_lambda(t, base=100.0, gamma=0.5, power=2.0, minimum=1.0)
    assert float(custom.annealed_lambda(t)) == pytest.approx(want, rel=1e-6)
  assert float(custom.annealed_lambda(2)) == pytest.approx(100.0 / 4.0)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_sphereface_psi_in_each_interval(k):
  """psi at m = 4 for theta in [k pi/4, (k+1) pi/4): (-1)^k cos(4 theta) - 2k."""
  thetas = np.array([(k + f) * math.pi / 4 for f in (0.05, 0.3, 0.5, 0.7, 0.95)])
  cos = np.cos(thetas).astype(np.float32)
  got = heads.sphereface_psi(tf.constant(cos), 4).numpy()
  theta32 = np.arccos(f64(cos))
  assert np.all(np.floor(4 * theta32 / math.pi) == k)
  want = (-1.0) ** k * np.cos(4 * theta32) - 2.0 * k
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got, ref_psi(cos, 4), rtol=1e-5, atol=1e-5)
  # In interval k, psi spans [-2k - 1, -2k + 1].
  assert np.all(got <= 1 - 2 * k + 1e-5) and np.all(got >= -1 - 2 * k - 1e-5)


def test_sphereface_psi_decreases_over_0_pi():
  """psi is monotonically decreasing on [0, pi] (the reason for its piecewise form)."""
  thetas = np.linspace(0.01, math.pi - 0.01, 200)
  got = heads.sphereface_psi(tf.constant(np.cos(thetas).astype(np.float32)), 4).numpy()
  assert np.all(np.diff(got) < 0)
  assert got[0] == pytest.approx(math.cos(4 * 0.01), abs=1e-5)
  assert got[-1] == pytest.approx(-math.cos(4 * (math.pi - 0.01)) - 6.0, abs=1e-4)


@pytest.mark.parametrize("m", range(6))
def test_chebyshev_is_cos_m_arccos(m):
  """chebyshev(c, m) == cos(m arccos c) on [-1, 1]; m = 4 is 8c^4 - 8c^2 + 1."""
  c = np.linspace(-1.0, 1.0, 41).astype(np.float32)
  got = heads.chebyshev(tf.constant(c), m).numpy()
  np.testing.assert_allclose(got, np.cos(m * np.arccos(f64(c))), atol=1e-5)
  if m == 4:
    np.testing.assert_allclose(got, 8 * f64(c) ** 4 - 8 * f64(c) ** 2 + 1, atol=1e-5)


def test_margins_at_exactly_plus_minus_one():
  """At |c| = 1 the clip at 1e-7 acts: the margins match the clipped references (looser tol)."""
  refs = [
      (heads.CosFace(S, 0.35), ref_cosface(EDGE_COS, EDGE_LABELS, S, 0.35)),
      (heads.ArcFace(S, 0.5), ref_arcface(EDGE_COS, EDGE_LABELS, S, 0.5)),
      (heads.ArcFace(S, 0.5, True), ref_arcface(EDGE_COS, EDGE_LABELS, S, 0.5, True)),
      (heads.CombinedMargin(S, 1.0, 0.3, 0.2), ref_combined(EDGE_COS, EDGE_LABELS, S, 1, .3, .2)),
      (heads.ArcNegFace(S), ref_arcnegface(EDGE_COS, EDGE_LABELS, S, 0.5, 1.2, 2.0)),
      (heads.RescaledMargin(), ref_rescaled(EDGE_COS, EDGE_LABELS, S, S, 1, 0.5, 0, 1.0, 1.0)),
  ]
  for margin, want in refs:
    assert_close(call(margin, EDGE_COS, EDGE_LABELS), want, atol=1e-4)
  assert_close(call(heads.SphereFace(4), EDGE_COS, EDGE_LABELS, step=0),
               ref_sphereface(EDGE_COS, EDGE_LABELS, 4, 1000.0), scale=1.0, atol=1e-4)
  # ArcFace: c = 1 gives about cos m; c = -1 (theta + m > pi) gives -1 - m sin m.
  arc = call(heads.ArcFace(S, 0.5), EDGE_COS, EDGE_LABELS)
  assert arc[0, 0] / S == pytest.approx(math.cos(0.5), abs=1e-3)
  assert arc[1, 0] / S == pytest.approx(-1 - 0.5 * math.sin(0.5), abs=1e-5)


# ---------------------------------------------------------------------------
# Identities between the margins.


M0_MARGINS = {
    "normalized_softmax": heads.NormalizedSoftmax(S),
    "cosface": heads.CosFace(S, 0.0),
    "arcface": heads.ArcFace(S, 0.0),
    "arcface_easy": heads.ArcFace(S, 0.0, easy_margin=True),
    "arcnegface": heads.ArcNegFace(S, 0.0, alpha=1.0, sigma=1e9),
    "combined": heads.CombinedMargin(S, 1.0, 0.0, 0.0),
    "rescaled": heads.RescaledMargin(S, S, 1.0, 0.0, 0.0),
}


@pytest.mark.parametrize("name", sorted(M0_MARGINS))
def test_zero_margin_is_normalized_softmax(name):
  """With m = 0 every margin head gives z = s cos (METHODS.md §1)."""
  assert_close(call(M0_MARGINS[name]), S * f64(COS))


def test_sphereface_m1_is_the_feature_norm_times_cos():
  """SphereFace with m = 1: psi(theta) = cos theta, so z = |x| c for any lambda."""
  norm = np.array([[2.0]] * len(LABELS), np.float32)
  for step in (0, 10**6):
    got = call(heads.SphereFace(margin=1), feature_norm=tf.constant(norm), step=step)
    assert_close(got, 2.0 * f64(COS), scale=2.0)


def test_arcnegface_alpha_1_large_sigma_is_arcface():
  """ArcNegFace(alpha = 1, sigma = 1e9) == ArcFace with the fallback (t_j -> 1), not easy margin."""
  m = 0.5
  got = call(heads.ArcNegFace(S, m, alpha=1.0, sigma=1e9))
  assert_close(got, call(heads.ArcFace(S, m)))
  assert_close(got, ref_arcface(COS, LABELS, S, m))
  assert np.abs(got - call(heads.ArcFace(S, m, easy_margin=True))).max() > 1.0


def test_rescaled_margin_is_arcface_without_fallback():
  """RescaledMargin(s, s, 1, m, 0), clip off == CombinedMargin(s, 1, m, 0) everywhere; it equals
  ArcFace where theta_y + m < pi and differs from it (fallback) where theta_y + m > pi."""
  m = 0.5
  rescaled = call(heads.RescaledMargin(S, S, 1.0, m, 0.0, clip_thresh=1.0, clip_value=1.0))
  assert_close(rescaled, call(heads.CombinedMargin(S, 1.0, m, 0.0)))
  assert_close(rescaled, ref_combined(COS, LABELS, S, 1.0, m, 0.0))
  arcface = call(heads.ArcFace(S, m))
  past = np.arccos(f64(COS[ROWS, LABELS])) + m > np.pi
  assert past.any() and (~past).any()
  assert_close(rescaled[~past], arcface[~past])
  diff = np.abs(rescaled - arcface)[ROWS, LABELS]
  assert np.all(diff[past] > 1.0)
  # Only the target logits differ.
  others = np.ones_like(rescaled, dtype=bool)
  others[ROWS, LABELS] = False
  assert_close(rescaled[others], arcface[others])


# ---------------------------------------------------------------------------
# Gradients at |c| = 1.


ALL_MARGINS = {
    "normalized_softmax": heads.NormalizedSoftmax(S),
    "cosface": heads.CosFace(S),
    "arcface": heads.ArcFace(S),
    "arcface_easy": heads.ArcFace(S, easy_margin=True),
    "combined": heads.CombinedMargin(S),
    "combined_m1": heads.CombinedMargin(S, 1.5, 0.1, 0.05),
    "arcnegface": heads.ArcNegFace(S),
    "rescaled": heads.RescaledMargin(),
    "rescaled_clip": heads.RescaledMargin(40.0, 48.0, 1.15, 0.22, 0.0, clip_thresh=0.95,
                                          clip_value=0.9),
    "sphereface": heads.SphereFace(4),
    "sphereface_m3": heads.SphereFace(3),
}


@pytest.mark.parametrize("name", sorted(ALL_MARGINS))
def test_margin_gradients_finite_at_plus_minus_one(name):
  """d logits / d cos (and d / d |x|) are finite with cosines exactly +1 and -1."""
  cos = tf.constant(EDGE_COS)
  norm = tf.constant([[1.0], [2.0], [3.0], [0.5]])
  weights = tf.constant(np.random.default_rng(0).normal(size=EDGE_COS.shape), tf.float32)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([cos, norm])
    logits = ALL_MARGINS[name](cos, tf.constant(EDGE_LABELS), feature_norm=norm, step=7)
    z = tf.reduce_sum(logits * weights)
  assert logits.shape == EDGE_COS.shape
  assert np.all(np.isfinite(logits.numpy()))
  grad = tape.gradient(z, cos)
  assert grad is not None and np.all(np.isfinite(grad.numpy()))
  grad_norm = tape.gradient(z, norm)
  if grad_norm is not None:
    assert np.all(np.isfinite(grad_norm.numpy()))


@pytest.mark.parametrize("name", config_lib.HEADS)
def test_head_gradients_finite_when_embedding_is_a_class_direction(name):
  """training_logits' cross-entropy has finite gradients wrt embeddings and kernel when an
  embedding points along (or against) a class weight, i.e. cos = +1 or -1."""
  head = heads.build_head(config_lib.HeadConfig(head=name), num_classes=5, embedding_dim=8)
  w = head.class_weights.numpy()
  rng = np.random.default_rng(1)
  e = np.stack([3.0 * w[:, 0], -2.0 * w[:, 1], w[:, 2], rng.normal(size=8)]).astype(np.float32)
  labels = tf.constant([0, 1, 2, 3])
  e = tf.constant(e)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(e)
    logits, scores = head.training_logits(e, labels, step=10)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
  assert np.all(np.isfinite(logits.numpy())) and np.all(np.isfinite(scores.numpy()))
  if name != "softmax":
    np.testing.assert_allclose(scores.numpy()[[0, 1, 2], [0, 1, 2]], [1.0, -1.0, 1.0], atol=1e-6)
  grad_e = tape.gradient(loss, e).numpy()
  grad_w = tape.gradient(loss, head.class_weights).numpy()
  assert np.all(np.isfinite(grad_e)) and np.all(np.isfinite(grad_w))
  assert np.abs(grad_w).max() > 0


# ---------------------------------------------------------------------------
# Layers and the registry.


def make_margin_head(margin, num_classes=5, dim=8, seed=0):
  head = heads.MarginHead(num_classes, margin)
  head.build((None, dim))
  rng = np.random.default_rng(seed)
  head.kernel.assign(rng.normal(size=(dim, num_classes)).astype(np.float32))
  return head


def ref_cosines(e, w):
  e, w = f64(e), f64(w)
  return (e / np.linalg.norm(e, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=0))


def test_margin_head_returns_cosines():
  """head(e) = <x/|x|, W_j/|W_j|>, within [-1, 1] (float32 rounding aside)."""
  head = make_margin_head(heads.CosFace(S))
  e = np.random.default_rng(2).normal(size=(6, 8)).astype(np.float32) * 5.0
  cos = head(tf.constant(e)).numpy()
  assert cos.shape == (6, 5) and cos.dtype == np.float32
  np.testing.assert_allclose(cos, ref_cosines(e, head.kernel.numpy()), atol=1e-6)
  assert np.all(np.abs(cos) <= 1.0 + 1e-6)
  # Scaling an embedding or a class weight does not change the cosines.
  np.testing.assert_allclose(head(tf.constant(0.01 * e)).numpy(), cos, atol=1e-6)


@pytest.mark.parametrize("margin_name", ["cosface", "arcface", "sphereface"])
def test_margin_head_training_logits(margin_name):
  """training_logits(e, y, t) = (margin(cos, y) at step t with |x| for SphereFace, cos)."""
  rng = np.random.default_rng(3)
  e = (rng.normal(size=(6, 8)) * rng.uniform(0.5, 4.0, size=(6, 1))).astype(np.float32)
  labels = np.array([0, 1, 2, 3, 4, 0], np.int32)
  margin = {"cosface": heads.CosFace(S, 0.35), "arcface": heads.ArcFace(S, 0.5),
            "sphereface": heads.SphereFace(4)}[margin_name]
  head = make_margin_head(margin)
  logits, cos = head.training_logits(tf.constant(e), tf.constant(labels), step=50)
  cos_ref = ref_cosines(e, head.kernel.numpy())
  np.testing.assert_allclose(cos.numpy(), head(tf.constant(e)).numpy(), atol=0)
  np.testing.assert_allclose(cos.numpy(), cos_ref, atol=1e-6)
  if margin_name == "cosface":
    want, scale = ref_cosface(cos_ref, labels, S, 0.35), S
  elif margin_name == "arcface":
    want, scale = ref_arcface(cos_ref, labels, S, 0.5), S
  else:
    norm = np.linalg.norm(f64(e), axis=1, keepdims=True)
    want, scale = ref_sphereface(cos_ref, labels, 4, ref_lambda(50), norm), float(norm.max())
  assert_close(logits.numpy(), want, scale=scale, atol=2e-5)


def test_softmax_head_is_affine():
  """SoftmaxHead: head(e) and both training_logits outputs are e W + b."""
  head = heads.SoftmaxHead(5)
  head.build((None, 8))
  rng = np.random.default_rng(4)
  w = rng.normal(size=(8, 5)).astype(np.float32)
  b = rng.normal(size=(5,)).astype(np.float32)
  head.dense.kernel.assign(w)
  head.dense.bias.assign(b)
  e = rng.normal(size=(3, 8)).astype(np.float32)
  want = f64(e) @ f64(w) + f64(b)
  np.testing.assert_allclose(head(tf.constant(e)).numpy(), want, rtol=1e-5, atol=1e-5)
  logits, scores = head.training_logits(tf.constant(e), tf.constant([0, 1, 2]), step=3)
  np.testing.assert_allclose(logits.numpy(), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(scores.numpy(), want, rtol=1e-5, atol=1e-5)
  assert head.class_weights is head.dense.kernel


@pytest.mark.parametrize("cls", [heads.SoftmaxHead, heads.MarginHead])
def test_heads_need_two_classes(cls):
  """A classifier with fewer than 2 classes is refused."""
  args = (1,) if cls is heads.SoftmaxHead else (1, heads.CosFace(S))
  with pytest.raises(ValueError, match="at least 2 classes"):
    cls(*args)


EXPECTED_MARGIN = {"cosface": heads.CosFace, "arcface": heads.ArcFace,
                   "sphereface": heads.SphereFace, "combined": heads.CombinedMargin,
                   "arcnegface": heads.ArcNegFace, "rescaled_margin": heads.RescaledMargin}


@pytest.mark.parametrize("name", config_lib.HEADS)
def test_build_head_every_name(name):
  """build_head gives a built layer of the right kind whose scores and logits are [B, C]."""
  cfg = config_lib.HeadConfig(head=name)
  cfg.validate()
  head = heads.build_head(cfg, num_classes=10, embedding_dim=8)
  assert head.built and head.class_weights.shape == (8, 10)
  if name == "softmax":
    assert isinstance(head, heads.SoftmaxHead)
  else:
    assert isinstance(head, heads.MarginHead)
    assert type(head.margin) is EXPECTED_MARGIN[name]
  e = tf.constant(np.random.default_rng(5).normal(size=(3, 8)), tf.float32)
  assert head(e).shape == (3, 10)
  logits, scores = head.training_logits(e, tf.constant([0, 4, 9]), step=2)
  assert logits.shape == (3, 10) and scores.shape == (3, 10)


def test_build_margin_reads_the_config():
  """--margin, --margin_scale and the head-specific flags reach the margin objects."""
  m = heads.build_margin(config_lib.HeadConfig(head="combined", margin="1.2,0.1,0.05",
                                               margin_scale="30"), 10)
  assert m == heads.CombinedMargin(30.0, 1.2, 0.1, 0.05)
  m = heads.build_margin(config_lib.HeadConfig(head="arcface", margin_scale="auto",
                                               arcface_easy_margin=True), 10)
  assert m.scale == pytest.approx(math.sqrt(2) * math.log(9)) and m.easy_margin
  assert m.margin == 0.5
  m = heads.build_margin(config_lib.HeadConfig(head="sphereface", margin="3"), 10)
  assert m.margin == 3 and isinstance(m.margin, int)
  assert heads.build_margin(config_lib.HeadConfig(head="softmax"), 10) is None


@pytest.mark.parametrize("num_classes", [3, 10, 1000])
def test_resolve_scale(num_classes):
  """'auto' is AdaCos's sqrt(2) ln(C - 1); a number string is that number."""
  assert heads.resolve_scale("auto", num_classes) == pytest.approx(
      math.sqrt(2.0) * math.log(num_classes - 1))
  assert heads.adacos_scale(num_classes) == pytest.approx(
      math.sqrt(2.0) * math.log(num_classes - 1))
  assert heads.resolve_scale("30", num_classes) == 30.0
  assert heads.resolve_scale(64.0, num_classes) == 64.0


@pytest.mark.parametrize("num_classes", [1, 2])
def test_adacos_scale_needs_three_classes(num_classes):
  """sqrt(2) ln(C - 1) is <= 0 below C = 3: refused."""
  with pytest.raises(ValueError, match="C >= 3"):
    heads.adacos_scale(num_classes)
  with pytest.raises(ValueError):
    heads.resolve_scale("auto", num_classes)


# ---------------------------------------------------------------------------
# RegularFace.


def test_regularface_loss_matches_reference():
  """L = mean_i max_{j != i} cos(W_i, W_j) over the columns of W [D, C]."""
  w = np.random.default_rng(6).normal(size=(6, 7)).astype(np.float32)
  wn = f64(w) / np.linalg.norm(f64(w), axis=0)
  gram = wn.T @ wn
  np.fill_diagonal(gram, -np.inf)
  want = gram.max(axis=1).mean()
  assert float(heads.regularface_loss(tf.constant(w))) == pytest.approx(want, rel=1e-5)


def test_regularface_loss_gradient():
  """The loss's gradient wrt W is finite and non-zero."""
  w = tf.Variable(np.random.default_rng(7).normal(size=(6, 7)).astype(np.float32))
  with tf.GradientTape() as tape:
    loss = heads.regularface_loss(w)
  grad = tape.gradient(loss, w).numpy()
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_regularface_loss_of_opposite_pairs():
  """Columns in antipodal pairs +-v_1, +-v_2 along orthogonal axes: each nearest is at cos 0."""
  w = np.zeros((4, 4), np.float32)
  w[0, 0], w[0, 1], w[1, 2], w[1, 3] = 1.0, -1.0, 2.0, -3.0
  assert float(heads.regularface_loss(tf.constant(w))) == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------
# HeadConfig validation.


@pytest.mark.parametrize("fields,flag", [
    (dict(head="cosface", margin="abc"), "--margin="),
    (dict(head="arcface", margin="0.5,"), "--margin="),
    (dict(head="combined", margin="1,0.3,x"), "--margin="),
    (dict(head="combined", margin="1,0.3"), "--margin="),
    (dict(head="combined", margin="1,0.3,0.2,0.1"), "--margin="),
    (dict(head="cosface", margin="0.3,0.2"), "--margin="),
    (dict(head="arcface", margin="2.0"), "--margin="),
    (dict(head="sphereface", margin="2.5"), "--margin="),
    (dict(head="sphereface", margin="0"), "--margin="),
    (dict(head="softmax", margin="0.5"), "--margin="),
    (dict(head="rescaled_margin", margin="0.5"), "--margin="),
    (dict(head="cosface", margin_scale="abc"), "--margin_scale="),
    (dict(head="cosface", margin_scale="0"), "--margin_scale="),
    (dict(head="arcface", margin_scale="-1"), "--margin_scale="),
    (dict(head="nonsense"), "--head="),
])
def test_head_config_validate_rejects(fields, flag):
  """Each bad head flag raises ConfigError naming the flag."""
  with pytest.raises(config_lib.ConfigError, match=re.escape(flag)):
    config_lib.HeadConfig(**fields).validate()


@pytest.mark.parametrize("fields", [
    *[dict(head=name) for name in config_lib.HEADS],
    dict(head="cosface", margin_scale="auto"),
    dict(head="combined", margin="1,0.5,0"),
    dict(head="sphereface", margin="4"),
    dict(head="arcface", margin="0", margin_scale="30"),
])
def test_head_config_validate_accepts(fields):
  """Defaults and well-formed --margin / --margin_scale pass validation."""
  config_lib.HeadConfig(**fields).validate()


def test_margin_head_config_round_trips():
  """get_config / from_config rebuild the same margin (Keras 3 layer idiom)."""
  head = heads.MarginHead(5, heads.ArcNegFace(32.0, 0.4, alpha=1.1, sigma=3.0), name="h")
  clone = heads.MarginHead.from_config(head.get_config())
  assert clone.margin == head.margin and clone.num_classes == 5
