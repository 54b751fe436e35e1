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
  assert sources.parse_pairs_spec("") == []
  [spec] = sources.parse_pairs_spec(f"lfw:{pairs},{tmp_path}")
  assert (spec.kind, spec.path, spec.images_dir) == ("lfw", str(pairs), str(tmp_path))
  for value, expected in [(f"lfw:{pairs}", "PAIRS_TXT,IMAGES_DIR"),
                          (f"lfw:{pairs},/no/dir", "/no/dir"),
                          ("bin:/no/lfw.bin", "/no/lfw.bin"), ("cfp:x", "unknown kind")]:
    with pytest.raises(ConfigError, match="--pairs") as error:
      sources.parse_pairs_spec(value)
    assert expected in str(error.value)


def test_several_pairs_sets_split_on_kind_tokens_with_unique_names(tmp_path):
  (tmp_path / "a").mkdir()
  bins = [tmp_path / "lfw.bin", tmp_path / "cfp_fp.bin", tmp_path / "a" / "lfw.bin"]
  for path in bins:
    path.write_bytes(b"")
  pairs = tmp_path / "pairsDevTest.txt"
  pairs.write_text("1\nA 1 2\nA 1 B 1\n")
  value = f"bin:{bins[0]},lfw:{pairs},{tmp_path},bin:{bins[1]},bin:{bins[2]},bin:{bins[0]}"
  specs = sources.parse_pairs_spec(value)
  assert [s.name for s in specs] == ["lfw", "pairsDevTest", "cfp_fp", "lfw_2", "lfw_3"]
  assert [s.kind for s in specs] == ["bin", "lfw", "bin", "bin", "bin"]
  assert specs[1].images_dir == str(tmp_path)  # the comma inside lfw: stayed inside
  assert ",".join(s.value() for s in specs) == value  # round trip (absolute paths)
  for bad, expected in [(f"bin:{bins[0]},cfp:x.bin", "unknown kind 'cfp'"),
                        (f"bin:{bins[0]},lfw:{pairs}", "PAIRS_TXT,IMAGES_DIR"),
                        (f"bin:{bins[0]},bin:/no/agedb_30.bin", "/no/agedb_30.bin")]:
    with pytest.raises(ConfigError, match="--pairs") as error:
      sources.parse_pairs_spec(bad)
    assert expected in str(error.value)


def _random_image(rng, size=20):
  return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_two_bin_sets_load_into_pair_sets(tmp_path):
  """--pairs=bin:A,bin:B: A is dataset.pairs, both are in dataset.pair_sets, in order."""
  import cv2
  from enas_face.data import load_dataset, verification_files
  rng = np.random.default_rng(0)
  for identity in range(4):
    (tmp_path / "train" / f"id{identity}").mkdir(parents=True)
    for k in range(5):
      cv2.imwrite(str(tmp_path / "train" / f"id{identity}" / f"{k}.png"), _random_image(rng))
  sizes = {"lfw": 10, "agedb_30": 20}
  for name, num_pairs in sizes.items():
    encoded = [cv2.imencode(".png", _random_image(rng))[1].tobytes()
               for _ in range(2 * num_pairs)]
    verification_files.save_bin(str(tmp_path / f"{name}.bin"), encoded,
                                [True, False] * (num_pairs // 2))
  config = DataConfig(dataset=f"folder:{tmp_path / 'train'}", image_size=16, num_folds=5,
                      pairs=f"bin:{tmp_path / 'lfw.bin'},bin:{tmp_path / 'agedb_30.bin'}")
  dataset = load_dataset(config)
  assert list(dataset.pair_sets) == ["lfw", "agedb_30"]
  assert dataset.pairs is dataset.pair_sets["lfw"]
  assert {name: len(p) for name, p in dataset.pair_sets.items()} == sizes
  assert dataset.pair_sets["agedb_30"].images.shape == (40, 16, 16, 3)
  assert dataset.num_classes == 4  # .bin sets name no identities: nothing excluded


def test_default_pair_set_is_the_heldout_pairs():
  from enas_face.data.base import FaceDataset, LabelledImages, VerificationPairs
  images = LabelledImages(np.zeros((2, 4, 4, 3), np.uint8), np.zeros(2, np.int32))
  pairs = VerificationPairs(np.zeros((2, 4, 4, 3), np.uint8), np.array([[0, 1]]),
                            np.array([True]), 1)
  dataset = FaceDataset("x", images, images, images, 1, pairs)
  assert dataset.pair_sets == {"heldout": pairs}
  other = VerificationPairs(pairs.images, pairs.pairs, pairs.is_same, 1)
  with pytest.raises(ValueError, match="primary"):
    FaceDataset("x", images, images, images, 1, pairs, pair_sets={"a": other})


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
