"""tools/align_dataset.py: work list, rejects, manifest, resume, refusals, real MTCNN end to end.

Most tests inject `CropAligner` (centre crop + resize; a blank image has "no face") and
run inline, so they need no MTCNN; one slow test runs the command line with the real
MTCNN on 2 spawned worker processes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from enas_face.data import align as face_align
from enas_face.data import images as image_io
from enas_face.data import tfrecord
from enas_face.data.real import fit_square
from tools import align_dataset as tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "align_dataset.py")
LFW_MEMBERS = ["Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg",
               "Akhmed_Zakayev/Akhmed_Zakayev_0001.jpg", "Akhmed_Zakayev/Akhmed_Zakayev_0002.jpg",
               "Akhmed_Zakayev/Akhmed_Zakayev_0003.jpg", "Alan_Ball/Alan_Ball_0001.jpg",
               "Alan_Ball/Alan_Ball_0002.jpg"]
TRUNCATED = "Alan_Ball/Alan_Ball_9001_truncated.jpg"
NOT_AN_IMAGE = "Alan_Ball/Alan_Ball_9002_text.jpg"
BLANK = "Akhmed_Zakayev/Akhmed_Zakayev_9003_blank.png"
ORL = "orl_s1/1.pgm"
IMAGE_FILES = sorted(LFW_MEMBERS + [TRUNCATED, NOT_AN_IMAGE, BLANK, ORL])
IDENTITIES = ["Aaron_Peirsol", "Akhmed_Zakayev", "Alan_Ball", "Empty_Person", "orl_s1"]
DEFAULT_RETRIES = face_align.format_detect_retries(face_align.DEFAULT_DETECT_RETRIES)


class CropAligner:
  """Fake aligner: centre square crop + resize; a featureless image has no face (rejected,
  or its centre crop as a fallback with --on_no_face=center)."""
  calls = 0

  def __init__(self, settings):
    self.size = settings.image_size
    self.on_no_face = settings.on_no_face

  def align_or_fallback(self, image):
    type(self).calls += 1
    if image.std() < 1.0:
      if self.on_no_face == "center":
        return fit_square(image, self.size), "fallback", "no face detected"
      return None, "rejected", "no face detected"
    return fit_square(image, self.size), "aligned", ""


@pytest.fixture(scope="module")
def source(shared_data, tmp_path_factory) -> str:
  """5 identity folders: 7 LFW faces, a truncated JPEG, text named .jpg, a blank PNG, an
  ORL PGM, an empty identity, plus files the tool must ignore."""
  root = tmp_path_factory.mktemp("faces") / "input"
  wanted = {"lfw-deepfunneled/" + member for member in LFW_MEMBERS}
  with tarfile.open(os.path.join(shared_data, "lfw", "lfw-deepfunneled.tgz")) as archive:
    for member in archive:
      if member.name in wanted:
        target = root / member.name.split("/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(archive.extractfile(member).read())
        wanted.discard(member.name)
        if not wanted:
          break
  assert not wanted, f"not in the LFW archive: {wanted}"
  jpeg = (root / LFW_MEMBERS[5]).read_bytes()
  (root / TRUNCATED).write_bytes(jpeg[:len(jpeg) // 3])
  (root / NOT_AN_IMAGE).write_text("this is not a JPEG\n")
  Image.new("RGB", (200, 200), (128, 128, 128)).save(root / BLANK)
  (root / "orl_s1").mkdir()
  shutil.copy(os.path.join(shared_data, "orl_faces", "s1", "1.pgm"), root / ORL)
  (root / "Empty_Person").mkdir()
  (root / "Empty_Person" / "readme.txt").write_text("no pictures\n")
  (root / "Akhmed_Zakayev" / "notes.txt").write_text("ignored\n")
  (root / "Akhmed_Zakayev" / ".DS_Store").write_bytes(b"\0")
  (root / ".thumbnails").mkdir()
  (root / ".thumbnails" / "x.jpg").write_bytes(jpeg)
  return str(root)


def _run(source: str, output: str, aligner=CropAligner, **overrides) -> dict:
  settings = tool.Settings(input_dir=source, **{"images_per_shard": 3, **overrides})
  return tool.align_dataset(settings, output, workers=1, aligner_factory=aligner, progress=False)


def _without_seconds(manifest: dict) -> dict:
  return {key: value for key, value in manifest.items() if key != "seconds"}


def test_manifest_accounts_for_every_file(source, tmp_path):
  output = str(tmp_path / "out")
  manifest = _run(source, output)
  assert tfrecord.read_manifest(output) == manifest
  assert manifest["identities"] == [
      {"name": "Aaron_Peirsol", "label": 0, "count": 2, "aligned": 2, "fallback": 0, "rejected": 0},
      {"name": "Akhmed_Zakayev", "label": 1, "count": 3, "aligned": 3, "fallback": 0,
       "rejected": 1},
      {"name": "Alan_Ball", "label": 2, "count": 2, "aligned": 2, "fallback": 0, "rejected": 2},
      {"name": "Empty_Person", "label": 3, "count": 0, "aligned": 0, "fallback": 0, "rejected": 0},
      {"name": "orl_s1", "label": 4, "count": 1, "aligned": 1, "fallback": 0, "rejected": 0}]
  assert (manifest["num_aligned"], manifest["num_fallback"], manifest["fallbacks"]) == (8, 0, [])
  assert (manifest["detect_padding"], manifest["on_no_face"]) == (0.2, "reject")
  assert manifest["detect_retries"] == DEFAULT_RETRIES
  assert manifest["num_identities"] == 5 and manifest["empty_identities"] == ["Empty_Person"]
  reasons = {r["path"]: r["reason"] for r in manifest["rejects"]}
  assert sorted(reasons) == sorted([TRUNCATED, NOT_AN_IMAGE, BLANK])
  assert reasons[TRUNCATED].startswith("truncated or corrupt image")
  assert reasons[NOT_AN_IMAGE] == "not an image"
  assert reasons[BLANK] == "no face detected"
  assert manifest["num_images"] + manifest["num_rejects"] == len(IMAGE_FILES) == 11
  assert manifest["num_ignored_files"] == 2  # notes.txt, readme.txt; hidden files not counted
  assert manifest["shards"] == [f"part-{k:05d}.tfrecord" for k in range(4)]
  assert tool.reject_categories(manifest["rejects"]) == {
      "truncated or corrupt image": 1, "not an image": 1, "no face detected": 1}

  images, labels, paths = tfrecord.load_arrays(output)
  assert images.shape == (8, 112, 112, 3)
  assert paths == [p for p in IMAGE_FILES if p not in reasons]
  assert labels.tolist() == [IDENTITIES.index(p.split("/")[0]) for p in paths]
  orl = tfrecord.lookup_images(output, [ORL])[0]  # grayscale PGM -> 3 equal channels
  assert np.abs(orl[..., 0].astype(int) - orl[..., 2]).max() <= 3
  assert not [n for n in os.listdir(output) if n.endswith(".tmp")]


def test_no_detect_resizes_and_keeps_blank_images(source, tmp_path):
  output = str(tmp_path / "out")
  manifest = _run(source, output, aligner=tool.make_aligner, no_detect=True, image_size=64,
                  image_format="png")
  assert manifest["aligned"] is False and manifest["policy"] is None
  assert manifest["num_images"] == 9 and manifest["num_rejects"] == 2
  stored = tfrecord.lookup_images(output, [LFW_MEMBERS[0]])[0]
  expected = fit_square(image_io.read_image(os.path.join(source, LFW_MEMBERS[0])), 64)
  np.testing.assert_array_equal(stored, expected)  # PNG: lossless


def test_resume_redoes_only_unfinished_chunks(source, tmp_path):
  output = str(tmp_path / "out")
  CropAligner.calls = 0
  first = _run(source, output, images_per_shard=2)
  assert len(first["shards"]) == 6 and CropAligner.calls == 9  # 11 files - 2 undecodable
  shards = [os.path.join(output, name) for name in first["shards"]]
  mtimes = [os.stat(path).st_mtime_ns for path in shards]
  # A run killed inside chunk 2 and inside chunk 5 (the last): no JSON, a partial .tmp shard.
  for k in (2, 5):
    os.remove(tool.chunk_json_path(output, k))
    os.remove(shards[k])
    with open(shards[k] + ".tmp", "wb") as f:
      f.write(b"partial")
  os.remove(os.path.join(output, "manifest.json"))
  CropAligner.calls = 0
  second = _run(source, output, images_per_shard=2)
  assert CropAligner.calls == 3  # chunk 2: Akhmed_Zakayev_0003 + blank; chunk 5: the ORL image
  assert [os.stat(p).st_mtime_ns for k, p in enumerate(shards) if k not in (2, 5)] == \
      [m for k, m in enumerate(mtimes) if k not in (2, 5)]
  assert _without_seconds(second) == _without_seconds(first)
  assert not [n for n in os.listdir(output) if n.endswith(".tmp")]
  assert len(tfrecord.load_arrays(output)[2]) == first["num_images"]
  CropAligner.calls = 0
  assert _without_seconds(_run(source, output, images_per_shard=2)) == _without_seconds(first)
  assert CropAligner.calls == 0  # finished: nothing recomputed


def test_center_fallback_is_written_and_counted(source, tmp_path):
  output = str(tmp_path / "out")
  manifest = _run(source, output, on_no_face="center")
  assert manifest["fallbacks"] == [{"path": BLANK, "reason": "no face detected", "aligned": False}]
  assert (manifest["num_images"], manifest["num_aligned"], manifest["num_fallback"],
          manifest["num_rejects"]) == (9, 8, 1, 2)
  akhmed = manifest["identities"][1]
  assert akhmed == {"name": "Akhmed_Zakayev", "label": 1, "count": 4, "aligned": 3,
                    "fallback": 1, "rejected": 0}
  assert sorted(r["path"] for r in manifest["rejects"]) == sorted([TRUNCATED, NOT_AN_IMAGE])
  stored = tfrecord.lookup_images(output, [BLANK])[0]  # in the shards like an aligned face
  assert stored.shape == (112, 112, 3) and np.abs(stored.astype(int) - 128).max() <= 2
  assert tfrecord.read_manifest(output)["num_fallback"] == 1


@pytest.mark.parametrize("change, message", [
    ({"image_size": 64}, "--image_size: 112 -> 64"),
    ({"detect_padding": 0.0}, "--detect_padding: 0.2 -> 0.0"),
    ({"on_no_face": "center"}, "--on_no_face: 'reject' -> 'center'"),
    ({"detect_retries": "pad"}, f"--detect_retries: {DEFAULT_RETRIES!r} -> 'pad'"),
    ({"policy": "largest"}, "--policy: 'largest_central' -> 'largest'"),
    ({"image_format": "png"}, "--format: 'jpeg' -> 'png'"),
    ({"images_per_shard": 5}, "--images_per_shard: 3 -> 5"),
])
def test_rerun_with_other_settings_is_refused(source, tmp_path, change, message):
  output = str(tmp_path / "out")
  _run(source, output, limit_identities=1)
  with pytest.raises(tool.AlignDatasetError, match="holds a run with other settings") as info:
    _run(source, output, limit_identities=1, **change)
  assert message in str(info.value)


def test_run_of_the_version_before_padding_resumes_with_padding_off(source, tmp_path):
  output = str(tmp_path / "out")
  _run(source, output, limit_identities=1, detect_padding=0.0)
  path = os.path.join(output, tool.SETTINGS)
  with open(path) as f:
    old = {k: v for k, v in json.load(f).items() if k not in ("detect_padding", "on_no_face")}
  with open(path, "w") as f:
    json.dump(old, f)
  with pytest.raises(tool.AlignDatasetError, match="--detect_padding: 0.0 -> 0.2"):
    _run(source, output, limit_identities=1)
  _run(source, output, limit_identities=1, detect_padding=0.0)  # resumes


def test_run_of_the_version_before_the_ladder_resumes_with_the_padded_retry_only(source,
                                                                                  tmp_path):
  output = str(tmp_path / "out")
  _run(source, output, limit_identities=1, detect_retries=" pad")  # spelled canonically
  path = os.path.join(output, tool.SETTINGS)
  with open(path) as f:
    old = json.load(f)
  assert old["detect_retries"] == "pad"
  del old["detect_retries"]
  with open(path, "w") as f:
    json.dump(old, f)
  with pytest.raises(tool.AlignDatasetError,
                     match=f"--detect_retries: 'pad' -> {DEFAULT_RETRIES!r}"):
    _run(source, output, limit_identities=1)
  _run(source, output, limit_identities=1, detect_retries="pad")  # resumes
  with pytest.raises(tool.AlignDatasetError, match="--detect_retries: unknown rung 'pda'"):
    tool.Settings(input_dir=source, detect_retries="pda")


def test_changed_input_and_bad_output_are_refused(source, tmp_path):
  copy = str(tmp_path / "copy")
  shutil.copytree(source, copy)
  output = str(tmp_path / "out")
  _run(copy, output)
  shutil.copy(os.path.join(copy, LFW_MEMBERS[0]), os.path.join(copy, "Aaron_Peirsol", "A_new.jpg"))
  with pytest.raises(tool.AlignDatasetError, match="--input_dir changed"):
    _run(copy, output)
  with pytest.raises(tool.AlignDatasetError, match="lies inside --input_dir"):
    _run(copy, os.path.join(copy, "aligned"))
  foreign = tmp_path / "foreign"
  foreign.mkdir()
  (foreign / "something.txt").write_text("x")
  with pytest.raises(tool.AlignDatasetError, match="not empty and has no settings.json"):
    _run(copy, str(foreign))


def _cli(*args, timeout=300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                        timeout=timeout, cwd=ROOT)


def test_cli_bad_input_is_one_error_line(tmp_path):
  missing = str(tmp_path / "missing")
  result = _cli(f"--input_dir={missing}", f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == f"error: --input_dir: {missing}: not a folder"
  flat = tmp_path / "flat"
  flat.mkdir()
  (flat / "a.jpg").write_bytes(b"x")
  result = _cli(f"--input_dir={flat}", f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 2
  assert "error: --input_dir:" in result.stderr and "no identity subfolders" in result.stderr
  result = _cli(f"--input_dir={flat}")
  assert result.returncode == 2 and "error: " in result.stderr and "output_dir" in result.stderr
  assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def mtcnn_run(source, tmp_path_factory):
  """The command line with the real MTCNN on 2 spawned workers (3 chunks of <= 4)."""
  output = str(tmp_path_factory.mktemp("mtcnn") / "aligned")
  result = _cli(f"--input_dir={source}", f"--output_dir={output}", "--workers=2",
                "--images_per_shard=4")
  assert result.returncode == 0, result.stderr[-3000:]
  return output, result


@pytest.mark.slow
def test_real_mtcnn_end_to_end(source, mtcnn_run):
  output, result = mtcnn_run
  manifest = tfrecord.read_manifest(output)
  reasons = {r["path"]: r["reason"] for r in manifest["rejects"]}
  assert {TRUNCATED, NOT_AN_IMAGE, BLANK} <= set(reasons)
  assert reasons[BLANK] == "no face detected"
  assert manifest["num_images"] + manifest["num_rejects"] == len(IMAGE_FILES)
  counts = {i["name"]: i["count"] for i in manifest["identities"]}
  assert (counts["Aaron_Peirsol"], counts["Akhmed_Zakayev"], counts["Alan_Ball"]) == (2, 3, 2)
  assert manifest["aligned"] is True and manifest["policy"] == "largest_central"
  assert manifest["on_no_face"] == "reject" and manifest["num_fallback"] == 0
  assert manifest["num_aligned"] == manifest["num_images"]
  assert {i["name"]: i["rejected"] for i in manifest["identities"]}["Alan_Ball"] >= 2
  assert "2 worker(s)" in result.stderr and "rejected" in result.stderr
  images, _, paths = tfrecord.load_arrays(output)
  assert images.shape[1:] == (112, 112, 3) and set(LFW_MEMBERS) <= set(paths)
  # The 5-point warp moves the face: the aligned crop is not the plain centre crop.
  aligned = images[paths.index(LFW_MEMBERS[0])].astype(float)
  cropped = fit_square(image_io.read_image(os.path.join(source, LFW_MEMBERS[0])), 112)
  assert np.abs(aligned - cropped).mean() > 10
  assert aligned.std() > 20  # a face, not a black or flat crop
