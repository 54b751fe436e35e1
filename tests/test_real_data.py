"""Real faces through --dataset / --pairs: ORL via folder:, an LFW subset via lfw:
pairs, MTCNN alignment online with its cache, InsightFace .rec and .bin files.

Uses ../shared/data (the `shared_data` fixture): skipped outside CI when it is
absent, failed in CI.
"""
import json
import os
import shutil
import tarfile

import cv2
import numpy as np
import pytest

from enas_face.config import ConfigError, DataConfig
from enas_face.data import load_dataset, online, recordio, verification_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRS_PER_CLASS = 30  # the first 30 same and first 30 different pairs of pairsDevTest


@pytest.fixture(scope="module")
def orl(shared_data):
  return os.path.join(shared_data, "orl_faces")


@pytest.fixture(scope="module")
def lfw_subset(shared_data, tmp_path_factory):
  """A pairs file of 60 pairsDevTest pairs, their images, and 8 other LFW identities
  with >= 6 images each (training data), extracted from the archive."""
  root = tmp_path_factory.mktemp("lfw")
  with open(os.path.join(shared_data, "lfw", "pairsDevTest.txt")) as f:
    lines = f.read().splitlines()
  chosen = lines[1:1 + PAIRS_PER_CLASS] + lines[501:501 + PAIRS_PER_CLASS]
  pairs_path = root / "pairs.txt"
  pairs_path.write_text("\n".join(chosen) + "\n")  # no header line
  entries = verification_files.parse_lfw_pairs(str(pairs_path))
  in_pairs = verification_files.identities_in_pairs(entries)
  wanted = {verification_files.lfw_image_relpath(*side)
            for e in entries for side in (e.first, e.second)}
  archive = tarfile.open(os.path.join(shared_data, "lfw", "lfw-deepfunneled.tgz"))
  members = [m for m in archive.getmembers() if m.isfile()]
  counts = {}
  for m in members:
    counts.setdefault(m.name.split("/")[1], []).append(m)
  train_ids = sorted(n for n, ms in counts.items() if len(ms) >= 6 and n not in in_pairs)[:8]
  images_dir, train_dir = root / "images", root / "train"
  for m in members:
    identity, rel = m.name.split("/")[1], "/".join(m.name.split("/")[1:])
    targets = ([images_dir] if rel in wanted else []) + ([train_dir] if identity in train_ids else [])
    if targets:
      data = archive.extractfile(m).read()
      for target in targets:
        (target / identity).mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)
  # One pair identity also in the training folder, to check the exclusion.
  shutil.copytree(images_dir / entries[0].first[0], train_dir / entries[0].first[0])
  return {"pairs": str(pairs_path), "images": str(images_dir), "train": str(train_dir),
          "pair_identity": entries[0].first[0], "num_pair_images": len(wanted)}


def _orl_subset(orl, target, identities=6):
  for k in range(1, identities + 1):
    shutil.copytree(os.path.join(orl, f"s{k}"), target / f"s{k}")
  return target


def test_orl_folder_is_grayscale_made_rgb(orl):
  dataset = load_dataset(DataConfig(dataset=f"folder:{orl}", image_size=32, num_pairs=80,
                                    num_folds=10, heldout_fraction=0.1))
  report = dataset.report
  assert report["image_files"] == 400 and report["num_rejects"] == 0
  assert dataset.num_classes == 36 and len(report["heldout_identities"]) == 4
  train = dataset.train.images
  assert train.shape[1:] == (32, 32, 3)
  np.testing.assert_array_equal(train[..., 0], train[..., 2])  # grey in all channels
  assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 360


def test_bad_files_are_reported_not_dropped(orl, tmp_path):
  root = _orl_subset(orl, tmp_path / "faces", identities=4)
  good = cv2.imencode(".jpg", np.full((40, 40, 3), 128, np.uint8))[1].tobytes()
  (root / "s1" / "truncated.jpg").write_bytes(good[:len(good) // 2])
  (root / "s2" / "text.png").write_text("not an image")
  (root / "s3" / "notes.txt").write_text("ignored")
  (root / "empty_person").mkdir()
  dataset = load_dataset(DataConfig(dataset=f"folder:{root}", image_size=16, num_pairs=20,
                                    num_folds=2, heldout_fraction=0.5))
  report = dataset.report
  rejects = {r["path"]: r["reason"] for r in report["rejects"]}
  assert set(rejects) == {"s1/truncated.jpg", "s2/text.png"}
  assert "truncated" in rejects["s1/truncated.jpg"] or "corrupt" in rejects["s1/truncated.jpg"]
  assert report["empty_identities"] == ["empty_person"]
  assert report["ignored_files"] == ["s3/notes.txt"]
  assert report["image_files"] == 42
  used = len(dataset.train) + len(dataset.val) + len(dataset.test) + len(dataset.pairs.images)
  assert used + report["num_rejects"] == report["image_files"]


def test_empty_dataset_folder_fails_clearly(tmp_path):
  (tmp_path / "nobody").mkdir()
  with pytest.raises(ConfigError, match="no image files"):
    load_dataset(DataConfig(dataset=f"folder:{tmp_path}"))


def test_lfw_pairs_subset(lfw_subset):
  config = DataConfig(dataset=f"folder:{lfw_subset['train']}", image_size=32,
                      pairs=f"lfw:{lfw_subset['pairs']},{lfw_subset['images']}", num_folds=10)
  dataset = load_dataset(config)
  pairs = dataset.pairs
  assert len(pairs) == 2 * PAIRS_PER_CLASS
  assert pairs.images.shape == (lfw_subset["num_pair_images"], 32, 32, 3)
  for fold in pairs.is_same.reshape(10, -1):  # View 1 lists same pairs first: re-folded
    assert fold.sum() == len(fold) // 2
  assert dataset.num_classes == 8  # the pair identity copied into train/ is excluded
  assert lfw_subset["pair_identity"] not in dataset.report["class_names"]
  assert dataset.report["identities_in_pairs_excluded"] == 1


def test_lfw_pairs_naming_missing_images_fail_with_the_list(lfw_subset, tmp_path):
  images = tmp_path / "images"
  shutil.copytree(lfw_subset["images"], images)
  removed = sorted(os.listdir(images))[:2]
  expected = []
  for identity in removed:
    expected += [f"{identity}/{n}" for n in os.listdir(images / identity)]
    shutil.rmtree(images / identity)
  config = DataConfig(dataset=f"folder:{lfw_subset['train']}", image_size=16,
                      pairs=f"lfw:{lfw_subset['pairs']},{images}")
  with pytest.raises(ConfigError, match="--pairs=lfw:") as error:
    load_dataset(config)
  for relpath in expected:
    assert relpath in str(error.value)


class CountingAligner:
  """An online aligner that counts detector calls (wrapping the real MTCNN one)."""

  def __init__(self, aligner):
    self.inner, self.calls, self.size = aligner, 0, aligner.size

  def align_or_fallback(self, image):
    self.calls += 1
    return self.inner.align_or_fallback(image)


def test_online_alignment_is_cached(orl, tmp_path):
  from enas_face.data import align
  root = _orl_subset(orl, tmp_path / "faces", identities=2)
  relpaths = sorted(f"{d}/{n}" for d in os.listdir(root) for n in os.listdir(root / d))
  config = DataConfig(image_size=32, cache_dir=str(tmp_path / "cache"))
  aligner = CountingAligner(align.FaceAligner(size=32))
  first = online.align_files(str(root), relpaths, config, aligner)
  assert aligner.calls == 20
  aligned = [image for image, _, _ in first if image is not None]
  print(f"MTCNN aligned {len(aligned)}/20 ORL faces")
  assert len(aligned) >= 18 and aligned[0].shape == (32, 32, 3)
  second = online.align_files(str(root), relpaths, config, aligner)
  assert aligner.calls == 20  # read from the cache, no detection
  for (a, sa, ra), (b, sb, rb) in zip(first, second):
    assert (sa, ra) == (sb, rb) and (a is None) == (b is None)
    if a is not None:
      np.testing.assert_array_equal(a, b)
  os.utime(root / relpaths[0], ns=(1, 1))  # a changed file invalidates the cache
  online.align_files(str(root), relpaths, config, aligner)
  assert aligner.calls == 40


def test_insightface_rec_and_bin(orl, tmp_path):
  samples = []
  for label in range(5):
    for k in range(1, 6):
      image = cv2.imread(os.path.join(orl, f"s{label + 1}", f"{k}.pgm"))
      samples.append((label, cv2.imencode(".jpg", image)[1].tobytes()))
  rec = tmp_path / "train.rec"
  recordio.write_insightface(str(rec), samples)
  bin_path = tmp_path / "orl.bin"
  verification_files.save_bin(str(bin_path), [data for _, data in samples[:20]],
                              [True, False] * 5)
  config = DataConfig(dataset=f"insightface:{tmp_path}", image_size=16,
                      pairs=f"bin:{bin_path}", num_folds=5)
  dataset = load_dataset(config)
  assert dataset.num_classes == 5 and len(dataset.train) + len(dataset.val) + len(
      dataset.test) == 25
  assert len(dataset.pairs) == 10 and dataset.pairs.images.shape == (20, 16, 16, 3)
  # An index that disagrees with the .rec is an error naming the files.
  index = (tmp_path / "train.idx").read_text().splitlines()
  key, offset = index[3].split("\t")
  index[3] = f"{key}\t{int(offset) + 4}"
  (tmp_path / "train.idx").write_text("\n".join(index) + "\n")
  with pytest.raises(ConfigError, match="--dataset=insightface:.*train.rec"):
    load_dataset(config)


@pytest.mark.slow
def test_orl_trains_and_verifies_through_the_cli(orl, main_in_process, tmp_path):
  run_dir = tmp_path / "run"
  result = main_in_process(
      "--mode=fixed", f"--dataset=folder:{orl}", f"--run_dir={run_dir}", "--image_size=32",
      "--num_layers=4", "--num_reductions=2", "--base_filters=16", "--embedding_dim=64",
      "--epochs=6", "--warmup_epochs=1", "--batch_size=32", "--num_pairs=80",
      "--heldout_fraction=0.1", "--pca_components=16")
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((run_dir / "metrics.json").read_text())
  report = json.loads((run_dir / "data_report.json").read_text())
  print(f"ORL 6 epochs: verification {metrics['verification_accuracy']:.3f} vs PCA "
        f"{metrics['pca_baseline_verification_accuracy']:.3f}")
  assert report["train_identities"] == 36 and report["num_rejects"] == 0
  assert metrics["verification_accuracy"] > 0.6  # chance is 0.5
  assert metrics["identification_top1"] > 1 / 36


def test_aligned_tfrecord_folder_serves_training_and_lfw_pairs(lfw_subset, tmp_path):
  """The View 1 recipe's wiring: --dataset=tfrecord:DIR --pairs=lfw:PAIRS,DIR."""
  from enas_face.data import folder, images as image_io, real, tfrecord
  records = []
  for root in (lfw_subset["images"], lfw_subset["train"]):
    listing = folder.scan_folder(root)
    for _, relpath in listing.files:
      records.append((relpath, real.fit_square(image_io.read_image(os.path.join(root, relpath)), 32)))
  records = sorted(dict(records).items())
  names = sorted({relpath.split("/")[0] for relpath, _ in records})
  aligned = tmp_path / "aligned"
  tfrecord.write_arrays(str(aligned), np.stack([image for _, image in records]),
                        [names.index(relpath.split("/")[0]) for relpath, _ in records],
                        [relpath for relpath, _ in records], names, image_format="png")
  config = DataConfig(dataset=f"tfrecord:{aligned}", image_size=16, min_images_per_identity=4,
                      pairs=f"lfw:{lfw_subset['pairs']},{aligned}", num_folds=10)
  dataset = load_dataset(config)
  assert len(dataset.pairs) == 2 * PAIRS_PER_CLASS
  assert dataset.pairs.images.shape == (lfw_subset["num_pair_images"], 16, 16, 3)
  assert set(dataset.report["class_names"]).isdisjoint(
      verification_files.identities_in_pairs(
          verification_files.parse_lfw_pairs(lfw_subset["pairs"])))
  assert dataset.num_classes == 8
