"""Aligned TFRecord folders: write, manifest, stream / load_arrays / lookup_images, errors."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from enas_face.data import tfrecord

NAMES = ["alice", "bob", "carol"]


def _faces(count: int, size: int, seed: int = 0) -> np.ndarray:
  """Smooth random faces (JPEG keeps them within a few grey levels)."""
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, (count, 4, 4, 3)).astype(np.float32)
  return np.stack([tf.image.resize(c, [size, size], "bilinear").numpy() for c in coarse]
                  ).round().astype(np.uint8)


@pytest.fixture
def tiny(tmp_path):
  """7 faces of 3 identities (carol has none), 16x16, PNG, 3 shards of <= 3."""
  images = _faces(7, 16)
  labels = [0, 0, 0, 1, 1, 1, 1]
  paths = [f"{NAMES[label]}/{NAMES[label]}_{i:04d}.jpg" for i, label in enumerate(labels)]
  folder = str(tmp_path / "aligned")
  manifest = tfrecord.write_arrays(folder, images, labels, paths, NAMES, image_format="png",
                                   images_per_shard=3, source="/data/faces")
  return folder, images, labels, paths, manifest


def test_manifest_round_trip_and_counts(tiny):
  folder, _, _, _, manifest = tiny
  read = tfrecord.read_manifest(folder)
  assert read == manifest
  assert read["format"] == "enas_face/aligned-tfrecord" and read["version"] == 1
  assert read["image_size"] == 16 and read["num_images"] == 7 and read["num_identities"] == 3
  assert read["identities"] == [{"name": "alice", "label": 0, "count": 3},
                                {"name": "bob", "label": 1, "count": 4},
                                {"name": "carol", "label": 2, "count": 0}]
  assert read["shards"] == ["part-00000.tfrecord", "part-00001.tfrecord", "part-00002.tfrecord"]
  assert tfrecord.tfrecord_files(folder) == [os.path.join(folder, s) for s in read["shards"]]
  assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]


def test_png_round_trip_is_exact_and_ordered(tiny):
  folder, images, labels, paths, _ = tiny
  got_images, got_labels, got_paths = tfrecord.load_arrays(folder)
  assert got_images.dtype == np.uint8 and got_images.shape == (7, 16, 16, 3)
  np.testing.assert_array_equal(got_images, images)
  assert got_labels.dtype == np.int32 and got_labels.tolist() == labels
  assert got_paths == paths
  image, label, path = next(iter(tfrecord.stream(folder)))
  assert image.dtype == tf.uint8 and label.dtype == tf.int32 and path.numpy().decode() == paths[0]


def test_parse_example_features(tiny):
  folder = tiny[0]
  record = next(iter(tf.data.TFRecordDataset(tfrecord.tfrecord_files(folder))))
  example = tfrecord.parse_example(record)
  assert example["label"].numpy() == 0 and example["size"].numpy() == 16
  assert example["identity"].numpy() == b"alice"
  assert example["path"].numpy() == b"alice/alice_0000.jpg"
  assert example["encoded"].numpy()[:4] == b"\x89PNG"


def test_jpeg_is_close_and_resize_on_read(tmp_path):
  images = _faces(4, 32, seed=1)
  folder = str(tmp_path / "jpeg")
  manifest = tfrecord.write_arrays(folder, images, [0, 1, 1, 2], [f"p{i}.jpg" for i in range(4)],
                                   NAMES, image_format="jpeg")
  assert manifest["shards"] == ["part-00000.tfrecord"]
  got, _, _ = tfrecord.load_arrays(folder)
  first = tf.data.TFRecordDataset(tfrecord.tfrecord_files(folder)).map(tfrecord.parse_example)
  assert next(iter(first))["encoded"].numpy()[:2] == b"\xff\xd8"
  error = np.abs(got.astype(np.int16) - images.astype(np.int16))
  assert error.mean() < 4.0 and error.max() < 64  # 4:2:0 chroma subsampling of random colours
  swapped = np.abs(got.astype(np.int16) - images[..., ::-1].astype(np.int16))
  assert swapped.mean() > 4 * error.mean()  # RGB stays RGB
  small, _, _ = tfrecord.load_arrays(folder, image_size=16)
  assert small.shape == (4, 16, 16, 3)
  # area interpolation halves 32 -> 16 by averaging 2x2 blocks
  expected = got.astype(np.float32).reshape(4, 16, 2, 16, 2, 3).mean(axis=(2, 4))
  assert np.abs(small - expected).max() <= 1.0
  large, _, _ = tfrecord.load_arrays(folder, image_size=48)
  assert large.shape == (4, 48, 48, 3)


def test_lookup_images_in_requested_order(tiny):
  folder, images, _, paths, _ = tiny
  got = tfrecord.lookup_images(folder, [paths[5], paths[0], paths[5]])
  np.testing.assert_array_equal(got, images[[5, 0, 5]])
  assert tfrecord.lookup_images(folder, [paths[2]], image_size=8).shape == (1, 8, 8, 3)


def test_lookup_images_lists_missing_paths(tiny):
  folder, _, _, paths, _ = tiny
  with pytest.raises(tfrecord.ManifestError, match=r"carol/carol_0001\.jpg") as info:
    tfrecord.lookup_images(folder, [paths[0], "carol/carol_0001.jpg"])
  assert "1 of the 2" in str(info.value)


def test_missing_shard_is_named(tiny):
  folder = tiny[0]
  os.remove(os.path.join(folder, "part-00001.tfrecord"))
  with pytest.raises(tfrecord.ManifestError, match="part-00001.tfrecord") as info:
    tfrecord.tfrecord_files(folder)
  assert "part-00000" not in str(info.value)
  with pytest.raises(tfrecord.ManifestError, match="part-00001.tfrecord"):
    tfrecord.load_arrays(folder)


def test_missing_or_invalid_manifest_names_the_folder(tmp_path):
  folder = str(tmp_path / "nothing")
  with pytest.raises(tfrecord.ManifestError, match="nothing is not a folder"):
    tfrecord.read_manifest(folder)
  os.makedirs(folder)
  with pytest.raises(tfrecord.ManifestError, match=f"{folder} has no manifest.json"):
    tfrecord.read_manifest(folder)
  path = os.path.join(folder, "manifest.json")
  with open(path, "w") as f:
    f.write("{not json")
  with pytest.raises(tfrecord.ManifestError, match="not a readable JSON manifest"):
    tfrecord.read_manifest(folder)
  with open(path, "w") as f:
    json.dump({"format": "something/else"}, f)
  with pytest.raises(tfrecord.ManifestError, match="manifest lacks"):
    tfrecord.read_manifest(folder)


def test_shard_writer_is_atomic(tmp_path):
  path = str(tmp_path / "part-00000.tfrecord")
  face = np.zeros((8, 8, 3), np.uint8)
  with pytest.raises(RuntimeError):
    with tfrecord.ShardWriter(path) as writer:
      writer.write(face, 0, "a", "a/1.jpg")
      assert os.path.exists(path + ".tmp") and not os.path.exists(path)
      raise RuntimeError("killed")
  assert os.listdir(tmp_path) == []
  with tfrecord.ShardWriter(path) as writer:
    writer.write(face, 0, "a", "a/1.jpg")
    writer.write(face, 0, "a", "a/2.jpg")
  assert os.listdir(tmp_path) == ["part-00000.tfrecord"] and writer.count == 2
  with pytest.raises(ValueError, match="square"):
    tfrecord.make_example(np.zeros((8, 6, 3), np.uint8), 0, "a", "a/1.jpg")
