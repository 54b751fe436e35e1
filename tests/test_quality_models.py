"""Quality networks (QAN branch, QAN++ CNN) and the TensorFlow pooling: equal to sets.py's numpy reference."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from enas_face.evaluation import sets
from enas_face.models.quality import (QanBranch, QualityCNN, pool_sets, pooling_weights,
                                      set_contrastive_loss)

FRAME_COUNTS = (1, 2, 3, 8)


def score_rows(method: str, num_frames: int, seed: int = 0) -> np.ndarray:
  """float32 [R, F]: random rows plus the edge cases of `method` (equal scores, ties, zeros, negatives)."""
  rng = np.random.default_rng(seed + 10 * num_frames)
  raw = rng.normal(size=(12, num_frames))
  rows = [1.0 / (1.0 + np.exp(-3.0 * raw)) if method == "qan" else raw]
  rows.append(np.full((1, num_frames), 0.3))                       # all equal
  tie = rng.uniform(0.0, 0.5, size=(1, num_frames))
  tie[0, -2:] = 0.9                                                 # tie for best (first of the two wins)
  rows.append(tie)
  if method == "qan":
    rows.append(np.zeros((1, num_frames)))                          # sigmoid underflow: all 0
    rows.append(np.full((1, num_frames), 1e-30))                    # near 0
    rows.append(rng.uniform(0.0, 1e-6, size=(1, num_frames)))
  else:
    rows.append(-np.abs(raw[:2]) - 0.1)                             # negative raw scores
    rows.append(np.zeros((1, num_frames)))
  if method == "qanpp" and num_frames == 2:
    rows.append(np.array([[-0.5, 2.0], [3.0, -1.0], [-1.0, 1.0]]))  # mixed signs: positive / zero sum
  return np.concatenate(rows).astype(np.float32)


def reference_weights(rows: np.ndarray, method: str) -> np.ndarray:
  return np.stack([sets.frame_weights(row.astype(np.float64), method) for row in rows])


# ------------------------------------------------------------ pooling_weights
@pytest.mark.parametrize("num_frames", FRAME_COUNTS)
@pytest.mark.parametrize("method", sets.METHODS)
def test_pooling_weights_equal_frame_weights_row_by_row(method, num_frames):
  rows = score_rows(method, num_frames)
  got = pooling_weights(tf.constant(rows), method).numpy()
  np.testing.assert_allclose(got, reference_weights(rows, method), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("method", sets.METHODS)
def test_pooling_weights_with_a_dynamic_frame_count(method):
  weights = tf.function(lambda s: pooling_weights(s, method),
                        input_signature=[tf.TensorSpec([None], tf.float32)])
  for num_frames in FRAME_COUNTS:
    rows = score_rows(method, num_frames, seed=1)
    for row, expected in zip(rows, reference_weights(rows, method)):
      np.testing.assert_allclose(weights(tf.constant(row)).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_pooling_weights_keep_leading_axes():
  rows = score_rows("qanpp", 8).reshape(-1)[:6 * 8].reshape(2, 3, 8)
  got = pooling_weights(rows, "qanpp").numpy()
  assert got.shape == (2, 3, 8)
  np.testing.assert_allclose(got.reshape(6, 8), reference_weights(rows.reshape(6, 8), "qanpp"),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ("qan", "qanpp"))
def test_pooling_weights_gradients_stay_finite_at_the_guards(method):
  for num_frames in FRAME_COUNTS:
    rows = tf.Variable(score_rows(method, num_frames))  # includes all-equal and all-zero rows
    probe = tf.constant(np.random.default_rng(num_frames).normal(size=rows.shape), tf.float32)
    with tf.GradientTape() as tape:
      objective = tf.reduce_sum(pooling_weights(rows, method) * probe)
    gradient = tape.gradient(objective, rows).numpy()
    assert np.all(np.isfinite(gradient)), (method, num_frames)
    assert np.abs(gradient).max() > 0  # (qan rows near 0 give gradients ~1 / sum mu, about 1e29)


@pytest.mark.parametrize("num_frames", (3, 8))
def test_qanpp_gives_the_worst_frame_weight_exactly_zero(num_frames):
  rows = np.random.default_rng(num_frames).normal(size=(20, num_frames)).astype(np.float32)
  weights = pooling_weights(rows, "qanpp").numpy()
  worst = weights[np.arange(20), rows.argmin(axis=1)]
  assert np.all(worst == 0.0), worst
  assert np.all(weights[np.arange(20), rows.argmax(axis=1)] > 0)


def test_unknown_method_is_refused_by_name():
  with pytest.raises(ValueError, match="median"):
    pooling_weights([[0.1, 0.2]], "median")
  with pytest.raises(ValueError, match="median"):
    pool_sets(np.ones((1, 2, 3)), [[0.1, 0.2]], "median")
  with pytest.raises(ValueError, match="qan"):
    pool_sets(np.ones((1, 2, 3)), None, "qan")


# ------------------------------------------------------------------ pool_sets
@pytest.mark.parametrize("method", sets.METHODS)
def test_pool_sets_equals_aggregate(method):
  rng = np.random.default_rng(7)
  for num_frames in FRAME_COUNTS:
    scores = score_rows(method, num_frames)
    embeddings = (rng.normal(size=(scores.shape[0], num_frames, 5))
                  * rng.uniform(0.5, 5.0, size=(scores.shape[0], num_frames, 1))).astype(np.float32)
    got = pool_sets(embeddings, scores, method).numpy()
    expected = np.stack([sets.aggregate(e.astype(np.float64), s.astype(np.float64), method)
                         for e, s in zip(embeddings, scores)])
    assert got.shape == (scores.shape[0], 5)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_pool_sets_mean_without_scores_over_leading_axes():
  embeddings = np.random.default_rng(3).normal(size=(2, 3, 4, 6)).astype(np.float32)
  got = pool_sets(embeddings, None, "mean").numpy()
  assert got.shape == (2, 3, 6)
  expected = np.stack([sets.aggregate(e, None, "mean") for e in embeddings.reshape(6, 4, 6)])
  np.testing.assert_allclose(got.reshape(6, 6), expected, atol=1e-5)


# -------------------------------------------------------- set_contrastive_loss
def numpy_contrastive_loss(embeddings, labels, scale):
  logits = scale * embeddings @ embeddings.T
  losses = []
  for a in range(len(labels)):
    positives = [b for b in range(len(labels)) if b != a and labels[b] == labels[a]]
    if positives:
      others = [b for b in range(len(labels)) if b != a]
      losses.append(-np.log(np.exp(logits[a, positives]).sum() / np.exp(logits[a, others]).sum()))
  return float(np.mean(losses)) if losses else 0.0


def test_set_contrastive_loss_matches_the_formula_by_hand():
  rng = np.random.default_rng(5)
  embeddings = rng.normal(size=(6, 4))
  embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
  labels = np.array([0, 0, 0, 1, 1, 2])  # set 5 has no positive: not an anchor
  for scale in (1.0, 16.0):
    got = float(set_contrastive_loss(embeddings.astype(np.float32), labels, scale))
    np.testing.assert_allclose(got, numpy_contrastive_loss(embeddings, labels, scale), rtol=1e-5)


def test_set_contrastive_loss_prefers_coinciding_same_label_sets():
  labels = np.array([0, 0, 1, 1])
  coincide = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]], np.float32)
  orthogonal = np.eye(4, dtype=np.float32)
  low, high = float(set_contrastive_loss(coincide, labels)), float(set_contrastive_loss(orthogonal, labels))
  assert low < high
  np.testing.assert_allclose(high, np.log(3.0), rtol=1e-6)  # all logits equal: -log(1/3)


def test_set_contrastive_loss_is_zero_without_positives_with_finite_gradients():
  embeddings = tf.Variable(np.eye(3, dtype=np.float32))
  with tf.GradientTape() as tape:
    loss = set_contrastive_loss(embeddings, np.array([0, 1, 2]))
  gradient = tape.gradient(loss, embeddings)
  assert float(loss) == 0.0
  assert np.all(np.isfinite(gradient.numpy())) and np.all(gradient.numpy() == 0.0)


# ------------------------------------------------------------ gradients flow
def gradients_through_pooling(network, inputs, method, training):
  rng = np.random.default_rng(11)
  embeddings = tf.constant(rng.normal(size=(4, 4, 8)), tf.float32)  # 4 sets x 4 frames, fixed
  labels = np.array([0, 0, 1, 1])
  with tf.GradientTape() as tape:
    scores = network(inputs, training=training)
    loss = set_contrastive_loss(pool_sets(embeddings, scores, method), labels)
  gradients = tape.gradient(loss, network.trainable_weights)
  return {v.path: g.numpy() for v, g in zip(network.trainable_weights, gradients)}


def test_gradients_reach_the_quality_cnn():
  network = QualityCNN()
  images = np.random.default_rng(0).uniform(0, 255, size=(4, 4, 32, 32, 3)).astype(np.float32)
  gradients = gradients_through_pooling(network, images, "qanpp", training=True)
  assert all(np.all(np.isfinite(g)) for g in gradients.values())
  # Min-max normalisation makes QAN++ blind to a shift of q: the output bias gets no gradient.
  for name in ("stem_conv", "stage4/conv2", "dense_score/kernel"):
    norm = sum(np.linalg.norm(g) for path, g in gradients.items() if name in path)
    assert norm > 0, name


def test_gradients_reach_the_qan_branch():
  network = QanBranch(hidden=16)
  features = np.random.default_rng(1).normal(size=(4, 4, 12)).astype(np.float32)
  gradients = gradients_through_pooling(network, features, "qan", training=True)
  assert len(gradients) == 4
  for path, gradient in gradients.items():
    assert np.all(np.isfinite(gradient)) and np.linalg.norm(gradient) > 0, path


# ------------------------------------------------------------------- shapes
def test_qan_branch_scores_are_sigmoids_of_the_leading_shape():
  network = QanBranch()
  for shape in ((2, 3, 10), (5, 10)):
    scores = network(np.random.default_rng(2).normal(size=shape).astype(np.float32)).numpy()
    assert scores.shape == shape[:-1]
    assert np.all((scores > 0) & (scores < 1))


def test_quality_cnn_shapes_stage_widths_and_size():
  network = QualityCNN()
  rng = np.random.default_rng(4)
  framed = network(rng.uniform(0, 255, size=(2, 3, 32, 32, 3)).astype(np.float32))
  flat = network(rng.uniform(0, 255, size=(5, 32, 32, 3)).astype(np.float32))
  assert tuple(framed.shape) == (2, 3) and tuple(flat.shape) == (5,)
  widths = {}
  for weight in network.weights:
    if weight.path.endswith("kernel") and len(weight.shape) == 4:
      layer = weight.path.split("/", 1)[1].rsplit("/", 1)[0]  # drop the model's (uniquified) name
      widths[layer] = int(weight.shape[-1])
  assert widths["stem_conv"] == 8
  for stage, width in zip(("stage1", "stage2", "stage3", "stage4"), (8, 16, 32, 48)):
    assert widths[f"{stage}/conv1"] == widths[f"{stage}/conv2"] == width
  assert "stage1/proj" not in widths and widths["stage4/proj"] == 48
  count = network.count_params()
  assert count == 56_681 and count < 200_000, count  # independent of S (global average pooling)
  large = QualityCNN(name="quality_cnn_112")
  assert tuple(large(np.zeros((1, 112, 112, 3), np.float32)).shape) == (1,)
  assert large.count_params() == count


@pytest.mark.parametrize("net", ["qanpp", "qan"])
def test_checkpoint_round_trip_restores_every_weight(tmp_path, net):
  """Save -> restore into a fresh network gives the same scores: every layer (the residual
  stages too) is tracked by tf.train.Checkpoint."""
  if net == "qanpp":
    build, inputs = QualityCNN, tf.random.uniform((3, 32, 32, 3), 0, 255, seed=2)
  else:
    build, inputs = QanBranch, tf.random.normal((3, 24), seed=2)
  first = build()
  first(inputs)
  path = tf.train.Checkpoint(net=first).save(str(tmp_path / "ckpt"))
  second = build()
  second(inputs)
  assert not np.allclose(first(inputs), second(inputs))
  tf.train.Checkpoint(net=second).restore(path).assert_existing_objects_matched()
  np.testing.assert_allclose(first(inputs), second(inputs), rtol=1e-6)
  assert len(tf.train.list_variables(path)) > (30 if net == "qanpp" else 4)
