"""Data cleaning from proxy embeddings (enas_face/data/cleaning.py) on hand-made embeddings."""
import os
import sys

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


# ------------------------------------------------------------------ a teacher as the proxy

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def bench_cleaning():
  sys.path.insert(0, BENCH)
  try:
    import bench_cleaning as module  # pylint: disable=import-outside-toplevel
    return module
  finally:
    sys.path.remove(BENCH)


def noisy_synthetic(**overrides):
  """A tiny synthetic dataset with 20 % of its training labels flipped (--label_noise)."""
  from enas_face.config import DataConfig
  from enas_face.data import load_dataset
  return load_dataset(DataConfig(**{**dict(
      image_size=16, synthetic_identities=10, synthetic_images_per_identity=10,
      synthetic_heldout_identities=4, synthetic_heldout_images_per_identity=4, num_pairs=20,
      num_folds=2, label_noise=0.2), **overrides}))


def true_labels(dataset) -> np.ndarray:
  truth = dataset.report["label_noise"]
  labels = dataset.train.labels.copy()
  labels[truth["label_noise_indices"]] = truth["true_labels"]
  return labels


def write_teacher(path: str, dataset, offset: float = 3.0, keep=None) -> None:
  """A teacher that knows each training image's true identity: e_i = p_{y_i} + 0.3 n_i + o,
  a shared direction o of length `offset` (as a real teacher's embeddings share one)."""
  from enas_face.data import teacher_files
  rng = np.random.default_rng(1)
  prototypes = rng.standard_normal((dataset.num_classes, 16))
  shared = offset * np.eye(16)[0] * np.sqrt(16)
  embeddings = (prototypes[true_labels(dataset)] + 0.3 * rng.standard_normal((len(dataset.train), 16))
                + shared)
  train = dataset.train
  writer = teacher_files.EmbeddingsWriter(path, teacher_files.header("oracle", "run", 16, {}))
  writer.append([teacher_files.record(k, "crop", e) for k, e in
                 list(zip(keys.image_keys(train.images, train.paths), embeddings))[:keep]])


def test_a_teacher_file_as_the_proxy_removes_mostly_flipped_labels(tmp_path):
  """--cleaning_embeddings=TEACHER.jsonl: training images found by their keys, the teacher's
  embeddings centred, and the outlier rule removes mostly the flipped images (precision and
  recall against report["label_noise"], as bench_cleaning computes them)."""
  dataset = noisy_synthetic()
  flipped = dataset.report["label_noise"]["label_noise_indices"]
  assert len(flipped) == round(0.2 * len(dataset.train)) == 16
  path = str(tmp_path / "teacher.jsonl")
  write_teacher(path, dataset)
  proxy = cleaning.load_embeddings(path)
  assert isinstance(proxy, cleaning.TeacherProxy)
  cleaned, result = cleaning.clean_dataset(dataset, CleaningSettings(outlier_threshold=0.5), path)
  removed = [r["index"] for r in result.removed]
  quality = bench_cleaning().removal_quality(dataset.report, removed)["label_noise"]
  assert quality["precision"] >= 0.9 and quality["recall"] >= 0.9, quality
  assert len(cleaned.train) == len(dataset.train) - len(removed)
  # centred as the proxy's .npz is: every unit row minus their mean, normalised again
  raw, _ = proxy.file.targets(dataset.train.images, None, "training images")
  np.testing.assert_allclose(proxy.split_embeddings(dataset.train),
                             cleaning.centred(raw), atol=1e-6)
  # without centring the shared direction hides the flips: nothing under 0.5
  assert not cleaning.clean(cleaning.unit(raw), dataset.train.labels, dataset.num_classes,
                            CleaningSettings(outlier_threshold=0.5)).removed


def test_a_teacher_file_without_some_training_images_names_the_flag_and_the_tool(tmp_path):
  dataset = noisy_synthetic()
  path = str(tmp_path / "partial.jsonl")
  write_teacher(path, dataset, keep=len(dataset.train) - 2)
  with pytest.raises(ConfigError, match=r"--cleaning_embeddings=.*partial.jsonl: 2 of 80 "
                                        r"training images have no teacher embedding.*"
                                        r"tools/teacher_embeddings.py .*--teacher_splits=train"):
    cleaning.clean_dataset(dataset, CleaningSettings(outlier_threshold=0.3), path)
  with pytest.raises(ConfigError, match="--cleaning_embeddings=.*not a teacher embeddings"):
    (tmp_path / "other.jsonl").write_text('{"epoch": 1}\n')
    cleaning.load_embeddings(str(tmp_path / "other.jsonl"))


def test_removal_quality_against_either_truth():
  quality = bench_cleaning().removal_quality(
      {"label_noise": {"label_noise_indices": [1, 2, 3, 4]},
       "synthetic_noise": {"label_noise_indices": [5], "outlier_indices": [6, 7]}},
      [2, 3, 6, 9])
  assert quality["label_noise"] == {"precision": 0.5, "recall": 0.5, "removed": 4, "noisy": 4,
                                    "hits": 2}
  assert quality["synthetic_noise"]["precision"] == 0.25
  assert quality["synthetic_noise"]["recall"] == pytest.approx(1 / 3)
  assert bench_cleaning().removal_quality({"label_noise": {"label_noise_indices": [1]}},
                                          [])["label_noise"]["precision"] is None


@pytest.mark.slow
def test_a_run_cleans_with_a_teacher_file(tmp_path, main_in_process):
  """--mode=fixed with a data_only recipe and --cleaning_embeddings=TEACHER.jsonl on the noisy
  synthetic data: the run's cleaning_manifest.json removed the flipped images of its
  data_report.json (bench_cleaning.removal_quality, as bench_comprehensive reports it)."""
  import json
  from enas_face import runlog
  path = str(tmp_path / "teacher.jsonl")
  write_teacher(path, noisy_synthetic())
  recipe = tmp_path / "recipe.json"
  recipe.write_text(json.dumps({"cleaning": {"outlier_threshold": 0.5},
                                "loss": {"head": "softmax"}}))
  run_dir = tmp_path / "run"
  result = main_in_process(
      "--mode=fixed", f"--run_dir={run_dir}", "--image_size=16", "--synthetic_identities=10",
      "--synthetic_images_per_identity=10", "--synthetic_heldout_identities=4",
      "--synthetic_heldout_images_per_identity=4", "--num_pairs=20", "--num_folds=2",
      "--label_noise=0.2", "--search_space=data_only", f"--arc_file={recipe}",
      f"--cleaning_embeddings={path}", "--num_layers=3", "--num_reductions=1",
      "--base_filters=4", "--embedding_dim=8", "--batch_size=16", "--epochs=1",
      "--warmup_epochs=0", "--eval_every=0", "--pca_components=8")
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  manifest = runlog.read_json(str(run_dir / runlog.CLEANING_MANIFEST))
  assert manifest["embeddings"] == path
  report = runlog.read_json(str(run_dir / runlog.DATA_REPORT))
  quality = bench_cleaning().removal_quality(report, [r["index"] for r in manifest["removed"]])
  assert quality["label_noise"]["precision"] >= 0.9 and quality["label_noise"]["recall"] >= 0.9
