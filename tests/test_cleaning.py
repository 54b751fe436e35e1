"""Data cleaning from proxy embeddings (enas_face/data/cleaning.py) on hand-made embeddings."""
import numpy as np
import pytest

from enas_face.data import cleaning
from enas_face.data import keys
from enas_face.data.cleaning import CleaningSettings
from enas_face.config import ConfigError
from enas_face.data.base import FaceDataset, LabelledImages, VerificationPairs


def angle_embeddings(angles_deg):
  """2-d unit vectors at the given angles (degrees): cos between two = cos(angle difference)."""
  radians = np.deg2rad(np.asarray(angles_deg, float))
  return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def test_outlier_threshold_removes_exactly_the_images_under_it():
  # Identity 0: images around 0 deg, symmetric so the centre sits at 0 deg exactly;
  # their cosines to the centre are cos(angle).
  angles = [0, 10, -10, 40, -40, 70, -70]
  e = angle_embeddings(angles + [180, 175, 185])  # identity 1 around 180 deg
  labels = np.array([0] * 7 + [1] * 3)
  cosine = np.cos(np.deg2rad(angles))
  for threshold in (0.2, 0.5, 0.8, 0.95):
    result = cleaning.clean(e, labels, 2, CleaningSettings(outlier_threshold=threshold))
    expected = {i for i, c in enumerate(cosine) if c < threshold}
    assert {r["index"] for r in result.removed} == expected
    assert all(r["rule"] == "outlier" and r["reason"].startswith("outlier") for r in result.removed)
    assert result.keep.sum() == len(labels) - len(expected)
    np.testing.assert_allclose(sorted(r["cosine_to_centre"] for r in result.removed),
                               sorted(cosine[list(expected)]), atol=1e-9)


def test_off_settings_keep_everything_and_are_not_active():
  e = angle_embeddings([0, 5, 90, 95])
  result = cleaning.clean(e, np.array([0, 0, 1, 1]), 2, CleaningSettings())
  assert result.keep.all() and not result.removed
  np.testing.assert_array_equal(result.label_map, [0, 1])
  assert not CleaningSettings().active and CleaningSettings(min_images=2).active


def near_duplicates():
  # Identities 0 and 1 nearly coincide (centres 4 deg apart); 2 and 3 are far away.
  e = angle_embeddings([0, 2, 4, 4, 6, 90, 92, 180, 182, 184, 186])
  labels = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 3])
  return e, labels


def test_merge_threshold_joins_near_duplicate_identities():
  e, labels = near_duplicates()
  result = cleaning.clean(e, labels, 4, CleaningSettings(merge_threshold=0.99))
  assert result.keep.all()
  np.testing.assert_array_equal(result.label_map, [0, 0, 1, 2])  # 1 joins 0, the rest renumbered
  assert result.merged == {0: [0, 1]}
  assert result.num_classes == 3


def test_merging_pairs_mutual_nearest_identities_without_chains():
  # Centres at 0, 3.5 and 6 deg: all within 0.99 of a neighbour, but only 1 and 2 (2.5 deg
  # apart) are each other's nearest; a chain would glue all three.
  e = angle_embeddings([0, 0, 3.5, 3.5, 6, 6, 90, 90])
  labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
  result = cleaning.clean(e, labels, 4, CleaningSettings(merge_threshold=0.99))
  np.testing.assert_array_equal(result.label_map, [0, 1, 1, 2])
  assert result.merged == {1: [1, 2]}


def test_drop_keeps_the_largest_identity_of_a_group():
  e, labels = near_duplicates()
  result = cleaning.clean(e, labels, 4, CleaningSettings(merge_threshold=0.99,
                                                           duplicate_action="drop"))
  assert {r["index"] for r in result.removed} == {3, 4}  # identity 1 (2 images < 3)
  assert all("near-duplicate identity of label 0" in r["reason"] for r in result.removed)
  np.testing.assert_array_equal(result.label_map, [0, -1, 1, 2])


def test_min_images_drops_small_identities_after_the_other_rules():
  e, labels = near_duplicates()
  result = cleaning.clean(e, labels, 4, CleaningSettings(min_images=3))
  assert {r["index"] for r in result.removed} == {3, 4, 5, 6}  # identities 1 and 2
  np.testing.assert_array_equal(result.label_map, [0, -1, -1, 1])
  # Merged first, identity 0 + 1 has 5 images and survives min_images=5; 3 has 4 and goes.
  merged = cleaning.clean(e, labels, 4, CleaningSettings(merge_threshold=0.99, min_images=5))
  np.testing.assert_array_equal(merged.label_map, [0, 0, -1, -1])
  assert merged.summary()["removed_by_rule"] == {"min_images": 6}


def test_apply_relabels_val_and_test_and_drops_removed_identities():
  e, labels = near_duplicates()
  images = np.arange(len(labels), dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3),
                                                                                np.uint8)
  val = LabelledImages(images[:4], np.array([0, 1, 2, 3], np.int32))
  pairs = VerificationPairs(images[:2], np.array([[0, 1]]), np.array([True]), 1)
  dataset = FaceDataset("toy", LabelledImages(images, labels.astype(np.int32)), val, val, 4, pairs)
  result = cleaning.clean(e, labels, 4, CleaningSettings(merge_threshold=0.99, min_images=3))
  cleaned = cleaning.apply(dataset, result)
  assert cleaned.num_classes == 2
  np.testing.assert_array_equal(cleaned.train.labels, [0, 0, 0, 0, 0, 1, 1, 1, 1])
  np.testing.assert_array_equal(cleaned.val.labels, [0, 0, 1])  # identity 2 dropped
  assert cleaned.pairs is dataset.pairs
  assert cleaned.report["cleaning"]["removed_images"] == 2


def test_proxy_embeddings_are_found_by_pixels_and_missing_images_name_the_flag(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
  vectors = rng.standard_normal((6, 3)).astype(np.float32)
  path = str(tmp_path / "proxy.npz")
  cleaning.ProxyEmbeddings(keys.pixel_hashes(images), vectors, "test").save(path)
  loaded = cleaning.ProxyEmbeddings.load(path)
  order = [4, 0, 2]
  np.testing.assert_array_equal(loaded.lookup(images[order]), vectors[order])
  other = images.copy()
  other[1, 0, 0, 0] ^= 1  # one pixel differs: another image
  with pytest.raises(ConfigError, match="--cleaning_embeddings=.*1 of 6 training images"):
    loaded.lookup(other)
  with pytest.raises(ConfigError, match="--cleaning_embeddings=.*no such file"):
    cleaning.ProxyEmbeddings.load(str(tmp_path / "missing.npz"))


def test_a_cleaning_that_leaves_one_identity_is_degenerate(tmp_path):
  e, labels = near_duplicates()
  images = (np.arange(len(labels), dtype=np.uint8)[:, None, None, None]
            * np.ones((1, 2, 2, 3), np.uint8))
  path = str(tmp_path / "proxy.npz")
  cleaning.ProxyEmbeddings(keys.pixel_hashes(images), e, "test").save(path)
  part = LabelledImages(images, labels.astype(np.int32))
  pairs = VerificationPairs(images[:2], np.array([[0, 1]]), np.array([True]), 1)
  dataset = FaceDataset("toy", part, part, part, 4, pairs)
  cleaned, result = cleaning.clean_dataset(dataset, CleaningSettings(min_images=3), path)
  assert cleaned.num_classes == 2 and result.summary()["classes_after"] == 2
  with pytest.raises(cleaning.DegenerateCleaning, match="leaves 1 identities"):
    cleaning.clean_dataset(dataset, CleaningSettings(min_images=4), path)


def test_settings_reject_bad_values():
  with pytest.raises(ValueError, match="duplicate_action"):
    CleaningSettings(duplicate_action="keep")
  with pytest.raises(ValueError, match="min_images"):
    CleaningSettings(min_images=0)
  with pytest.raises(ValueError, match="outlier_threshold"):
    CleaningSettings(outlier_threshold=1.5)
  with pytest.raises(ValueError, match="unknown cleaning settings"):
    CleaningSettings.from_json({"outlier": 0.3})
