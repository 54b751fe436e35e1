"""Detection on a padded image (FaceAligner(detect_padding=...)) and the no-face fallback.

A fake detector checks the coordinate mapping by hand; real MTCNN runs on ORL and on a
tight crop of a portrait (shared data). Figures print with `pytest -s`.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from absl import flags

from enas_face import flags as enas_flags
from enas_face.config import DataConfig
from enas_face.data import align, online
from enas_face.data.align import FaceAligner, align_dataset_stage, pad_image
from enas_face.data.images import read_image
from enas_face.data.real import fit_square

# Five landmarks (x, y) and a box (x, y, w, h) in the coordinates of the image the fake
# detector receives (padded, and shrunk when max_side applies).
POINTS = np.array([[30.0, 40.0], [50.0, 40.0], [40.0, 52.0], [32.0, 62.0], [48.0, 62.0]])
BOX = (20.0, 25.0, 40.0, 50.0)


class FakeDetector:
  """mtcnn.MTCNN stand-in: records the image it gets; reports `faces` as (box, points) given
  relative to the original content, shifted by `offset` (the pad it expects)."""

  def __init__(self, faces, offset):
    self.faces, self.offset, self.images = faces, offset, []

  def detect_faces(self, image, output_type, box_format, **thresholds):
    assert (output_type, box_format) == ("numpy", "xywh")
    self.images.append(image)
    rows = []
    for (x, y, w, h), points in self.faces:
      shifted = np.asarray(points) + self.offset
      rows.append([0, x + self.offset, y + self.offset, w, h, 0.99,
                   *shifted[:, 0], *shifted[:, 1]])
    return np.array(rows, np.float64).reshape(-1, 16)


def _image(height, width, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_padded_detection_maps_back_to_the_original_image():
  image = _image(100, 80)
  pad = 25  # round(0.25 * longer side 100)
  detector = FakeDetector([(BOX, POINTS), ((-24.0, 30.0, 20.0, 20.0), POINTS - 50.0)], pad)
  faces = FaceAligner(detect_padding=0.25, detector=detector, pad_mode="always").detect(image)
  seen = detector.images[0]
  assert seen.shape == (150, 130, 3)
  np.testing.assert_array_equal(seen[pad:-pad, pad:-pad], image)  # the original in the middle
  # The default fill replicates the edge pixels.
  assert (seen[0, 0] == image[0, 0]).all() and (seen[-1, -1] == image[-1, -1]).all()
  np.testing.assert_array_equal(seen[0, pad:-pad], image[0])
  assert len(faces) == 1  # the second box is centred in the fill (x centre -14): dropped
  np.testing.assert_allclose(faces[0].landmarks, POINTS, atol=1e-5)
  assert faces[0].box == pytest.approx(BOX)


def test_padding_composes_with_the_max_side_shrink():
  image = _image(400, 320)  # max_side 100: shrunk by 1/4 to 100 x 80, then padded by 25
  detector = FakeDetector([(BOX, POINTS)], 25)
  aligner = FaceAligner(detect_padding=0.25, max_side=100, detector=detector, pad_mode="always")
  (face,) = aligner.detect(image)
  assert detector.images[0].shape == (150, 130, 3)
  # cv2.resize's pixel-centre convention: x_small = (x + 0.5) / 4 - 0.5.
  np.testing.assert_allclose(face.landmarks, (POINTS + 0.5) * 4 - 0.5, atol=1e-4)
  x, y, w, h = BOX
  assert face.box == pytest.approx(((x + 0.5) * 4 - 0.5, (y + 0.5) * 4 - 0.5, 4 * w, 4 * h))
  # The warp samples the original full-resolution image at those landmarks.
  crop, chosen = aligner.align(image)
  np.testing.assert_array_equal(crop, align.warp_face(image, chosen.landmarks, 112))


class PaddedOnlyDetector(FakeDetector):
  """Finds its faces only in an image larger than `original` (i.e. padded)."""

  def __init__(self, faces, offset, original):
    super().__init__(faces, offset)
    self.original = original

  def detect_faces(self, image, output_type, box_format, **thresholds):
    rows = super().detect_faces(image, output_type, box_format)
    return rows if image.shape[:2] != self.original else rows[:0]


def test_retry_pads_only_images_without_a_face():
  """The "pad" rung of the retry ladder alone (detect_retries="pad"; the other rungs:
  tests/test_detector_ladder.py)."""
  image = _image(100, 80)
  # A face found unpadded: one detection, on the image as it is, the face unchanged.
  found = FakeDetector([(BOX, POINTS)], 0)
  (face,) = FaceAligner(detect_padding=0.25, detector=found).detect(image)
  assert [seen.shape for seen in found.images] == [(100, 80, 3)]
  np.testing.assert_allclose(face.landmarks, POINTS, atol=1e-5)
  # No face unpadded: a second pass on the padded image finds it, mapped back.
  missed = PaddedOnlyDetector([(BOX, POINTS)], 25, (100, 80))
  (face,) = FaceAligner(detect_padding=0.25, detector=missed, detect_retries="pad").detect(image)
  assert [seen.shape for seen in missed.images] == [(100, 80, 3), (150, 130, 3)]
  np.testing.assert_allclose(face.landmarks, POINTS, atol=1e-5)
  assert face.rung == "pad"
  # Padding 0: no second pass.
  none = PaddedOnlyDetector([(BOX, POINTS)], 0, (100, 80))
  assert FaceAligner(detect_padding=0.0, detector=none, detect_retries="pad").detect(image) == []
  assert len(none.images) == 1
  with pytest.raises(ValueError, match="pad_mode"):
    FaceAligner(pad_mode="sometimes")


def test_pad_image_fills():
  image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
  assert pad_image(image, 0) is image
  mean = pad_image(image, 1, "mean")
  assert (mean[0, 0] == np.round(image.reshape(-1, 3).mean(axis=0))).all()
  black = pad_image(image, 2, "black")
  assert black.shape == (6, 7, 3) and black[0].max() == 0
  np.testing.assert_array_equal(pad_image(image, 1, "replicate")[0, 1:-1], image[0])
  np.testing.assert_array_equal(pad_image(image, 1, "reflect")[0, 1:-1], image[1])
  assert pad_image(image, 5, "reflect").shape == (12, 13, 3)  # pad beyond the image size
  with pytest.raises(ValueError, match="pad fill"):
    pad_image(image, 1, "wrap")
  with pytest.raises(ValueError, match="detect_padding"):
    FaceAligner(detect_padding=-0.1)
  with pytest.raises(ValueError, match="on_no_face"):
    FaceAligner(on_no_face="keep")


def test_center_fallback_keeps_the_centred_resize():
  image = _image(90, 120)
  no_face = FakeDetector([], 0)
  center = FaceAligner(on_no_face="center", detector=no_face)
  crop, status, reason = center.align_or_fallback(image)
  assert (status, reason) == ("fallback", "no face detected")
  np.testing.assert_array_equal(crop, fit_square(image, 112))
  assert FaceAligner(detector=no_face).align_or_fallback(image) == (None, "rejected",
                                                                    "no face detected")
  assert center.align_or_none(image) == (None, "no face detected")  # only aligned faces
  found = FaceAligner(detector=FakeDetector([(BOX, POINTS)], 24), on_no_face="center")
  crop, status, reason = found.align_or_fallback(image)
  assert (status, reason) == ("aligned", "") and crop.shape == (112, 112, 3)


def test_dataset_stage_counts_fallbacks():
  import tensorflow as tf

  images = [_image(90, 120, seed=1), np.zeros((60, 60, 3), np.uint8)]

  class Aligner(FaceAligner):  # a face in the first image only
    def detect_all(self, image, padded=None):
      return [] if image.max() == 0 else super().detect_all(image, padded)

  aligner = Aligner(size=32, on_no_face="center", detector=FakeDetector([(BOX, POINTS)], 24))
  dataset = align_dataset_stage(tf.data.Dataset.from_generator(
      lambda: iter(images), output_signature=tf.TensorSpec([None, None, 3], tf.uint8)), aligner)
  results = list(dataset.as_numpy_iterator())
  assert [(status, bool(ok), reason) for _, status, ok, reason in results] == [
      (b"aligned", True, b""), (b"fallback", True, b"no face detected")]
  np.testing.assert_array_equal(results[1][0], fit_square(images[1], 32))


def test_online_settings_reach_the_cache_key_and_flags(tmp_path):
  assert DataConfig.detect_padding == align.DEFAULT_DETECT_PADDING
  (tmp_path / "a.jpg").write_bytes(b"x")
  keys = {online.cache_key(str(tmp_path), ["a.jpg"], DataConfig(**change))
          for change in ({}, {"detect_padding": 0.0}, {"on_no_face": "center"})}
  assert len(keys) == 3
  values = flags.FLAGS
  values.unparse_flags()
  (tmp_path / "faces").mkdir()
  values(["prog", f"--dataset=folder:{tmp_path / 'faces'}", "--align=online",
          "--detect_padding=0.3", "--on_no_face=center"])
  data = enas_flags.config_from_flags(values).data
  assert (data.detect_padding, data.on_no_face) == (0.3, "center")
  values.unparse_flags()
  assert values["detect_padding"].default == align.DEFAULT_DETECT_PADDING


def test_online_data_report_counts_fallbacks():
  from enas_face.data import _with_alignment_counts
  image = np.zeros((4, 4, 3), np.uint8)
  results = [(image, "aligned", ""), (image, "fallback", "no face detected"),
             (None, "rejected", "not an image")]
  relpaths = ["a/1.jpg", "a/2.jpg", "b/1.jpg"]
  report = _with_alignment_counts({"num_rejects": 1}, results, relpaths,
                                  DataConfig(align="online", on_no_face="center"))
  assert report == {"num_rejects": 1, "num_aligned": 1, "num_fallback": 1, "fallbacks": [
      {"path": "a/2.jpg", "reason": "no face detected", "aligned": False}]}
  assert _with_alignment_counts({}, results, relpaths, DataConfig(align="none")) == {}


# ---------------------------------------------------------------------------- real MTCNN

@pytest.fixture(scope="module")
def detector():
  return FaceAligner().detector


@pytest.mark.slow
def test_padding_does_not_lose_orl_faces(shared_data, detector):
  """One ORL image per identity (image (k - 1) % 10 + 1 of identity k): padded aligns as many."""
  images = [read_image(os.path.join(shared_data, "orl_faces", f"s{k}", f"{(k - 1) % 10 + 1}.pgm"))
            for k in range(1, 41)]
  assert images[0].shape == (112, 92, 3)  # grayscale turned into 3 channels
  counts = {padding: sum(FaceAligner(detect_padding=padding, detector=detector,
                                     detect_retries="pad")
                         .align_or_none(image)[0] is not None for image in images)
            for padding in (0.0, align.DEFAULT_DETECT_PADDING)}
  print(f"ORL, 40 images: aligned {counts}")
  assert counts[align.DEFAULT_DETECT_PADDING] >= counts[0.0], (
      f"aligned with detect_padding={align.DEFAULT_DETECT_PADDING}: "
      f"{counts[align.DEFAULT_DETECT_PADDING]}/40, without padding: {counts[0.0]}/40")


def test_tight_crop_is_found_only_with_padding(shared_data, detector):
  """Kit Harington's face in kit_with_rose.jpg, cropped to the central 80 % of MTCNN's box
  (258, 79, 89, 120): the face fills the 72x96 frame."""
  photo = read_image(os.path.join(shared_data, "photos", "face_recognition", "knn_examples",
                                  "test", "kit_with_rose.jpg"))
  top, left = 91, 266
  crop = np.ascontiguousarray(photo[top:top + 96, left:left + 72])
  unpadded = FaceAligner(detect_padding=0.0, detector=detector, detect_retries="pad")
  padded = FaceAligner(detector=detector, detect_retries="pad")  # the default padding
  assert unpadded.detect(crop) == []
  (face,) = padded.detect(crop)
  # Mapped back into the photo's frame, the landmarks lie near those found on the whole photo
  # (measured 2.2 px, 5.9 px with the mean-colour fill; a wrong offset would add the 19 px pad).
  (whole,) = [f for f in unpadded.detect(photo) if abs(f.centre[0] - 302) < 30]
  shift = np.linalg.norm(face.landmarks + [left, top] - whole.landmarks, axis=1).max()
  print(f"tight crop: landmarks {shift:.2f} px from those found on the whole photo")
  assert shift < 8.0
  aligned, status, _ = padded.align_or_fallback(crop)
  assert status == "aligned" and aligned.shape == (112, 112, 3)
