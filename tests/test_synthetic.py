"""Tests for the procedural synthetic face dataset."""
from __future__ import annotations

import numpy as np
import pytest

from enas_face.data.base import FaceDataset
from enas_face.data.synthetic import identity_seeds, make_synthetic_dataset, render_identity

SMALL = dict(num_identities=6, images_per_identity=10, num_heldout_identities=4,
             heldout_images_per_identity=5, num_pairs=20, num_folds=2, image_size=24, seed=3)


@pytest.fixture(scope="module")
def small_dataset() -> FaceDataset:
  return make_synthetic_dataset(**SMALL)


def test_dataset_shapes_dtypes_and_metadata(small_dataset):
  data = small_dataset
  assert data.name == "synthetic"
  assert data.num_classes == 6 and data.image_size == 24
  for part in (data.train, data.val, data.test):
    assert part.images.dtype == np.uint8 and part.images.shape[1:] == (24, 24, 3)
    assert part.labels.dtype == np.int32
  assert data.pairs.images.shape == (4 * 5, 24, 24, 3) and data.pairs.images.dtype == np.uint8
  assert data.pairs.num_folds == 2 and len(data.pairs) == 20


def test_split_is_8_1_1_per_identity(small_dataset):
  for part, expected in ((small_dataset.train, 8), (small_dataset.val, 1), (small_dataset.test, 1)):
    identities, counts = np.unique(part.labels, return_counts=True)
    np.testing.assert_array_equal(identities, np.arange(6))
    assert np.all(counts == expected)


def test_splits_hold_distinct_images(small_dataset):
  seen = set()
  for part in (small_dataset.train, small_dataset.val, small_dataset.test):
    for image in part.images:
      seen.add(image.tobytes())
  assert len(seen) == 6 * 10


def test_same_arguments_give_bit_identical_data(small_dataset):
  again = make_synthetic_dataset(**SMALL)
  for first, second in ((small_dataset.train, again.train), (small_dataset.val, again.val),
                        (small_dataset.test, again.test)):
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
  np.testing.assert_array_equal(small_dataset.pairs.images, again.pairs.images)
  np.testing.assert_array_equal(small_dataset.pairs.pairs, again.pairs.pairs)
  np.testing.assert_array_equal(small_dataset.pairs.is_same, again.pairs.is_same)


def test_different_seed_gives_different_data(small_dataset):
  other = make_synthetic_dataset(**{**SMALL, "seed": 4})
  assert not np.array_equal(small_dataset.train.images, other.train.images)
  assert not np.array_equal(small_dataset.pairs.images, other.pairs.images)


def test_heldout_identities_are_disjoint_from_training_ones(small_dataset):
  train_seeds, heldout_seeds = identity_seeds(6, 4, seed=3)
  assert len(set(train_seeds.tolist())) == 6 and len(set(heldout_seeds.tolist())) == 4
  assert not set(train_seeds.tolist()) & set(heldout_seeds.tolist())
  # The pair images are exactly the held-out identities' renderings, none of them a training image.
  expected = np.concatenate([render_identity(int(s), 5, 24, 3) for s in heldout_seeds])
  np.testing.assert_array_equal(small_dataset.pairs.images, expected)
  train_images = {image.tobytes() for image in small_dataset.train.images}
  assert not any(image.tobytes() in train_images for image in small_dataset.pairs.images)


def test_pairs_are_balanced_and_consistent_with_heldout_identities(small_dataset):
  pairs, is_same = small_dataset.pairs.pairs, small_dataset.pairs.is_same
  heldout_labels = np.repeat(np.arange(4), 5)  # held-out images are stored identity by identity
  np.testing.assert_array_equal(heldout_labels[pairs[:, 0]] == heldout_labels[pairs[:, 1]], is_same)
  assert np.all(pairs[:, 0] != pairs[:, 1])
  assert len({tuple(sorted(pair)) for pair in pairs.tolist()}) == len(pairs)
  for fold in is_same.reshape(2, -1):
    assert fold.sum() == len(fold) // 2


@pytest.mark.parametrize("image_size", [16, 32, 112])
def test_render_identity_shapes(image_size):
  images = render_identity(identity_seed=7, num_images=3, image_size=image_size, seed=0)
  assert images.shape == (3, image_size, image_size, 3) and images.dtype == np.uint8
  assert images.std() > 10  # not blank
  assert render_identity(7, 0, image_size, 0).shape == (0, image_size, image_size, 3)


def test_render_identity_is_deterministic_and_seeded():
  first = render_identity(11, 4, 32, seed=1)
  np.testing.assert_array_equal(first, render_identity(11, 4, 32, seed=1))
  assert not np.array_equal(first, render_identity(11, 4, 32, seed=2))
  assert not np.array_equal(first, render_identity(12, 4, 32, seed=1))


def test_images_of_one_identity_vary():
  images = render_identity(5, 8, 32, seed=0).astype(np.float32)
  flat = images.reshape(len(images), -1)
  distances = np.sqrt(((flat[:, None] - flat[None]) ** 2).sum(-1))
  off_diagonal = distances[~np.eye(len(flat), dtype=bool)]
  assert off_diagonal.min() > 0  # no two identical images
  assert np.abs(flat - flat.mean(0)).mean() > 10  # real variation, not just noise


def test_identities_are_distinguishable_from_pixels():
  num_identities, per_identity = 8, 12
  images = np.stack([render_identity(1000 + k, per_identity, 32, seed=0) for k in range(num_identities)])
  flat = images.reshape(num_identities * per_identity, -1).astype(np.float32)
  labels = np.repeat(np.arange(num_identities), per_identity)
  distances = np.sqrt(np.maximum(((flat[:, None] - flat[None]) ** 2).sum(-1), 0))
  same = labels[:, None] == labels[None]
  off_diagonal = ~np.eye(len(flat), dtype=bool)
  assert distances[same & off_diagonal].mean() < 0.95 * distances[~same].mean()
  # Nearest class mean (built from half the images) beats chance (1/8) by a wide margin.
  grouped = flat.reshape(num_identities, per_identity, -1)
  centroids = grouped[:, :per_identity // 2].mean(1)
  queries = grouped[:, per_identity // 2:].reshape(-1, flat.shape[1])
  predicted = ((queries[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
  assert (predicted == np.repeat(np.arange(num_identities), per_identity - per_identity // 2)).mean() > 0.3


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_identities=0), "num_identities"),
    (dict(images_per_identity=2), "images_per_identity"),
    (dict(num_heldout_identities=1), "num_heldout_identities"),
    (dict(heldout_images_per_identity=1), "heldout_images_per_identity"),
    (dict(image_size=15), "image_size"),
    (dict(image_size=513), "image_size"),
    (dict(image_size=32.0), "image_size"),
    (dict(seed=-1), "seed"),
    (dict(num_pairs=0), "num_pairs"),
    (dict(num_pairs=30), "num_pairs must be divisible"),
    (dict(num_pairs=400), "same-identity pairs"),  # 4 identities x 5 images allow only 40
])
def test_bad_dataset_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    make_synthetic_dataset(**{**SMALL, **kwargs})


def test_error_message_says_what_was_received_and_expected():
  with pytest.raises(ValueError, match=r"image_size must be an integer in \[16, 512\], got 8"):
    make_synthetic_dataset(image_size=8)


@pytest.mark.parametrize("kwargs, match", [
    (dict(identity_seed=-1), "identity_seed"),
    (dict(seed=-2), "seed"),
    (dict(num_images=-1), "num_images"),
    (dict(image_size=600), "image_size"),
])
def test_bad_render_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    render_identity(**{**dict(identity_seed=1, num_images=2, image_size=32, seed=0), **kwargs})


# ------------------------------------------------------------------ injected training noise
NOISY = dict(num_identities=8, images_per_identity=10, num_heldout_identities=4,
             heldout_images_per_identity=4, num_pairs=20, num_folds=2, image_size=16, seed=3)


def test_no_noise_is_the_clean_dataset():
  clean = make_synthetic_dataset(**NOISY)
  same = make_synthetic_dataset(**NOISY, label_noise=0.0, outliers=0.0, near_duplicates=0)
  np.testing.assert_array_equal(clean.train.images, same.train.images)
  assert "synthetic_noise" not in same.report


def test_label_noise_and_outliers_touch_only_the_listed_training_images():
  clean = make_synthetic_dataset(**NOISY)
  noisy = make_synthetic_dataset(**NOISY, label_noise=0.25, outliers=0.125)
  truth = noisy.report["synthetic_noise"]
  flipped, outliers = truth["label_noise_indices"], truth["outlier_indices"]
  n = len(clean.train.labels)
  assert len(flipped) == round(0.25 * n) and len(outliers) == round(0.125 * n)
  assert not set(flipped) & set(outliers)
  changed = np.flatnonzero(clean.train.labels != noisy.train.labels)
  assert changed.tolist() == flipped
  assert clean.train.labels[flipped].tolist() == truth["true_labels"]
  pixels = np.flatnonzero((clean.train.images != noisy.train.images).any(axis=(1, 2, 3)))
  assert pixels.tolist() == outliers
  assert set(truth["outlier_kinds"]) == {"non_face", "corrupted"}
  for part in ("val", "test"):
    np.testing.assert_array_equal(getattr(clean, part).images, getattr(noisy, part).images)
    np.testing.assert_array_equal(getattr(clean, part).labels, getattr(noisy, part).labels)
  for field in ("images", "pairs", "is_same"):
    np.testing.assert_array_equal(getattr(clean.pairs, field), getattr(noisy.pairs, field))
  again = make_synthetic_dataset(**NOISY, label_noise=np.float32(0.25), outliers=0.125)
  np.testing.assert_array_equal(again.train.images, noisy.train.images)
  np.testing.assert_array_equal(again.train.labels, noisy.train.labels)
  assert again.report == noisy.report
  other = make_synthetic_dataset(**dict(NOISY, seed=4), label_noise=0.25, outliers=0.125)
  assert other.report["synthetic_noise"]["label_noise_indices"] != flipped


def test_a_near_duplicate_looks_like_its_original():
  clean = make_synthetic_dataset(**dict(NOISY, images_per_identity=20))
  data = make_synthetic_dataset(**dict(NOISY, images_per_identity=20), near_duplicates=2)
  copies = {int(k): v for k, v in data.report["synthetic_noise"]["near_duplicate_of"].items()}
  assert sorted(copies) == [6, 7] and all(0 <= v < 6 for v in copies.values())
  assert data.report["synthetic_noise"]["label_noise_indices"] == []
  for part in ("train", "val", "test"):  # only the duplicates' images change, labels never
    before, after = getattr(clean, part), getattr(data, part)
    np.testing.assert_array_equal(before.labels, after.labels)
    changed = (before.images != after.images).any(axis=(1, 2, 3))
    np.testing.assert_array_equal(changed, before.labels >= 6)
  np.testing.assert_array_equal(clean.pairs.images, data.pairs.images)
  means = [data.train.images[data.train.labels == k].astype(float).mean(0) for k in range(8)]
  for copy, original in copies.items():
    distance = [np.abs(means[copy] - means[k]).mean() for k in range(8)]
    others = [d for k, d in enumerate(distance) if k not in (copy, original)]
    assert distance[original] < min(others)


@pytest.mark.parametrize("kwargs, match", [
    (dict(label_noise=1.0), "label_noise must be a fraction in \\[0, 1\\)"),
    (dict(label_noise=-0.1), "label_noise"),
    (dict(label_noise=True), "label_noise"),
    (dict(outliers=1.0), "outliers must be a fraction"),
    (dict(outliers="0.1"), "outliers"),
    (dict(label_noise=0.6, outliers=0.5), "label_noise \\+ outliers must be < 1"),
    (dict(near_duplicates=5), "near_duplicates must be at most num_identities // 2 = 4"),
    (dict(near_duplicates=-1), "near_duplicates"),
    (dict(near_duplicates=1.5), "near_duplicates"),
    (dict(num_identities=1, label_noise=0.1), "label_noise=0.1 needs at least 2 training"),
    (dict(num_identities=1, outliers=0.1), "outliers=0.1 needs at least 2 training"),
])
def test_noise_errors_name_the_parameter(kwargs, match):
  with pytest.raises(ValueError, match=match):
    make_synthetic_dataset(**{**NOISY, **kwargs})


def test_the_run_reports_the_injected_noise(tmp_path, capsys):
  import json
  import types

  from enas_face import main
  from enas_face.config import DataConfig
  data = DataConfig(image_size=16, synthetic_identities=6, synthetic_images_per_identity=10,
                    synthetic_heldout_identities=2, synthetic_heldout_images_per_identity=2,
                    num_pairs=4, num_folds=2, seed=1, synthetic_label_noise=0.1,
                    synthetic_outliers=0.05, synthetic_near_duplicates=1)
  dataset = main._load_dataset(types.SimpleNamespace(data=data, run_dir=str(tmp_path)))
  truth = dataset.report["synthetic_noise"]
  assert (truth["label_noise"], truth["outliers"], truth["near_duplicates"]) == (0.1, 0.05, 1)
  assert json.loads((tmp_path / "data_report.json").read_text()) == dataset.report
  assert (f"injected noise: {len(truth['label_noise_indices'])} training images with a wrong "
          f"identity, {len(truth['outlier_indices'])} outliers, 1 near-duplicate identities"
          in capsys.readouterr().out)
