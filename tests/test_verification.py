"""Tests for the numpy/scikit-learn verification and identification metrics."""
from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest

from enas_face.evaluation import verification
from enas_face.evaluation.verification import (accuracy_at_threshold, best_threshold, cosine_scores, identification_top1,
                                    kfold_verification, l2_normalize, pca_embeddings, roc_auc, tar_at_far,
                                    verification_report)


# ------------------------------------------------------------------- scores
def test_l2_normalize():
  out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]]))
  np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]])
  np.testing.assert_allclose(l2_normalize(np.array([[3, 0], [4, 1]]), axis=0), [[0.6, 0.0], [0.8, 1.0]])
  assert l2_normalize(np.array([1, 1])).dtype == np.float64
  assert l2_normalize(np.ones((2, 3), np.float32)).dtype == np.float32


def test_cosine_scores_of_known_vectors():
  embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-2.0, 0.0], [5.0, 5.0]])
  pairs = np.array([[0, 1], [0, 2], [0, 3], [2, 2], [2, 4], [3, 2]])
  expected = [0.0, 1 / math.sqrt(2), -1.0, 1.0, 1.0, -1 / math.sqrt(2)]
  np.testing.assert_allclose(cosine_scores(embeddings, pairs), expected, atol=1e-12)
  assert cosine_scores(embeddings, np.zeros((0, 2), int)).shape == (0,)


@pytest.mark.parametrize("pairs, message", [
    (np.array([0, 1]), r"pairs must be an integer array \[P, 2\], got shape \(2,\)"),
    (np.array([[0, 1, 2]]), r"got shape \(1, 3\)"),
    (np.array([[0.0, 1.0]]), "integer indices, got dtype float64"),
    (np.array([[0, 2]]), "pairs must index embeddings in 0..1, got indices in 0..2"),
    (np.array([[-1, 0]]), "got indices in -1..0"),
])
def test_cosine_scores_validation(pairs, message):
  with pytest.raises(ValueError, match=message):
    cosine_scores(np.eye(2), pairs)


def test_cosine_scores_rejects_1d_embeddings():
  with pytest.raises(ValueError, match=r"embeddings must be a 2-D array \[N, D\], got shape \(3,\)"):
    cosine_scores(np.ones(3), np.array([[0, 1]]))


# ---------------------------------------------------------------- accuracy
SCORES = [0.1, 0.4, 0.6, 0.9]
SAME = [False, False, True, True]


def test_accuracy_at_threshold():
  assert accuracy_at_threshold(SCORES, SAME, 0.5) == 1.0
  assert accuracy_at_threshold(SCORES, SAME, 0.7) == 0.75   # 0.6 rejected
  assert accuracy_at_threshold(SCORES, SAME, 0.6) == 0.75   # strict: s > t, so 0.6 is rejected
  assert accuracy_at_threshold(SCORES, SAME, 0.0) == 0.5    # accept everything
  assert accuracy_at_threshold(SCORES, [0, 0, 1, 1], 0.5) == 1.0  # 0/1 labels


def test_best_threshold_perfectly_separable():
  scores, same = [0.1, 0.9, 0.2, 0.8], [False, True, False, True]
  threshold = best_threshold(scores, same)
  assert threshold == pytest.approx(0.5)   # midpoint of the gap between 0.2 and 0.8
  assert accuracy_at_threshold(scores, same, threshold) == 1.0


def test_best_threshold_gives_exactly_three_quarters():
  # Candidates 0.05, 0.15, 0.25, 0.35, 0.45 give accuracies 1/2, 3/4, 1/2, 3/4, 1/2;
  # ties go to the smallest candidate.
  scores, same = [0.1, 0.2, 0.3, 0.4], [False, True, False, True]
  threshold = best_threshold(scores, same)
  assert threshold == pytest.approx(0.15)
  assert accuracy_at_threshold(scores, same, threshold) == 0.75


def test_best_threshold_ends():
  # All same: accept everything, at the lower end u0 - (u1 - u0)/2.
  assert best_threshold([0.2, 0.4], [True, True]) == pytest.approx(0.1)
  # All different: reject everything, at the upper end u-1 + (u-1 - u-2)/2.
  assert best_threshold([0.2, 0.4], [False, False]) == pytest.approx(0.5)
  # A single unique score: candidates u0 -/+ 0.5.
  assert best_threshold([0.3, 0.3, 0.3], [True, True, False]) == pytest.approx(-0.2)
  assert best_threshold([0.3, 0.3, 0.3], [False, True, False]) == pytest.approx(0.8)


def test_best_threshold_matches_brute_force():
  rng = np.random.default_rng(0)
  for _ in range(20):
    scores = np.round(rng.normal(size=40), 1)   # rounding creates ties
    same = rng.random(40) < 0.5
    threshold = best_threshold(scores, same)
    unique = np.unique(scores)
    grid = np.concatenate([[unique[0] - 1], (unique[:-1] + unique[1:]) / 2, [unique[-1] + 1]])
    best = max(accuracy_at_threshold(scores, same, t) for t in grid)
    assert accuracy_at_threshold(scores, same, threshold) == best


@pytest.mark.parametrize("scores, same, message", [
    ([0.1, 0.2], [True], "is_same must have 2 entries"),
    ([], [], "scores must not be empty"),
    ([[0.1, 0.2]], [True], "scores must be a 1-D array"),
    ([0.1, float("nan")], [True, False], "scores must be finite, got 1 NaN/inf"),
    ([0.1, 0.2], [1, 2], "is_same must hold booleans or 0/1"),
])
def test_score_validation(scores, same, message):
  with pytest.raises(ValueError, match=message):
    accuracy_at_threshold(scores, same, 0.5)


# ------------------------------------------------------------------- k-fold
def test_kfold_with_known_fold_answers():
  # 10 contiguous folds of 2 pairs. Folds 0..8: (0.8 same, 0.2 different). Fold 9: (0.8 same, 0.3 same).
  # Holding out fold k < 9: training scores 0.2 (F x8), 0.3 (T), 0.8 (T x9) -> best t = 0.25 (18/18);
  #   fold k is then classified perfectly.
  # Holding out fold 9: training is 0.2 (F x9), 0.8 (T x9) -> t = 0.5, so 0.3 (same) is rejected: 1/2.
  scores = [0.8, 0.2] * 9 + [0.8, 0.3]
  same = [True, False] * 9 + [True, True]
  result = kfold_verification(scores, same, num_folds=10)
  np.testing.assert_allclose(result["fold_accuracies"], [1.0] * 9 + [0.5])
  np.testing.assert_allclose(result["thresholds"], [0.25] * 9 + [0.5])
  assert result["accuracy"] == pytest.approx(0.95)
  # deviations 0.05 (x9) and -0.45: variance (9 * 0.0025 + 0.2025) / 10 = 0.0225
  assert result["std"] == pytest.approx(0.15)
  assert set(result) == {"accuracy", "std", "fold_accuracies", "thresholds"}


def test_kfold_folds_are_contiguous_not_shuffled():
  # 4 folds of 3. Only fold 0 contains the odd pair (0.9 different); it fails only when held out.
  scores = [0.9, 0.8, 0.1] + [0.8, 0.1, 0.7] * 3
  same = [False, True, False] + [True, False, True] * 3
  result = kfold_verification(scores, same, num_folds=4)
  # Fold 0 held out: train separable at 0.4 -> 0.9 different accepted: 2/3.
  np.testing.assert_allclose(result["fold_accuracies"], [2 / 3, 1.0, 1.0, 1.0])


def test_kfold_uneven_folds():
  result = kfold_verification([0.9, 0.1, 0.9, 0.1, 0.9, 0.1, 0.9], [1, 0, 1, 0, 1, 0, 1], num_folds=3)
  assert result["accuracy"] == 1.0 and result["std"] == 0.0 and len(result["fold_accuracies"]) == 3


@pytest.mark.parametrize("num_folds, message", [
    (5, r"num_folds must be in 2..4 \(the number of pairs\), got 5"),
    (1, "got 1"),
    (2.0, "num_folds must be an integer, got 2.0"),
])
def test_kfold_validation(num_folds, message):
  with pytest.raises(ValueError, match=message):
    kfold_verification([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1], num_folds=num_folds)


# ------------------------------------------------------------------ TAR/FAR
# 10 different pairs at 0.0..0.9 (FAR resolution 0.1) and 4 same pairs.
NEGATIVES = list(np.arange(10) / 10)
POSITIVES = [0.95, 0.85, 0.75, 0.5]
ROC_SCORES = NEGATIVES + POSITIVES
ROC_SAME = [False] * 10 + [True] * 4


@pytest.mark.parametrize("far, expected", [
    (0.0, 0.25),    # t = 0.95: no different pair accepted, one same pair
    (0.05, 0.25),   # nothing between FAR 0 and 0.1 is achievable
    (0.1, 0.5),     # t = 0.85 accepts different 0.9 only; same 0.95, 0.85
    (0.15, 0.5),
    (0.2, 0.75),    # t = 0.75 accepts different 0.8, 0.9; same 0.95, 0.85, 0.75
    (0.5, 1.0),     # t = 0.5 accepts different 0.5..0.9
    (1.0, 1.0),
])
def test_tar_at_far_hand_made(far, expected):
  assert tar_at_far(ROC_SCORES, ROC_SAME, far=far) == pytest.approx(expected)


def test_tar_at_far_unresolvable_far_returns_tar_at_zero_far():
  # far = 1e-3 < 1/10: the strictest achievable FAR (0) is used.
  assert tar_at_far(ROC_SCORES, ROC_SAME) == pytest.approx(0.25)


def test_tar_at_far_validation():
  with pytest.raises(ValueError, match="both same .* and different"):
    tar_at_far([0.1, 0.2], [True, True])
  with pytest.raises(ValueError, match="far must be in"):
    tar_at_far(ROC_SCORES, ROC_SAME, far=1.5)


def test_roc_auc():
  assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
  assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
  assert roc_auc([0.5, 0.5, 0.5, 0.5], [0, 0, 1, 1]) == 0.5
  # same 0.3, 0.2 vs different 0.1, 0.4: 2 of the 4 (same, different) pairs ordered correctly
  assert roc_auc([0.1, 0.3, 0.2, 0.4], [0, 1, 1, 0]) == pytest.approx(2 / 4)
  # same 0.3, 0.4, 0.5 vs different 0.1, 0.35: only (0.3, 0.35) is misordered
  assert roc_auc([0.1, 0.3, 0.35, 0.4, 0.5], [0, 1, 0, 1, 1]) == pytest.approx(5 / 6)
  with pytest.raises(ValueError, match="got 0 same and 3 different"):
    roc_auc([0.1, 0.2, 0.3], [0, 0, 0])


# ----------------------------------------------------------- identification
def test_identification_top1_hand_made():
  gallery = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [-1.0, 0.0]])
  gallery_labels = np.array([0, 0, 1, 1, 2])
  probes = np.array([[0.9, 0.1], [0.1, 5.0], [-3.0, 0.5], [1.0, 0.2]])
  probe_labels = np.array([0, 1, 2, 1])   # the last probe is nearest to identity 0: a miss
  assert identification_top1(gallery, gallery_labels, probes, probe_labels) == 0.75
  assert identification_top1(gallery, gallery_labels, probes[:3], probe_labels[:3]) == 1.0


def test_identification_centroids_average_unit_vectors():
  # Identity "a": unit vectors (1,0) and (0,1) -> centroid along (1,1). Identity "b": (1, 0.2).
  # Probe (0.4, 1) has cos 0.92 with (1,1)/sqrt2 and cos 0.55 with b, so it is matched to "a"; the
  # unnormalised mean (50, 0.5) of "a" would give cos 0.38 and the probe would go to "b".
  gallery = np.array([[100.0, 0.0], [0.0, 1.0], [1.0, 0.2]])
  labels = np.array(["a", "a", "b"])
  assert identification_top1(gallery, labels, np.array([[0.4, 1.0]]), np.array(["a"])) == 1.0


def test_identification_unknown_probe_identity_is_a_miss():
  gallery = np.eye(2)
  assert identification_top1(gallery, [0, 1], np.eye(2), [0, 7]) == 0.5


@pytest.mark.parametrize("kwargs, message", [
    (dict(gallery_labels=np.array([0, 1, 2])), r"gallery_labels must have shape \(2,\)"),
    (dict(probe_labels=np.array([0])), r"probe_labels must have shape \(2,\)"),
    (dict(probe_embeddings=np.ones((2, 3))), "probe_embeddings must have the gallery's dimension 2, got 3"),
    (dict(gallery_embeddings=np.ones(2)), "gallery_embeddings must be a 2-D array"),
    (dict(probe_embeddings=np.zeros((0, 2)), probe_labels=np.zeros(0)), "probe_embeddings must not be empty"),
])
def test_identification_validation(kwargs, message):
  arguments = dict(gallery_embeddings=np.eye(2), gallery_labels=np.array([0, 1]),
                   probe_embeddings=np.eye(2), probe_labels=np.array([0, 1]))
  arguments.update(kwargs)
  with pytest.raises(ValueError, match=message):
    identification_top1(**arguments)


# ------------------------------------------------------------------- report
def _separable_pairs(repeats=5):
  embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
  pairs = np.array([[0, 1], [0, 2], [2, 3], [1, 3]] * repeats)
  is_same = np.array([True, False, True, False] * repeats)
  return embeddings, pairs, is_same


def test_verification_report_on_separable_pairs():
  embeddings, pairs, is_same = _separable_pairs()
  report = verification_report(embeddings, pairs, is_same)
  assert set(report) == {"verification_accuracy", "verification_std", "tar_at_far_1e-3", "roc_auc", "num_pairs"}
  assert report["verification_accuracy"] == 1.0
  assert report["verification_std"] == 0.0
  assert report["tar_at_far_1e-3"] == 1.0
  assert report["roc_auc"] == 1.0
  assert report["num_pairs"] == 20


@pytest.mark.parametrize("far, key", [(1e-2, "tar_at_far_1e-2"), (0.05, "tar_at_far_5e-2"),
                                      (1e-4, "tar_at_far_1e-4"), (0.1, "tar_at_far_1e-1")])
def test_verification_report_key_follows_far(far, key):
  embeddings, pairs, is_same = _separable_pairs()
  assert key in verification_report(embeddings, pairs, is_same, num_folds=4, far=far)


def test_verification_report_validation():
  embeddings, pairs, is_same = _separable_pairs(repeats=1)
  with pytest.raises(ValueError, match="num_folds must be in 2..4"):
    verification_report(embeddings, pairs, is_same, num_folds=10)
  with pytest.raises(ValueError, match="is_same must have 4 entries"):
    verification_report(embeddings, pairs, is_same[:3], num_folds=2)


# ---------------------------------------------------------------------- PCA
def test_pca_embeddings_shapes_and_clipping():
  rng = np.random.default_rng(0)
  train = rng.integers(0, 256, size=(10, 4, 4, 3), dtype=np.uint8)
  images = rng.integers(0, 256, size=(6, 4, 4, 3), dtype=np.uint8)
  out = pca_embeddings(train, images)            # 64 components clipped to 10 training images
  assert out.shape == (6, 10) and out.dtype == np.float32
  assert pca_embeddings(train, images, num_components=3).shape == (6, 3)
  np.testing.assert_array_equal(pca_embeddings(train, images, 5, seed=1), pca_embeddings(train, images, 5, seed=1))
  wide = rng.integers(0, 256, size=(100, 2, 2, 3), dtype=np.uint8)
  assert pca_embeddings(wide, images[:, :2, :2], num_components=64).shape == (6, 12)  # 12 pixels


def test_pca_embeddings_recovers_the_dominant_direction():
  # Training images vary along one pixel pattern; the first component projects onto it.
  rng = np.random.default_rng(0)
  pattern = np.zeros((2, 2, 3))
  pattern[0, 0] = 1.0
  coefficients = rng.uniform(0, 200, size=20)
  train = (20 + coefficients[:, None, None, None] * pattern).astype(np.uint8)
  out = pca_embeddings(train, train, num_components=1)
  correlation = np.corrcoef(out[:, 0], train[:, 0, 0, 0].astype(float))[0, 1]
  assert abs(correlation) > 0.999
  np.testing.assert_allclose(out.mean(), 0.0, atol=1e-4)   # centred on the training mean


def test_pca_embeddings_validation():
  train = np.zeros((4, 2, 2, 3), np.uint8)
  with pytest.raises(ValueError, match=r"per-image shape of train_images \(2, 2, 3\), got \(3, 3, 3\)"):
    pca_embeddings(train, np.zeros((1, 3, 3, 3), np.uint8))
  with pytest.raises(ValueError, match="num_components must be a positive integer, got 0"):
    pca_embeddings(train, train, num_components=0)
  with pytest.raises(ValueError, match="N >= 2"):
    pca_embeddings(train[:1], train)


def test_module_has_no_framework_imports():
  source = pathlib.Path(verification.__file__).read_text()
  for name in ("tensorflow", "keras", "absl"):
    assert f"import {name}" not in source and f"from {name}" not in source


# ------------------------------------------------------- insightface protocol
def test_squared_distances_of_unit_embeddings():
  embeddings = np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
  np.testing.assert_allclose(verification.squared_distances(embeddings, np.array([[0, 1], [0, 2],
                                                                                [0, 0]])),
                             [2.0, 4.0, 0.0])  # 2 - 2 cos: orthogonal, opposite, equal


def test_insightface_threshold_rule_is_strict_and_takes_the_first_best():
  # same pairs at d = 0.5, 0.705; different at 1.2, 1.5. Any t in (0.705, 1.2] is perfect;
  # the grid's first one is 0.71 (the grid is 0, 0.01, ...; distances avoid its float noise).
  distances = np.array([0.5, 0.705, 1.2, 1.5])
  is_same = np.array([True, True, False, False])
  assert verification.insightface_best_threshold(distances, is_same) == pytest.approx(0.71)
  # A different pair at exactly 0.71 is accepted at 0.72 but not at 0.71.
  assert verification.val_far(np.array([0.5, 0.71]), [True, False], 0.71) == (1.0, 0.0)
  assert verification.val_far(np.array([0.5, 0.71]), [True, False], 0.72) == (1.0, 1.0)


def test_threshold_at_far_interpolates_between_grid_points():
  # 10 different pairs at d = 1.0, 1.1, ..., 1.9 and one same pair; grid 0, 0.5, 1.0, ...
  different = 1.0 + 0.1 * np.arange(10)
  distances = np.concatenate([[0.1], different])
  is_same = np.array([True] + [False] * 10)
  grid = np.arange(0, 4, 0.5)
  # FAR on the grid: t <= 1.0 -> 0; t = 1.5 -> 5/10 (d < 1.5: 1.0..1.4); t = 2.0 -> 1.
  # far 0.25 lies between FAR(1.0) = 0 and FAR(1.5) = 0.5: t = 1.0 + 0.5 * 0.25 / 0.5 = 1.25.
  assert verification.threshold_at_far(distances, is_same, 0.25, grid) == pytest.approx(1.25)
  # Exactly a grid FAR: that grid point (the last of equal FARs, as interp1d's interval).
  assert verification.threshold_at_far(distances, is_same, 0.5, grid) == pytest.approx(1.5)
  # FAR never reaches the target on the grid: t = 0 accepts nothing.
  assert verification.threshold_at_far(distances, is_same, 0.5, np.array([0.0, 1.2])) == 0.0


def test_threshold_at_far_matches_a_loop_over_the_grid():
  """FAR_i counted pair by pair at every grid point (as insightface's calculate_val loops),
  then t interpolated between the last grid point with FAR_i <= far and the next."""
  rng = np.random.default_rng(3)
  grid = np.arange(0, 4, 0.001)
  for _ in range(5):
    distances = np.concatenate([rng.uniform(0, 2.5, 40), rng.uniform(1.0, 4, 60)])
    is_same = np.array([True] * 40 + [False] * 60)
    rates = np.array([np.mean(distances[~is_same] < t) for t in grid])
    for far in (1e-3, 0.05, 0.3):
      i = max(j for j in range(len(grid)) if rates[j] <= far)
      expected = grid[i] + (grid[i + 1] - grid[i]) * (far - rates[i]) / (rates[i + 1] - rates[i])
      got = verification.threshold_at_far(distances, is_same, far, grid)
      assert got == pytest.approx(expected, abs=1e-12)


def test_insightface_verification_by_hand():
  # 4 folds of 4 pairs (2 same, 2 different); every fold separable at t in (0.805, 1.0],
  # except fold 3 where one different pair sits at d = 0.3 (accepted by every good t).
  same = [0.2, 0.805]
  distances = np.array(same + [1.0, 1.6] + same + [1.0, 1.6] + same + [1.0, 1.6] + same
                       + [0.3, 1.6])
  is_same = np.array([True, True, False, False] * 4)
  result = verification.insightface_verification(distances, is_same, num_folds=4, far=0.5)
  assert result["thresholds"] == pytest.approx([0.81] * 4)
  np.testing.assert_allclose(result["accuracy"], (1 + 1 + 1 + 0.75) / 4)
  np.testing.assert_allclose(result["std"], np.std([1, 1, 1, 0.75]))
  # VAL@FAR=0.5: on folds 0-2's train sets (6 different pairs: 1.0 x2, 1.6 x2 ... and 0.3)
  # FAR reaches 0.5 between grid points; every fold accepts both same pairs.
  assert result["val"] == 1.0
  assert 0.0 <= result["far"] <= 0.5


def test_insightface_report_keys_do_not_collide():
  rng = np.random.default_rng(0)
  embeddings = rng.normal(size=(40, 8))
  pairs = np.arange(40).reshape(20, 2)
  is_same = np.array([True, False] * 10)
  both = verification.protocol_report(embeddings, pairs, is_same, num_folds=5, protocol="both")
  exact = verification.verification_report(embeddings, pairs, is_same, num_folds=5)
  insight = verification.insightface_report(embeddings, pairs, is_same, num_folds=5)
  assert set(exact).isdisjoint(insight) and set(both) == set(exact) | set(insight)
  assert "insightface_val_at_far_1e-3" in insight
  with pytest.raises(ValueError, match="protocol"):
    verification.protocol_report(embeddings, pairs, is_same, protocol="lfw")


@pytest.mark.slow
def test_insightface_and_exact_protocols_agree_on_lfw_dev_test(shared_data):
  """The 1000 pairsDevTest pairs, pixel-PCA embeddings of their centre-cropped deep-funneled
  faces (from the LFW archive): the two protocols' 10-fold accuracies differ by < 0.5 points
  (same folds; d = 2 - 2 cos orders the pairs as the cosine does, only the threshold grid and
  the strict/non-strict comparison differ)."""
  import os
  import tarfile
  import cv2
  from enas_face.data import real, verification_files
  pairs_path = os.path.join(shared_data, "lfw", "pairsDevTest.txt")
  relpaths, pairs, is_same = verification_files.resolve_lfw_pairs(pairs_path, lambda _: True)
  wanted = {rel: i for i, rel in enumerate(relpaths)}
  faces = [None] * len(relpaths)
  with tarfile.open(os.path.join(shared_data, "lfw", "lfw-deepfunneled.tgz")) as archive:
    for member in archive:
      rel = "/".join(member.name.split("/")[1:])
      if member.isfile() and rel in wanted:
        data = np.frombuffer(archive.extractfile(member).read(), np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        faces[wanted[rel]] = cv2.resize(image[75:175, 75:175], (32, 32),
                                        interpolation=cv2.INTER_AREA)
  assert all(face is not None for face in faces)
  faces = np.stack(faces)
  embeddings = pca_embeddings(faces, faces, num_components=64)
  order = real.order_by_fold(is_same, 10)
  pairs, is_same = pairs[order], is_same[order]
  exact = kfold_verification(cosine_scores(embeddings, pairs), is_same, 10)["accuracy"]
  insight = verification.insightface_verification(
      verification.squared_distances(embeddings, pairs), is_same, 10)["accuracy"]
  print(f"pairsDevTest, pixel PCA: exact {exact:.4f}, insightface {insight:.4f}")
  assert 0.55 < exact < 0.8  # better than chance, far from a face model
  assert abs(exact - insight) < 0.005
