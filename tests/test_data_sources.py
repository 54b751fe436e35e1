"""--dataset / --pairs parsing and the real-data assembly (no real data needed)."""
import numpy as np
import pytest

from enas_face.config import ConfigError, DataConfig
from enas_face.data import real, sources


def test_dataset_specs(tmp_path):
  assert sources.parse_dataset_spec("synthetic") == sources.DatasetSpec("synthetic")
  assert sources.parse_dataset_spec(f"folder:{tmp_path}").path == str(tmp_path)
  (tmp_path / "manifest.json").write_text("{}")
  assert sources.parse_dataset_spec(f"tfrecord:{tmp_path}").kind == "tfrecord"
  (tmp_path / "train.rec").write_bytes(b"")
  (tmp_path / "train.idx").write_text("")
  spec = sources.parse_dataset_spec(f"insightface:{tmp_path}")
  assert spec.path.endswith("train.rec") and spec.index_path.endswith("train.idx")


@pytest.mark.parametrize("value, expected", [
    ("imagenet", "unknown kind 'imagenet'"),
    ("folder:", "missing the path"),
    ("folder:/no/such/dir", "/no/such/dir is not a folder"),
    ("synthetic:/x", "takes no path"),
])
def test_bad_dataset_specs_name_the_flag(value, expected):
  with pytest.raises(ConfigError, match="--dataset") as error:
    sources.parse_dataset_spec(value)
  assert expected in str(error.value)


def test_tfrecord_without_manifest_and_rec_without_index(tmp_path):
  with pytest.raises(ConfigError, match="manifest.json"):
    sources.parse_dataset_spec(f"tfrecord:{tmp_path}")
  (tmp_path / "train.rec").write_bytes(b"")
  with pytest.raises(ConfigError, match="train.idx"):
    sources.parse_dataset_spec(f"insightface:{tmp_path / 'train.rec'}")


def test_pairs_specs(tmp_path):
  pairs = tmp_path / "pairs.txt"
  pairs.write_text("1\nA 1 2\nA 1 B 1\n")
  assert sources.parse_pairs_spec("") is None
  spec = sources.parse_pairs_spec(f"lfw:{pairs},{tmp_path}")
  assert (spec.kind, spec.path, spec.images_dir) == ("lfw", str(pairs), str(tmp_path))
  for value, expected in [(f"lfw:{pairs}", "PAIRS_TXT,IMAGES_DIR"),
                          (f"lfw:{pairs},/no/dir", "/no/dir"),
                          ("bin:/no/lfw.bin", "/no/lfw.bin"), ("cfp:x", "unknown kind")]:
    with pytest.raises(ConfigError, match="--pairs") as error:
      sources.parse_pairs_spec(value)
    assert expected in str(error.value)


def test_order_by_fold_balances_view1_and_keeps_view2():
  view1 = np.array([True] * 50 + [False] * 50)
  ordered = view1[real.order_by_fold(view1, 10)]
  for fold in ordered.reshape(10, 10):
    assert fold.sum() == 5
  view2 = np.concatenate([[True] * 3 + [False] * 3 for _ in range(10)])
  np.testing.assert_array_equal(real.order_by_fold(view2, 10), np.arange(60))


def test_fit_square_crops_the_centre():
  image = np.zeros((120, 80, 3), np.uint8)
  image[20:100] = 255  # the central 80x80 square is white, the rest black
  out = real.fit_square(image, 40)
  assert out.shape == (40, 40, 3) and out.min() == 255


def _collection(counts, names=None, size=8):
  labels = np.repeat(np.arange(len(counts)), counts)
  images = np.random.default_rng(0).integers(0, 255, (len(labels), size, size, 3), np.uint8)
  names = names or [f"id{i}" for i in range(len(counts))]
  return real.LabelledCollection(images, labels, names, [f"{i}.png" for i in range(len(labels))],
                                 {"rejects": [], "num_rejects": 0})


def test_assemble_filters_identities_and_holds_out_pairs():
  counts = [6] * 10 + [2, 0]  # id10 has too few images, id11 none
  config = DataConfig(dataset="folder:x", image_size=8, min_images_per_identity=3,
                      heldout_fraction=0.2, num_pairs=20, num_folds=2)
  dataset = real.assemble(_collection(counts), config, "test")
  assert dataset.report["identities_below_min_images"] == 1
  assert len(dataset.report["heldout_identities"]) == 2
  assert dataset.num_classes == 8
  assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 8 * 6
  assert len(dataset.pairs) == 20 and dataset.pairs.images.shape[0] == 12
  assert set(dataset.report["class_names"]).isdisjoint(dataset.report["heldout_identities"])


def test_assemble_excludes_identities_named_in_the_pairs():
  config = DataConfig(dataset="folder:x", image_size=8, min_images_per_identity=3)
  pairs = real.ordered_pairs(np.zeros((4, 8, 8, 3), np.uint8), np.array([[0, 1], [2, 3]]),
                             np.array([True, False]), 1)
  dataset = real.assemble(_collection([5, 5, 5, 5]), config, "test", pairs,
                          frozenset({"id1", "id3"}))
  assert dataset.report["class_names"] == ["id0", "id2"]
  assert dataset.report["identities_in_pairs_excluded"] == 2
  kept = real.assemble(_collection([5, 5, 5, 5]),
                       DataConfig(dataset="folder:x", exclude_pair_identities=False), "test",
                       pairs, frozenset({"id1", "id3"}))
  assert kept.num_classes == 4


def test_assemble_explains_too_few_identities():
  config = DataConfig(dataset="folder:x", image_size=8, heldout_fraction=0.5, num_pairs=4,
                      num_folds=2)
  with pytest.raises(ConfigError, match="identities"):
    real.assemble(_collection([5, 5, 5]), config, "test")
