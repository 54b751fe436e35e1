"""Tests for enas_face.data.pairs.make_verification_pairs."""
from __future__ import annotations

import numpy as np
import pytest

from enas_face.data.pairs import make_verification_pairs


def _check_pairs(labels: np.ndarray, pairs: np.ndarray, is_same: np.ndarray, num_pairs: int,
                 num_folds: int) -> None:
  """Shapes, label consistency, per-fold balance, no self-pairs, no duplicates."""
  assert pairs.shape == (num_pairs, 2) and pairs.dtype == np.int64
  assert is_same.shape == (num_pairs,) and is_same.dtype == np.bool_
  assert pairs.min() >= 0 and pairs.max() < len(labels)
  np.testing.assert_array_equal(labels[pairs[:, 0]] == labels[pairs[:, 1]], is_same)
  assert np.all(pairs[:, 0] != pairs[:, 1])
  unordered = {tuple(sorted(pair)) for pair in pairs.tolist()}
  assert len(unordered) == num_pairs
  per_fold = num_pairs // num_folds
  for fold in range(num_folds):
    fold_same = is_same[fold * per_fold:(fold + 1) * per_fold]
    assert fold_same.sum() == per_fold // 2
    # LFW convention: within a fold the same pairs come first.
    assert fold_same[:per_fold // 2].all() and not fold_same[per_fold // 2:].any()


def test_pairs_are_balanced_valid_and_unique():
  labels = np.repeat(np.arange(20), 6)
  pairs, is_same = make_verification_pairs(labels, num_pairs=200, num_folds=10, seed=1)
  _check_pairs(labels, pairs, is_same, 200, 10)


def test_labels_need_not_be_contiguous_or_sorted():
  rng = np.random.default_rng(0)
  labels = rng.permutation(np.repeat(np.array([7, 42, 3, 1000, 5]), 5))
  pairs, is_same = make_verification_pairs(labels, num_pairs=40, num_folds=4, seed=0)
  _check_pairs(labels, pairs, is_same, 40, 4)


def test_uses_every_possible_same_pair_when_asked_for_exactly_that_many():
  labels = np.repeat(np.arange(5), 3)  # 5 * 3 = 15 distinct same-identity pairs
  pairs, is_same = make_verification_pairs(labels, num_pairs=30, num_folds=3, seed=0)
  _check_pairs(labels, pairs, is_same, 30, 3)


def test_large_label_sets_use_sampling_and_stay_valid():
  labels = np.repeat(np.arange(3000), 20)  # too many different pairs to enumerate
  pairs, is_same = make_verification_pairs(labels, num_pairs=2000, num_folds=10, seed=0)
  _check_pairs(labels, pairs, is_same, 2000, 10)
  again, _ = make_verification_pairs(labels, num_pairs=2000, num_folds=10, seed=0)
  np.testing.assert_array_equal(pairs, again)


def test_deterministic_under_seed_and_seed_matters():
  labels = np.repeat(np.arange(10), 5)
  first = make_verification_pairs(labels, 60, 3, seed=4)
  second = make_verification_pairs(labels, 60, 3, seed=4)
  other = make_verification_pairs(labels, 60, 3, seed=5)
  np.testing.assert_array_equal(first[0], second[0])
  np.testing.assert_array_equal(first[1], second[1])
  assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("labels, kwargs, match", [
    (np.repeat(np.arange(10), 5), dict(num_pairs=50, num_folds=10), "num_pairs must be divisible"),
    (np.repeat(np.arange(10), 5), dict(num_pairs=0), "num_pairs must be a positive integer"),
    (np.repeat(np.arange(10), 5), dict(num_pairs=20, num_folds=0), "num_folds must be a positive"),
    (np.repeat(np.arange(10), 5), dict(num_pairs=20.0), "num_pairs must be a positive integer"),
    (np.zeros(10, dtype=int), dict(num_pairs=20), "at least 2 identities"),
    (np.arange(10), dict(num_pairs=20), "same-identity pairs"),
    (np.repeat(np.arange(3), 2), dict(num_pairs=12, num_folds=1), "same-identity pairs"),
    (np.array([0, 0, 0, 0, 0, 1]), dict(num_pairs=20, num_folds=1), "different-identity pairs"),
    (np.zeros((4, 2), dtype=int), dict(num_pairs=2, num_folds=1), "1-D"),
])
def test_impossible_requests_raise_naming_the_problem(labels, kwargs, match):
  with pytest.raises(ValueError, match=match):
    make_verification_pairs(labels, **kwargs)
