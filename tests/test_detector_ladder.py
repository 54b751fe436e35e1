"""FaceAligner's retry ladder (as_is, pad, more_pad, low_confidence, onet, then on_no_face).

A scripted stand-in for mtcnn.MTCNN checks the order of the rungs, that the ladder stops at
the first usable face, that faces found as they are come out unchanged, the O-Net rung's
coordinate mapping by hand, and the flag / config validation. Real MTCNN (one per module)
runs on a tight, side-lit ORL crop that only a later rung finds, and on a photo that the
first rung finds. Figures print with `pytest -s`.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from absl import flags

from enas_face import flags as enas_flags
from enas_face.config import ConfigError, DataConfig
from enas_face.data import align, online
from enas_face.data.align import Face, FaceAligner, RetrySettings
from enas_face.data.images import read_image
from enas_face.data.real import fit_square

# One face (x, y, w, h) and its 5 landmarks, in the coordinates of the image the detector
# receives, relative to the original content (the stand-in adds the padding it sees).
BOX = (20.0, 25.0, 40.0, 50.0)
POINTS = np.array([[30.0, 40.0], [50.0, 40.0], [40.0, 52.0], [32.0, 62.0], [48.0, 62.0]])


def _image(height=100, width=80, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


class OnetModel:
  """O-Net stand-in: records its input; returns (box offsets, landmarks, softmax)."""

  def __init__(self, confidence, marks=(0.3, 0.7, 0.5, 0.35, 0.65, 0.4, 0.4, 0.6, 0.8, 0.8),
               offsets=(0.0, 0.0, 0.0, 0.0)):
    self.confidence, self.marks, self.offsets, self.inputs = confidence, marks, offsets, []

  def __call__(self, batch):
    self.inputs.append(np.asarray(batch))
    return (np.array([self.offsets]), np.array([self.marks]),
            np.array([[1 - self.confidence, self.confidence]]))


class Stage:
  def __init__(self, model):
    self.model = model


class ScriptedDetector:
  """mtcnn.MTCNN stand-in. `confidences` maps the call number (0 = first call) to the
  confidence of the one face it reports then (no face on other calls); every call is
  logged as (image shape, stage thresholds); the O-Net is `onet`."""

  def __init__(self, confidences=None, onet_confidence=0.1):
    self.confidences = confidences or {}
    self.calls = []
    self.onet = OnetModel(onet_confidence)

  def detect_faces(self, image, output_type, box_format, **thresholds):
    assert (output_type, box_format) == ("numpy", "xywh")
    call = len(self.calls)
    self.calls.append((image.shape, thresholds))
    if call not in self.confidences:
      return np.zeros((0, 16))
    # The padding this call used: the content sits in the middle of the padded image.
    pad = (image.shape[0] - 100) // 2
    x, y, w, h = BOX
    return np.array([[0, x + pad, y + pad, w, h, self.confidences[call],
                      *(POINTS[:, 0] + pad), *(POINTS[:, 1] + pad)]])

  def get_stage(self, stage_id=None, stage_name=None):
    return Stage(self.onet) if stage_id == 3 else None


LOW = {"threshold_pnet": 0.5, "threshold_rnet": 0.6, "threshold_onet": 0.7}
ALL = align.RETRY_RUNGS  # every rung, in the order of RUNGS (the default is shorter)


def test_rungs_run_in_order_then_the_fallback():
  detector = ScriptedDetector()  # no face anywhere
  aligner = FaceAligner(detector=detector, on_no_face="center", detect_retries=ALL)
  assert aligner.rungs == align.RUNGS
  crop, status, reason = aligner.align_or_fallback(_image())
  # as_is, pad 0.2 (20 px a side), more_pad 0.3 (30), low_confidence (pad 0.3, with lower
  # stage thresholds), then one O-Net pass on a 48x48 patch, then the centred resize.
  assert detector.calls == [((100, 80, 3), {}), ((140, 120, 3), {}), ((160, 140, 3), {}),
                            ((160, 140, 3), LOW)]
  assert [batch.shape for batch in detector.onet.inputs] == [(1, 48, 48, 3)]
  assert (status, reason) == ("fallback", "no face detected")
  np.testing.assert_array_equal(crop, fit_square(_image(), 112))
  # The rungs listed, in the order listed; "none": the image as it is only.
  assert FaceAligner(detect_retries="onet,pad").rungs == ("as_is", "onet", "pad")
  assert FaceAligner(detect_retries="none").rungs == ("as_is",)
  assert FaceAligner(detect_retries=()).rungs == ("as_is",)
  # The default: the padded retry, then O-Net on the whole image.
  assert FaceAligner().rungs == ("as_is", "pad", "onet")
  # detect_padding 0 drops "pad" (it would repeat as_is); pad_mode "always" starts padded.
  assert FaceAligner(detect_padding=0.0).rungs == ("as_is", "onet")
  assert FaceAligner(pad_mode="always", detect_retries=ALL).rungs == (
      "pad", "more_pad", "low_confidence", "onet")


@pytest.mark.parametrize("call, rung", [(1, "pad"), (2, "more_pad"), (3, "low_confidence")])
def test_the_ladder_stops_at_the_first_usable_face(call, rung):
  detector = ScriptedDetector({call: 0.95})
  aligner = FaceAligner(detector=detector, detect_retries=ALL)
  (face,) = aligner.detect(_image())
  assert face.rung == rung and len(detector.calls) == call + 1 and not detector.onet.inputs
  np.testing.assert_allclose(face.landmarks, POINTS, atol=1e-5)  # mapped back
  assert face.box == pytest.approx(BOX)
  crop, chosen = FaceAligner(detector=ScriptedDetector({call: 0.95}),
                             detect_retries=ALL).align(_image())
  assert chosen.rung == rung and crop.shape == (112, 112, 3)


def test_a_face_found_as_it_is_is_unchanged():
  ladder = ScriptedDetector({0: 0.95})
  (face,) = FaceAligner(detector=ladder, detect_retries=ALL).detect(_image())
  (alone,) = FaceAligner(detector=ScriptedDetector({0: 0.95}), detect_retries=()).detect(_image())
  assert len(ladder.calls) == 1 and face.rung == alone.rung == "as_is"
  np.testing.assert_array_equal(face.landmarks, alone.landmarks)
  assert face.box == alone.box and face.confidence == alone.confidence
  np.testing.assert_allclose(face.landmarks, POINTS, atol=1e-5)


def test_confidence_floors_per_rung():
  # A face of 0.85 on every pass: below min_confidence 0.9, so as_is, pad and more_pad go on;
  # the low_confidence rung takes it (>= 0.8).
  detector = ScriptedDetector({0: 0.85, 1: 0.85, 2: 0.85, 3: 0.85})
  aligner = FaceAligner(detector=detector, detect_retries=ALL)
  (face,) = aligner.detect(_image())
  assert face.rung == "low_confidence" and len(detector.calls) == 4
  # Without that rung no face is usable: the reason names the best confidence seen.
  strict = FaceAligner(detector=ScriptedDetector({0: 0.85, 1: 0.87}), detect_retries="pad")
  assert strict.align_or_none(_image()) == (None, "no face with confidence >= 0.9 (best 0.870)")
  # The low rung's floor never exceeds min_confidence.
  assert FaceAligner(min_confidence=0.5).min_confidence_of("low_confidence") == 0.5
  assert FaceAligner().min_confidence_of("low_confidence") == 0.8
  assert FaceAligner().min_confidence_of("onet") == 0.9


def test_onet_rung_maps_the_whole_image_as_the_face_box():
  height, width = 60, 40
  image = np.full((height, width, 3), 200, np.uint8)
  detector = ScriptedDetector(onet_confidence=0.97)
  detector.onet.offsets = (0.1, 0.0, 0.0, -0.05)
  (face,) = FaceAligner(detector=detector).detect(image)
  assert face.rung == "onet" and face.confidence == pytest.approx(0.97)
  # The square: side S = round(1.2 x 60) = 72, offset (left, top) = ((72 - 40) // 2,
  # (72 - 60) // 2) = (16, 6). Replicated edges keep a flat image flat: (200 - 127.5) / 128.
  (batch,) = detector.onet.inputs
  np.testing.assert_allclose(batch, (200 - 127.5) / 128, atol=1e-6)
  # x = S l - 0.5 - left, y = S l - 0.5 - top: l = 0.5 is the image centre (19.5, 29.5).
  marks = np.array(detector.onet.marks)
  expected = np.stack([marks[:5] * 72 - 16.5, marks[5:] * 72 - 6.5], axis=1)
  np.testing.assert_allclose(face.landmarks, expected, atol=1e-4)
  # Box: the square's corners (-16.5, -6.5) .. (55.5, 65.5) moved by offsets x S.
  x1, y1, x2, y2 = -16.5 + 0.1 * 72, -6.5, 55.5, 65.5 - 0.05 * 72
  assert face.box == pytest.approx((x1, y1, x2 - x1, y2 - y1))
  # Below MTCNN's own O-Net threshold (0.8) it is no candidate; between 0.8 and
  # min_confidence it is a candidate that is not usable.
  assert FaceAligner(detector=ScriptedDetector(onet_confidence=0.7)).detect_all(image) == []
  (candidate,) = FaceAligner(detector=ScriptedDetector(onet_confidence=0.85)).detect_all(image)
  assert candidate.rung == "onet"
  assert FaceAligner(detector=ScriptedDetector(onet_confidence=0.85)).align_or_none(image) == (
      None, "no face with confidence >= 0.9 (best 0.850)")


def test_a_detector_without_mtcnn_stages_skips_the_onet_rung():
  class CascadeOnly:
    def __init__(self):
      self.calls = 0

    def detect_faces(self, image, output_type, box_format, **thresholds):
      self.calls += 1
      return np.zeros((0, 16))

  detector = CascadeOnly()
  assert FaceAligner(detector=detector, detect_retries=ALL).detect(_image()) == []
  assert detector.calls == 4


def test_retry_values_are_validated():
  assert align.parse_detect_retries("pad, onet") == ("pad", "onet")
  assert align.parse_detect_retries("") == align.parse_detect_retries("none") == ()
  assert align.format_detect_retries(["onet"]) == "onet"
  assert align.format_detect_retries(()) == "none"
  for bad, message in (("pad,bogus", "unknown rung 'bogus'"), ("as_is", "unknown rung 'as_is'"),
                       ("pad,pad", "a rung is listed twice")):
    with pytest.raises(ValueError, match=f"detect_retries: {message}"):
      FaceAligner(detect_retries=bad)
  for bad, name in (({"more_padding": 3.0}, "more_padding"), ({"low_padding": -1.0}, "low_padding"),
                    ({"low_thresholds": (0.5, 0.6)}, "low_thresholds"),
                    ({"low_min_confidence": 1.5}, "low_min_confidence"),
                    ({"onet_scale": 0.5}, "onet_scale")):
    with pytest.raises(ValueError, match=name):
      RetrySettings(**bad)
  with pytest.raises(ValueError, match="rung must be one of"):
    Face((0, 0, 1, 1), 1.0, np.zeros((5, 2)), rung="guess")
  with pytest.raises(ValueError, match="rung must be one of"):
    FaceAligner(detector=ScriptedDetector()).detect_rung(_image(), "center")


def test_the_flag_reaches_the_config_and_the_cache_key(tmp_path):
  assert DataConfig.detect_retries == align.format_detect_retries(align.DEFAULT_DETECT_RETRIES)
  (tmp_path / "a.jpg").write_bytes(b"x")
  keys = {online.cache_key(str(tmp_path), ["a.jpg"], DataConfig(**change))
          for change in ({}, {"detect_retries": "pad"}, {"detect_retries": "none"})}
  assert len(keys) == 3
  values = flags.FLAGS
  values.unparse_flags()
  assert values["detect_retries"].default == DataConfig.detect_retries
  (tmp_path / "faces").mkdir()
  base = ["prog", f"--dataset=folder:{tmp_path / 'faces'}", "--align=online"]
  try:
    values(base + ["--detect_retries= more_pad,pad"])
    assert enas_flags.config_from_flags(values).data.detect_retries == "more_pad,pad"
    values.unparse_flags()
    values(base + ["--detect_retries=pad,upscale"])
    with pytest.raises(ConfigError, match="--detect_retries: unknown rung 'upscale'"):
      enas_flags.config_from_flags(values)
  finally:
    values.unparse_flags()


# ---------------------------------------------------------------------------- real MTCNN

@pytest.fixture(scope="module")
def detector():
  return FaceAligner().detector


def _side_light(image, low=0.15, gamma=1.6):
  """Gray, darkened to `low` on the left rising to 1 on the right, then gamma (as in
  bench/bench_detector_ladder.py)."""
  gray = image.mean(axis=2, keepdims=True).repeat(3, axis=2) / 255.0
  ramp = np.linspace(low, 1.0, image.shape[1])[None, :, None]
  return np.round((gray * ramp) ** gamma * 255).astype(np.uint8)


def test_a_side_lit_tight_crop_needs_a_later_rung(shared_data, detector):
  """ORL s1/1.pgm cropped from the eyebrows to the chin, between the cheeks (the bench's crop
  from the landmarks MTCNN finds on the whole image), lit from the right."""
  image = read_image(os.path.join(shared_data, "orl_faces", "s1", "1.pgm"))
  first = FaceAligner(detect_retries=(), detector=detector)
  _, whole = first.align(image)
  assert whole.rung == "as_is"
  (left_eye, right_eye, _, mouth_left, mouth_right) = whole.landmarks
  eyes = float(np.linalg.norm(right_eye - left_eye))
  top = round((left_eye[1] + right_eye[1]) / 2 - 0.35 * eyes)
  bottom = round((mouth_left[1] + mouth_right[1]) / 2 + 0.5 * eyes)
  centre = (left_eye[0] + right_eye[0] + mouth_left[0] + mouth_right[0]) / 4
  left, right = round(centre - 0.9 * eyes), round(centre + 0.9 * eyes)
  crop = _side_light(np.ascontiguousarray(image[top:bottom, left:right]))
  truth = whole.landmarks - [left, top]
  ladder = FaceAligner(detector=detector)
  assert first.detect(crop) == [] and FaceAligner(detect_retries="pad", detector=detector
                                                  ).detect(crop) == []
  aligned, face = ladder.align(crop)
  error = np.linalg.norm(face.landmarks - truth, axis=1).max() / eyes
  print(f"ORL s1/1 side-lit {crop.shape[1]}x{crop.shape[0]} crop: found by {face.rung} "
        f"({face.confidence:.3f}), largest landmark error {error:.1%} of the eye distance")
  assert face.rung == "onet"  # the default ladder: as_is, pad, onet
  assert error < 0.25 and aligned.shape == (112, 112, 3)


def test_a_photo_is_found_by_the_first_rung(shared_data, detector):
  image = read_image(os.path.join(shared_data, "photos", "face_recognition", "obama_small.jpg"))
  _, face = FaceAligner(detector=detector).align(image)
  _, alone = FaceAligner(detector=detector, detect_retries=()).align(image)
  assert face.rung == "as_is"
  np.testing.assert_array_equal(face.landmarks, alone.landmarks)
