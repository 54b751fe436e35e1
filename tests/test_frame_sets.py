"""Set data (--sets): folders of videos and photos, the identity split, degraded frames, exclusions."""
from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np
import pytest

from enas_face.config import ConfigError, DataConfig, SetConfig
from enas_face.data import frame_sets, synthetic


def _write(path, image):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  cv2.imwrite(path, image[..., ::-1])


@pytest.fixture()
def video_folder(tmp_path):
  """3 people: p0 has videos v0 (5 frames), v1 (3) and 4 loose photos; p1 videos a, b (4 each) with
  one unreadable frame in b; p2 one video c whose only frame is unreadable."""
  faces = synthetic.render_identity(7, 30, 32, 0)
  root = tmp_path / "frames"
  count = 0

  def frames(rel, n):
    nonlocal count
    for k in range(n):
      _write(str(root / rel / f"{k:03d}.png"), faces[count % 30])
      count += 1
  frames("p0/v0", 5)
  frames("p0/v1", 3)
  frames("p0", 4)
  frames("p1/a", 4)
  frames("p1/b", 3)
  (root / "p1" / "b" / "zz_broken.jpg").write_bytes(b"not an image")
  os.makedirs(root / "p2" / "c")
  (root / "p2" / "c" / "000.jpg").write_bytes(b"broken")
  return str(root)


def test_folder_videos_are_sets_and_loose_images_are_cut(video_folder):
  config = SetConfig(sets=f"folder:{video_folder}", set_size=2, degraded_fraction=0.0)
  sets = frame_sets.load_sets(config, DataConfig(image_size=32), seed=0)
  assert sets.identity_names == ["p0", "p1", "p2"]
  # p0: v0, v1 and 4 loose images cut into 2 sets of 2; p1: a and b; p2: its video has no frame.
  assert list(sets.set_labels) == [0, 0, 0, 0, 1, 1]
  assert sorted(sets.sizes().tolist()) == [2, 2, 3, 3, 4, 5]
  assert sets.frames.shape == (19, 32, 32, 3)
  assert sets.report["excluded_frames"] == 2
  assert {e["path"] for e in sets.report["exclusions"]} == {"p1/b/zz_broken.jpg", "p2/c/000.jpg"}
  assert sets.report["dropped_sets"] == 1 and sets.report["sets_without_frames"] == ["p2/c"]
  assert sets.degradation is None


def test_degraded_fraction_degrades_that_share_of_each_real_set(video_folder):
  config = SetConfig(sets=f"folder:{video_folder}", set_size=2, degraded_fraction=0.5)
  clean = frame_sets.load_sets(dataclasses.replace(config, degraded_fraction=0.0),
                               DataConfig(image_size=32), seed=0)
  sets = frame_sets.load_sets(config, DataConfig(image_size=32), seed=0)
  for k, size in enumerate(sets.sizes()):
    members = sets.set_ids == k
    assert np.count_nonzero(sets.degradation[members] > 0) == round(0.5 * size)
  changed = np.any(sets.frames != clean.frames, axis=(1, 2, 3))
  np.testing.assert_array_equal(changed, sets.degradation > 0)
  assert sets.degradation[sets.degradation > 0].min() >= 0.7


def test_split_is_by_identity_and_heldout_follows_a_pairs_file(tmp_path):
  config = SetConfig(sets="synthetic", set_size=4, synthetic_identities=10, videos_per_identity=2)
  sets = frame_sets.load_sets(config, DataConfig(image_size=32), seed=0)
  assert sets.num_sets == 20 and sets.frames.shape == (80, 32, 32, 3)
  train, heldout = frame_sets.split_sets(sets, config, seed=0)
  assert train.num_identities == heldout.num_identities == 5
  train_names = {train.identity_names[l] for l in train.set_labels}
  heldout_names = {heldout.identity_names[l] for l in heldout.set_labels}
  assert not train_names & heldout_names
  np.testing.assert_array_equal(np.unique(heldout.set_ids), np.arange(heldout.num_sets))
  # A pairs file names the held-out people.
  names = sets.identity_names
  pairs = tmp_path / "pairs.txt"
  pairs.write_text(f"2\n{names[1]}\t1\t2\n{names[3]}\t1\t2\n{names[1]}\t1\t{names[3]}\t1\n"
                   f"{names[3]}\t2\t{names[1]}\t2\n")
  held = dataclasses.replace(config, heldout=str(pairs))
  train, heldout = frame_sets.split_sets(sets, held, seed=0)
  assert {names[l] for l in heldout.set_labels} == {names[1], names[3]}
  assert train.num_identities == 8


def test_errors_name_the_flag(tmp_path):
  with pytest.raises(ConfigError, match="--sets="):
    frame_sets.parse_sets_spec("video:x")
  with pytest.raises(ConfigError, match="--sets="):
    frame_sets.parse_sets_spec(f"folder:{tmp_path}/missing")
  config = SetConfig(sets="synthetic", set_size=4, synthetic_identities=3, videos_per_identity=1)
  sets = frame_sets.load_sets(config, DataConfig(image_size=32), seed=0)
  with pytest.raises(ConfigError, match="2 or more sets"):
    frame_sets.split_sets(sets, config, seed=0)
  config = SetConfig(sets="synthetic", set_size=4, synthetic_identities=4, videos_per_identity=2,
                     num_pairs=1000)
  sets = frame_sets.load_sets(config, DataConfig(image_size=32), seed=0)
  _, heldout = frame_sets.split_sets(sets, config, seed=0)
  with pytest.raises(ConfigError, match="--set_pairs=1000"):
    frame_sets.set_pairs(heldout, config, num_folds=10, seed=0)


def test_a_frame_without_a_face_is_excluded_and_counted(shared_data, tmp_path):
  """--align=online on real frames (ORL person s1 as a 'video') plus a blank frame: MTCNN finds no
  face in the blank one, which is left out of its set and reported with the reason."""
  import shutil
  video = tmp_path / "frames" / "s1" / "clip"
  os.makedirs(video)
  for k in (1, 2, 3):
    shutil.copy(os.path.join(shared_data, "orl_faces", "s1", f"{k}.pgm"), video / f"{k}.pgm")
  cv2.imwrite(str(video / "9_blank.png"), np.full((112, 92, 3), 128, np.uint8))
  config = SetConfig(sets=f"folder:{tmp_path / 'frames'}", set_size=4, degraded_fraction=0.0)
  data = DataConfig(image_size=64, align="online", cache_dir=str(tmp_path / "cache"))
  sets = frame_sets.load_sets(config, data, seed=0)
  assert sets.frames.shape == (3, 64, 64, 3) and list(sets.sizes()) == [3]
  assert sets.report["excluded_frames"] == 1
  (exclusion,) = sets.report["exclusions"]
  assert exclusion["path"] == "s1/clip/9_blank.png" and "face" in exclusion["reason"]


def test_synthetic_videos_avoid_the_runs_identities_whatever_the_set_seed():
  """--set_seed other than the run's data seed: the videos still avoid every identity of the
  run's synthetic data (drawn with the data seed and the run's counts)."""
  data = DataConfig(image_size=32, synthetic_identities=7, synthetic_heldout_identities=3, seed=4)
  taken = set(np.concatenate(synthetic.identity_seeds(7, 3, 4)).tolist())
  config = SetConfig(sets="synthetic", set_size=2, synthetic_identities=5, videos_per_identity=2)
  for seed in (4, 9):
    sets = frame_sets.load_sets(config, data, seed=seed)
    seeds = {int(name.rsplit("_", 1)[1]) for name in sets.identity_names}
    assert len(seeds) == 5 and not seeds & taken
  other = frame_sets.load_sets(config, data, seed=9)
  assert other.identity_names != frame_sets.load_sets(config, data, seed=4).identity_names
