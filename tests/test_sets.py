"""Set-based recognition: aggregation formulas, their edge cases, set pairs, set verification, synthetic videos."""
from __future__ import annotations

import numpy as np
import pytest

from enas_face.data import frame_sets
from enas_face.evaluation import sets

# Hand-made frames: f_0 and f_1 have norm 2 and 5 (pooling must not see the norms).
FRAMES = np.array([[2.0, 0.0, 0.0],
                   [0.0, 5.0, 0.0],
                   [0.0, 0.0, 1.0],
                   [3.0, 4.0, 0.0]])
UNIT = FRAMES / np.linalg.norm(FRAMES, axis=1, keepdims=True)


def normalize(x):
  return x / np.linalg.norm(x)


# ------------------------------------------------------------- the formulas
def test_mean_is_the_normalised_mean_of_unit_frames():
  expected = normalize(UNIT.mean(axis=0))
  np.testing.assert_allclose(sets.aggregate(FRAMES, None, "mean"), expected, atol=1e-12)
  # Scores are ignored by the mean.
  np.testing.assert_allclose(sets.aggregate(FRAMES, [0.1, 0.9, 0.2, 0.3], "mean"), expected, atol=1e-12)


def test_best_takes_the_highest_scoring_frame_and_the_first_of_ties():
  np.testing.assert_allclose(sets.aggregate(FRAMES, [0.1, 0.9, 0.2, 0.3], "best"), [0, 1, 0], atol=1e-12)
  np.testing.assert_allclose(sets.aggregate(FRAMES, [0.1, 0.2, 0.7, 0.7], "best"), [0, 0, 1], atol=1e-12)
  np.testing.assert_allclose(sets.aggregate(FRAMES, [-3.0, -1.0, -2.0, -5.0], "best"), [0, 1, 0], atol=1e-12)


def test_qan_weights_unit_frames_by_their_sigmoid_scores():
  mu = np.array([0.2, 0.6, 0.1, 0.1])
  expected = normalize((mu[:, None] * UNIT).sum(axis=0) / mu.sum())
  np.testing.assert_allclose(sets.aggregate(FRAMES, mu, "qan"), expected, atol=1e-12)
  # By hand: 0.2*(1,0,0) + 0.6*(0,1,0) + 0.1*(0,0,1) + 0.1*(.6,.8,0) = (.26, .68, .1).
  np.testing.assert_allclose(sets.aggregate(FRAMES, mu, "qan"), normalize(np.array([0.26, 0.68, 0.1])), atol=1e-12)
  np.testing.assert_allclose(sets.frame_weights(mu, "qan"), mu / mu.sum())


def test_qanpp_min_max_normalises_raw_scores_for_sets_of_more_than_two():
  q = np.array([3.0, -1.0, 1.0, 2.0])
  q_prime = (q - q.min()) / (q.max() - q.min())  # [1, 0, .5, .75]
  np.testing.assert_allclose(q_prime, [1.0, 0.0, 0.5, 0.75])
  expected = normalize((q_prime[:, None] * UNIT).sum(axis=0) / q_prime.sum())
  np.testing.assert_allclose(sets.aggregate(FRAMES, q, "qanpp"), expected, atol=1e-12)
  np.testing.assert_allclose(sets.frame_weights(q, "qanpp"), q_prime / q_prime.sum())
  # Invariant to an affine change of the raw scores with positive scale.
  np.testing.assert_allclose(sets.aggregate(FRAMES, 7 * q + 100, "qanpp"), expected, atol=1e-12)


def test_qanpp_gives_the_worst_frame_weight_zero():
  q = np.array([0.5, 2.0, 1.0, -4.0])  # frame 3 is the worst
  before = sets.aggregate(FRAMES, q, "qanpp")
  changed = FRAMES.copy()
  changed[3] = [-100.0, 7.0, 42.0]
  np.testing.assert_allclose(sets.aggregate(changed, q, "qanpp"), before, atol=1e-12)
  assert sets.frame_weights(q, "qanpp")[3] == 0.0
  # The same change moves every other method's embedding (QAN keeps all frames).
  assert not np.allclose(sets.aggregate(changed, 1 / (1 + np.exp(-q)), "qan"),
                         sets.aggregate(FRAMES, 1 / (1 + np.exp(-q)), "qan"))


def test_qanpp_uses_raw_scores_for_sets_of_two():
  q = np.array([3.0, 1.0])
  expected = normalize((3 * UNIT[0] + 1 * UNIT[1]) / 4)
  np.testing.assert_allclose(sets.aggregate(FRAMES[:2], q, "qanpp"), expected, atol=1e-12)
  # Mixed signs with a positive sum: the published formula, a negative weight.
  np.testing.assert_allclose(sets.frame_weights([3.0, -1.0], "qanpp"), [1.5, -0.5])


def test_frames_are_normalised_before_pooling():
  scaled = FRAMES * np.array([[1e3], [1e-3], [1.0], [50.0]])
  for method, scores in (("mean", None), ("best", [0.1, 0.9, 0.2, 0.3]), ("qan", [0.2, 0.6, 0.1, 0.1]),
                         ("qanpp", [0.5, 2.0, 1.0, -4.0])):
    np.testing.assert_allclose(sets.aggregate(scaled, scores, method), sets.aggregate(FRAMES, scores, method),
                               atol=1e-12, err_msg=method)


def test_output_is_unit_float64():
  for method in sets.METHODS:
    out = sets.aggregate(FRAMES.astype(np.float32), [0.2, 0.6, 0.1, 0.1], method)
    assert out.dtype == np.float64 and out.shape == (3,)
    assert np.linalg.norm(out) == pytest.approx(1.0)


# -------------------------------------------------------------- edge cases
@pytest.mark.parametrize("method", sets.METHODS)
@pytest.mark.parametrize("score", [0.7, 0.0, -2.0])
def test_a_set_of_one_frame_is_that_frame(method, score):
  if method == "qan" and score < 0:
    score = 0.3
  np.testing.assert_allclose(sets.aggregate([[3.0, 4.0]], [score], method), [0.6, 0.8], atol=1e-12)


def test_qanpp_with_all_equal_scores_is_the_mean():
  mean = sets.aggregate(FRAMES, None, "mean")
  for value in (0.0, 1.5, -2.0):
    np.testing.assert_allclose(sets.aggregate(FRAMES, np.full(4, value), "qanpp"), mean, atol=1e-12)
  np.testing.assert_allclose(sets.aggregate(FRAMES[:3], [1.0, 1.0, 1.0], "qanpp"),
                             sets.aggregate(FRAMES[:3], None, "mean"), atol=1e-12)


@pytest.mark.parametrize("q", [[-1.0, -3.0], [0.0, 0.0], [1.0, -1.0], [-2.0, 1.0], [-0.5]])
def test_qanpp_small_sets_with_non_positive_score_sum_fall_back_to_the_mean(q):
  frames = FRAMES[:len(q)]
  np.testing.assert_allclose(sets.aggregate(frames, q, "qanpp"), sets.aggregate(frames, None, "mean"), atol=1e-12)


def test_qan_with_all_zero_scores_is_the_mean():
  np.testing.assert_allclose(sets.aggregate(FRAMES, np.zeros(4), "qan"), sets.aggregate(FRAMES, None, "mean"),
                             atol=1e-12)


def test_errors_name_what_was_wrong():
  with pytest.raises(ValueError, match="empty"):
    sets.aggregate(np.zeros((0, 3)), None, "mean")
  with pytest.raises(ValueError, match="empty"):
    sets.aggregate(np.zeros((0, 3)), np.zeros(0), "qanpp")
  with pytest.raises(ValueError, match="finite"):
    sets.aggregate([[1.0, np.nan], [1.0, 0.0]], None, "mean")
  with pytest.raises(ValueError, match="finite"):
    sets.aggregate(FRAMES, [0.1, np.nan, 0.2, 0.3], "qanpp")
  with pytest.raises(ValueError, match="finite"):
    sets.aggregate(FRAMES, [0.1, np.inf, 0.2, 0.3], "best")
  with pytest.raises(ValueError, match="needs one quality score"):
    sets.aggregate(FRAMES, None, "qan")
  with pytest.raises(ValueError, match=r"shape \(4,\)"):
    sets.aggregate(FRAMES, [0.1, 0.2], "qan")
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    sets.aggregate(FRAMES, [0.1, 1.2, 0.2, 0.3], "qan")
  with pytest.raises(ValueError, match="method must be one of"):
    sets.aggregate(FRAMES, None, "median")


# -------------------------------------------------------------- many sets
@pytest.mark.parametrize("method", sets.METHODS)
def test_aggregate_sets_equals_aggregate_per_set(method):
  rng = np.random.default_rng(0)
  embeddings = rng.standard_normal((23, 5))
  scores = rng.random(23)
  set_ids = rng.integers(-1, 6, size=23)  # ids 0..5 and unused frames (-1)
  set_ids[:6] = np.arange(6)  # every set has a frame
  out = sets.aggregate_sets(embeddings, scores, set_ids, method)
  assert out.shape == (6, 5)
  for k in range(6):
    members = set_ids == k
    np.testing.assert_allclose(out[k], sets.aggregate(embeddings[members], scores[members], method), atol=1e-12)


def test_aggregate_sets_rows_follow_sorted_ids_and_ignore_unused_frames():
  embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [1.0, 1.0]])
  out = sets.aggregate_sets(embeddings, None, [7, 2, -1, 7], "mean")
  np.testing.assert_allclose(out[0], [0.0, 1.0], atol=1e-12)  # set 2
  np.testing.assert_allclose(out[1], normalize(np.array([1.0, 0.0]) + normalize(np.array([1.0, 1.0]))),
                             atol=1e-12)  # set 7
  with pytest.raises(ValueError, match="at least one set"):
    sets.aggregate_sets(embeddings, None, [-1, -1, -1, -1], "mean")
  with pytest.raises(ValueError, match="finite"):
    sets.aggregate_sets(np.array([[np.nan, 0.0], [1.0, 0.0]]), None, [0, 1], "mean")
  # An unused frame may hold anything, even NaN.
  sets.aggregate_sets(np.array([[np.nan, 0.0], [1.0, 0.0]]), None, [-1, 0], "mean")


# ----------------------------------------------------------- sets from labels
def test_sets_from_labels_cuts_identities_into_sets():
  labels = np.array([5] * 7 + [2] * 3 + [9] * 2 + [4] * 6)
  set_ids, set_labels = sets.sets_from_labels(labels, set_size=3, seed=1)
  # Sorted identities: 2 (3 images -> 1 set), 4 (6 -> 2), 5 (7 -> 2, one left over), 9 (2 -> none).
  np.testing.assert_array_equal(set_labels, [2, 4, 4, 5, 5])
  assert set_ids.dtype == np.int64 and set_ids.shape == labels.shape
  ids, counts = np.unique(set_ids[set_ids >= 0], return_counts=True)
  np.testing.assert_array_equal(ids, np.arange(5))
  assert np.all(counts == 3)
  for k, label in enumerate(set_labels):
    assert np.all(labels[set_ids == k] == label)
  assert np.count_nonzero(set_ids == -1) == 1 + 2  # identity 5's leftover and identity 9
  assert np.all(set_ids[labels == 9] == -1)


def test_sets_from_labels_is_seeded_and_capped():
  labels = np.repeat(np.arange(4), 10)
  first = sets.sets_from_labels(labels, 3, seed=7)
  np.testing.assert_array_equal(first[0], sets.sets_from_labels(labels, 3, seed=7)[0])
  assert not np.array_equal(first[0], sets.sets_from_labels(labels, 3, seed=8)[0])
  capped_ids, capped_labels = sets.sets_from_labels(labels, 3, seed=7, max_sets_per_identity=2)
  np.testing.assert_array_equal(capped_labels, [0, 0, 1, 1, 2, 2, 3, 3])
  assert np.count_nonzero(capped_ids >= 0) == 8 * 3
  with pytest.raises(ValueError, match="set_size"):
    sets.sets_from_labels(labels, 0)


# ------------------------------------------------------------------ set pairs
def test_set_pairs_are_balanced_and_fold_ordered():
  set_labels = np.repeat(np.arange(8), 4)
  pairs, is_same = frame_sets.make_set_pairs(set_labels, num_pairs=40, num_folds=5, seed=3)
  assert pairs.shape == (40, 2) and is_same.dtype == bool
  np.testing.assert_array_equal(is_same, np.tile(np.repeat([True, False], 4), 5))
  np.testing.assert_array_equal(set_labels[pairs[:, 0]] == set_labels[pairs[:, 1]], is_same)
  assert np.all(pairs[:, 0] != pairs[:, 1])
  assert len({tuple(sorted(p)) for p in pairs.tolist()}) == 40
  again = frame_sets.make_set_pairs(set_labels, num_pairs=40, num_folds=5, seed=3)
  np.testing.assert_array_equal(pairs, again[0])


# ------------------------------------------------------- set verification
def _toy_sets(separable: bool, seed: int = 0):
  rng = np.random.default_rng(seed)
  set_labels = np.repeat(np.arange(20), 6)
  if separable:
    centres = np.eye(32)[:20]
    embeddings = centres[set_labels] + 0.05 * rng.standard_normal((set_labels.size, 32))
  else:
    embeddings = rng.standard_normal((set_labels.size, 32))
  pairs, is_same = frame_sets.make_set_pairs(set_labels, num_pairs=600, num_folds=10, seed=seed)
  return embeddings, pairs, is_same


def test_set_verification_report_on_separable_sets_is_perfect():
  embeddings, pairs, is_same = _toy_sets(separable=True)
  report = sets.set_verification_report(embeddings, pairs, is_same, num_folds=10)
  assert set(report) == {"verification_accuracy", "verification_std", "tar_at_far_1e-3", "tar_at_far_1e-4",
                         "roc_auc", "num_pairs", "num_sets"}
  assert report["verification_accuracy"] == 1.0 and report["verification_std"] == 0.0
  assert report["tar_at_far_1e-3"] == 1.0 and report["tar_at_far_1e-4"] == 1.0
  assert report["roc_auc"] == 1.0 and report["num_pairs"] == 600 and report["num_sets"] == 120


def test_set_verification_report_on_random_sets_is_chance():
  embeddings, pairs, is_same = _toy_sets(separable=False)
  report = sets.set_verification_report(embeddings, pairs, is_same, num_folds=10, fars=(1e-2,))
  assert abs(report["verification_accuracy"] - 0.5) < 0.08
  assert abs(report["roc_auc"] - 0.5) < 0.08
  assert "tar_at_far_1e-2" in report and "tar_at_far_1e-3" not in report


def test_set_verification_report_matches_verification_report():
  from enas_face.evaluation.verification import verification_report
  embeddings, pairs, is_same = _toy_sets(separable=False, seed=4)
  ours = sets.set_verification_report(embeddings, pairs, is_same, num_folds=5, fars=(1e-3,))
  theirs = verification_report(embeddings, pairs, is_same, num_folds=5, far=1e-3)
  assert {key: ours[key] for key in theirs} == theirs


def test_sets_module_does_not_import_tensorflow():
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  code = "import sys, enas_face.evaluation.sets; print('tensorflow' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
  assert out.stdout.strip() == "False"


# ------------------------------------------------------------ synthetic videos
from enas_face.data import synthetic_video  # noqa: E402
from enas_face.data.synthetic import identity_seeds, render_identity  # noqa: E402

VIDEOS = dict(num_identities=3, videos_per_identity=2, frames_per_video=5, image_size=24, seed=2,
              degraded_fraction=0.4)


@pytest.fixture(scope="module")
def videos():
  return synthetic_video.make_synthetic_videos(**VIDEOS)


def test_synthetic_videos_shapes_and_labels(videos):
  assert videos.frames.dtype == np.uint8 and videos.frames.shape == (3 * 2 * 5, 24, 24, 3)
  np.testing.assert_array_equal(videos.video_ids, np.repeat(np.arange(6), 5))
  np.testing.assert_array_equal(videos.video_labels, [0, 0, 1, 1, 2, 2])
  assert videos.degradation.shape == (30,) and videos.identity_seeds.shape == (3,)
  assert np.all((videos.degradation >= 0) & (videos.degradation <= 1))
  # round(0.4 * 5) = 2 badly degraded frames in every video, the rest mild.
  bad = videos.degradation >= synthetic_video.BAD_LEVEL
  np.testing.assert_array_equal(np.bincount(videos.video_ids[bad], minlength=6), np.full(6, 2))
  assert np.all(videos.degradation[~bad] < synthetic_video.GOOD_LEVEL)


def test_synthetic_videos_are_deterministic_in_seed(videos):
  again = synthetic_video.make_synthetic_videos(**VIDEOS)
  np.testing.assert_array_equal(videos.frames, again.frames)
  np.testing.assert_array_equal(videos.degradation, again.degradation)
  np.testing.assert_array_equal(videos.identity_seeds, again.identity_seeds)
  other = synthetic_video.make_synthetic_videos(**{**VIDEOS, "seed": 3})
  assert not np.array_equal(videos.frames, other.frames)
  assert not np.array_equal(videos.degradation, other.degradation)


def test_video_identities_are_disjoint_from_the_training_dataset():
  train, heldout = identity_seeds(100, 50, 2)
  seeds = synthetic_video.video_identity_seeds(40, seed=2)
  assert len(set(seeds.tolist())) == 40
  assert not set(seeds.tolist()) & (set(train.tolist()) | set(heldout.tolist()))
  small_train, small_heldout = identity_seeds(4, 2, 2)
  seeds = synthetic_video.video_identity_seeds(5, seed=2, train_identities=4, train_heldout_identities=2)
  assert not set(seeds.tolist()) & (set(small_train.tolist()) | set(small_heldout.tolist()))


def test_video_identity_seeds_reject_the_datasets_seeds(monkeypatch):
  # Make the dataset own the first seeds the video stream would draw: they must be skipped.
  unpatched = synthetic_video.video_identity_seeds(6, seed=5)
  monkeypatch.setattr(synthetic_video, "identity_seeds",
                      lambda *args: (unpatched[:2], unpatched[4:5]))
  seeds = synthetic_video.video_identity_seeds(6, seed=5)
  assert len(set(seeds.tolist())) == 6
  assert not set(seeds.tolist()) & set(unpatched[[0, 1, 4]].tolist())
  np.testing.assert_array_equal(seeds[:2], unpatched[[2, 3]])


def test_degraded_frames_lose_contrast(videos):
  grey = videos.frames.astype(np.float64).mean(axis=-1)
  rms_contrast = grey.std(axis=(1, 2))
  bad = videos.degradation >= synthetic_video.BAD_LEVEL
  assert rms_contrast[bad].mean() < 0.7 * rms_contrast[~bad].mean()
  # Rank correlation of d with the contrast is clearly negative.
  ranks = lambda x: np.argsort(np.argsort(x))
  assert np.corrcoef(ranks(videos.degradation), ranks(rms_contrast))[0, 1] < -0.5


def test_degrade_grows_with_the_level_on_average():
  images = render_identity(11, 12, 24, 0)
  distances, contrasts = [], []
  for level in (0.0, 0.25, 0.5, 0.75, 1.0):
    rng = np.random.default_rng(0)
    out = np.stack([synthetic_video.degrade(image, level, rng) for image in images]).astype(np.float64)
    distances.append(np.abs(out - images).mean())
    contrasts.append(out.mean(axis=-1).std(axis=(1, 2)).mean())
  assert distances[0] == 0.0
  assert np.all(np.diff(distances) > 0) and np.all(np.diff(contrasts) < 0)
  with pytest.raises(ValueError, match="level"):
    synthetic_video.degrade(images[0], 1.5, np.random.default_rng(0))
