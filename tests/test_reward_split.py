"""reward_split.hold_out_identities: K training identities become the reward's pairs.

Pure numpy on a tiny synthetic dataset: the held identities leave train/val/test (all
their images), the rest are relabelled 0..C-K-1, the reward pairs are balanced and made
of held identities only, the choice is seeded, bad K / pair counts name their flag, and
the evaluation pairs are untouched.
"""
import numpy as np
import pytest

from enas_face.config import ConfigError
from enas_face.data import reward_split
from enas_face.data.synthetic import make_synthetic_dataset

NUM_IDENTITIES = 10


@pytest.fixture(scope="module")
def dataset():
  return make_synthetic_dataset(num_identities=NUM_IDENTITIES, images_per_identity=6,
                                num_heldout_identities=4, heldout_images_per_identity=3,
                                num_pairs=8, num_folds=2, image_size=16, seed=0)


def parts(dataset):
  return (dataset.train, dataset.val, dataset.test)


def original_labels(dataset) -> dict:
  """Pixel bytes -> original identity, over train/val/test (every synthetic image differs)."""
  table = {}
  for part in parts(dataset):
    for image, label in zip(part.images, part.labels):
      table[image.tobytes()] = int(label)
  assert len(table) == sum(len(p) for p in parts(dataset)), "synthetic images are not unique"
  return table


def test_held_identities_leave_training_and_the_rest_are_relabelled(dataset):
  k = 4
  reduced, pairs = reward_split.hold_out_identities(dataset, k, num_pairs=12, num_folds=2, seed=0)
  held = reduced.report["reward_identities"]
  assert len(held) == k == len(set(held))
  assert all(0 <= i < NUM_IDENTITIES for i in held)
  assert reduced.num_classes == NUM_IDENTITIES - k
  for part in parts(reduced):
    assert part.labels.dtype == dataset.train.labels.dtype
    assert set(np.unique(part.labels)) <= set(range(NUM_IDENTITIES - k))
  assert set(np.unique(reduced.train.labels)) == set(range(NUM_IDENTITIES - k))

  all_labels = np.concatenate([p.labels for p in parts(dataset)])
  held_count = int(np.isin(all_labels, held).sum())
  removed = sum(len(p) for p in parts(dataset)) - sum(len(p) for p in parts(reduced))
  assert removed == held_count == len(pairs.images) == reduced.report["reward_images"]
  assert reduced.report["reward_pairs"] == len(pairs) == 12

  # Images that stay keep their identity, under the new (order-preserving) label.
  labels_of = original_labels(dataset)
  keep = [i for i in range(NUM_IDENTITIES) if i not in held]
  for before, after in zip(parts(dataset), parts(reduced)):
    mask = ~np.isin(before.labels, held)
    np.testing.assert_array_equal(after.images, before.images[mask])
    for image, label in zip(after.images, after.labels):
      assert keep[int(label)] == labels_of[image.tobytes()]


def test_reward_pairs_are_balanced_and_made_of_held_identities(dataset):
  reduced, pairs = reward_split.hold_out_identities(dataset, 4, num_pairs=16, num_folds=2, seed=3)
  held = set(reduced.report["reward_identities"])
  labels_of = original_labels(dataset)
  identity = np.array([labels_of[image.tobytes()] for image in pairs.images])
  assert set(identity) == held  # every held identity, nothing else
  assert pairs.num_folds == 2 and len(pairs) == 16
  assert int(pairs.is_same.sum()) == len(pairs) // 2
  for fold in np.split(pairs.is_same, pairs.num_folds):
    assert int(fold.sum()) == len(fold) // 2
  for (a, b), same in zip(pairs.pairs, pairs.is_same):
    assert a != b
    assert (identity[a] == identity[b]) == bool(same)


def test_the_seed_picks_the_identities(dataset):
  def held(seed):
    reduced, _ = reward_split.hold_out_identities(dataset, 3, num_pairs=8, num_folds=2, seed=seed)
    return reduced.report["reward_identities"]

  assert held(5) == held(5)
  assert len({tuple(held(seed)) for seed in range(6)}) > 1  # C(10, 3) = 120 choices


def test_evaluation_pairs_are_unchanged(dataset):
  reduced, _ = reward_split.hold_out_identities(dataset, 4, num_pairs=12, num_folds=2, seed=0)
  assert reduced.pairs is dataset.pairs
  np.testing.assert_array_equal(reduced.pairs.pairs, dataset.pairs.pairs)
  np.testing.assert_array_equal(reduced.pairs.is_same, dataset.pairs.is_same)
  np.testing.assert_array_equal(reduced.pairs.images, dataset.pairs.images)
  assert "reward_identities" not in dataset.report  # the input is not modified


@pytest.mark.parametrize("k", [0, 1, NUM_IDENTITIES - 1, NUM_IDENTITIES, NUM_IDENTITIES + 5])
def test_bad_identity_count_names_the_flag(dataset, k):
  with pytest.raises(ConfigError, match="--reward_identities"):
    reward_split.hold_out_identities(dataset, k, num_pairs=8, num_folds=2, seed=0)


def test_largest_identity_count_still_leaves_two_for_training(dataset):
  reduced, _ = reward_split.hold_out_identities(dataset, NUM_IDENTITIES - 2, num_pairs=8,
                                                num_folds=2, seed=0)
  assert reduced.num_classes == 2


@pytest.mark.parametrize("num_pairs", [200, 10])  # too many same pairs; not a multiple of 4
def test_bad_pair_count_names_the_flag(dataset, num_pairs):
  # 4 identities x 6 images allow 4 * 15 = 60 same-identity pairs.
  with pytest.raises(ConfigError, match="--reward_pairs"):
    reward_split.hold_out_identities(dataset, 4, num_pairs=num_pairs, num_folds=2, seed=0)
