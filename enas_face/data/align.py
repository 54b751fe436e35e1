"""Five-point face alignment: MTCNN detection, choice of one face, similarity warp to 112x112.

    faces = FaceAligner().detect(image)           # every face, with 5 landmarks
    aligned, face = FaceAligner().align(image)    # the chosen face, warped onto the template
    crop, status, reason = FaceAligner(on_no_face="center").align_or_fallback(image)

The warp maps MTCNN's five landmarks (left eye, right eye, nose, mouth left,
mouth right; "left" is image-left) onto `ARCFACE_TEMPLATE`, the layout used by
ArcFace / insightface for 112x112 crops. `align_dataset_stage` runs the same
alignment inside a tf.data pipeline and reports failures instead of dropping them.

MTCNN misses faces that fill the whole frame (tightly pre-cropped datasets): when
it finds no usable face in an image, `FaceAligner` climbs a retry ladder (by default
the image padded by `detect_padding` x its longer side, then MTCNN's O-Net on the
whole image as the face box; `detect_retries`), and images without a usable face
can be kept as a centred square resize (`on_no_face="center"`, status "fallback").
"""
from __future__ import annotations

import dataclasses
import math
import threading
from typing import Sequence

import cv2
import numpy as np

from enas_face.data.real import fit_square

ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
FACE_POLICIES = ("largest_central", "largest", "central", "confident")
PAD_FILLS = ("mean", "black", "reflect", "replicate")
NO_FACE_POLICIES = ("reject", "center")
STATUSES = ("aligned", "fallback", "rejected")
# Measured by bench/bench_alignment_padding.py (docs/data.md "Alignment padding"): see FaceAligner.
DEFAULT_DETECT_PADDING = 0.2
DEFAULT_PAD_FILL = "replicate"
# "retry": pad only an image in which the unpadded pass finds no usable face; "always".
PAD_MODES = ("retry", "always")
# The detector's retry ladder (FaceAligner): "as_is" (the image as it is) is always tried
# first; --detect_retries lists the rungs tried after it, in order, until one yields a usable
# face. What each rung does: RetrySettings; why these and this default: FaceAligner.
RUNGS = ("as_is", "pad", "more_pad", "low_confidence", "onet")
RETRY_RUNGS = RUNGS[1:]
DEFAULT_DETECT_RETRIES = ("pad", "onet")
MTCNN_THRESHOLDS = (0.6, 0.7, 0.8)  # mtcnn 1.0's own P-Net, R-Net, O-Net stage thresholds
ONET_INPUT = 48  # O-Net's input side in pixels


def parse_detect_retries(value) -> tuple[str, ...]:
  """The retry rungs of a --detect_retries value: "pad,more_pad" -> ("pad", "more_pad").

  Accepts a comma-separated string or a sequence of names from RETRY_RUNGS, in the order
  they are to be tried; "" or "none" means no retry. Raises ValueError naming
  detect_retries for an unknown or repeated rung ("as_is" always runs first: not listed)."""
  names = value.split(",") if isinstance(value, str) else list(value)
  names = [name.strip() for name in names if name.strip()]
  if names == ["none"]:
    return ()
  for name in names:
    if name not in RETRY_RUNGS:
      raise ValueError(f"detect_retries: unknown rung {name!r}; expected a comma-separated "
                       f"list of {', '.join(RETRY_RUNGS)} (or 'none'), got {value!r}")
  if len(set(names)) != len(names):
    raise ValueError(f"detect_retries: a rung is listed twice in {value!r}")
  return tuple(names)


def format_detect_retries(rungs) -> str:
  """The canonical --detect_retries string of `rungs` ("none" when empty)."""
  return ",".join(parse_detect_retries(rungs)) or "none"


@dataclasses.dataclass(frozen=True)
class RetrySettings:
  """What the later rungs of FaceAligner's ladder do (the values measured by
  bench/bench_detector_ladder.py, docs/data.md "Detector retry ladder").

  more_pad: MTCNN on the image padded by `more_padding` x its longer side.
  low_confidence: MTCNN on the image padded by `low_padding` x its longer side with the
    stage thresholds `low_thresholds` (P-Net, R-Net, O-Net; mtcnn's own: 0.6, 0.7, 0.8),
    a face usable from `low_min_confidence` (or min_confidence if lower).
  onet: MTCNN's last stage alone on the image taken as the face box: the square of side
    `onet_scale` x the image's longer side around its centre (edge pixels replicated),
    resized to 48x48, gives one confidence, box and 5 landmarks.
  """
  more_padding: float = 0.3
  low_padding: float = 0.3
  low_thresholds: tuple[float, float, float] = (0.5, 0.6, 0.7)
  low_min_confidence: float = 0.8
  onet_scale: float = 1.2

  def __post_init__(self):
    object.__setattr__(self, "low_thresholds", tuple(float(v) for v in self.low_thresholds))
    for name in ("more_padding", "low_padding"):
      if not 0.0 <= getattr(self, name) <= 2.0:
        raise ValueError(f"{name} must lie in [0, 2] (a fraction of the longer side), "
                         f"got {getattr(self, name)}")
    if len(self.low_thresholds) != 3 or not all(0.0 <= v <= 1.0 for v in self.low_thresholds):
      raise ValueError(f"low_thresholds must be 3 values in [0, 1] (P-Net, R-Net, O-Net), "
                       f"got {self.low_thresholds}")
    if not 0.0 <= self.low_min_confidence <= 1.0:
      raise ValueError(f"low_min_confidence must lie in [0, 1], got {self.low_min_confidence}")
    if not 1.0 <= self.onet_scale <= 3.0:
      raise ValueError(f"onet_scale must lie in [1, 3] (x the longer side), got {self.onet_scale}")


class NoFaceError(ValueError):
  """No usable face in an image; the message is a short reason, e.g. 'no face detected'."""


class AlignmentError(ValueError):
  """The landmarks admit no similarity transform (e.g. all five points coincide)."""


def template(size: int = 112) -> np.ndarray:
  """float32 [5, 2]: the ArcFace landmark template for a size x size crop (scaled by size / 112)."""
  if size <= 0:
    raise ValueError(f"crop size must be positive, got {size}")
  return ARCFACE_TEMPLATE * np.float32(size / 112.0)


def _as_landmarks(landmarks) -> np.ndarray:
  points = np.asarray(landmarks, dtype=np.float32)
  if points.shape != (5, 2):
    raise ValueError(f"landmarks must be [5, 2] (x, y) points, got shape {points.shape}")
  if not np.isfinite(points).all():
    raise AlignmentError(f"landmarks are not finite: {points.tolist()}")
  return points


def similarity_transform(landmarks, size: int = 112) -> np.ndarray:
  """float64 [2, 3] matrix M = [s R | t] taking image points onto `template(size)`.

  Model: x' = s R x + t (rotation R, uniform scale s > 0, translation t: 4
  degrees of freedom), fitted by `cv2.estimateAffinePartial2D` with LMedS: the
  2-point fit with the least median squared landmark error, then refined by
  Levenberg-Marquardt least squares on its inliers (normally all five points).
  Exact similarity data is recovered exactly. Raises AlignmentError when no
  transform is found or it is degenerate (scale ~ 0).
  """
  points = _as_landmarks(landmarks)
  matrix, _ = cv2.estimateAffinePartial2D(points, template(size), method=cv2.LMEDS)
  if matrix is None or not np.isfinite(matrix).all():
    raise AlignmentError(f"no similarity transform fits the landmarks {points.tolist()}")
  scale = math.hypot(matrix[0, 0], matrix[1, 0])
  if scale < 1e-6:
    raise AlignmentError(f"degenerate transform (scale {scale:.3g}) for landmarks {points.tolist()}")
  return matrix


def warp_face(image: np.ndarray, landmarks, size: int = 112) -> np.ndarray:
  """uint8 [size, size, 3]: `image` warped so its landmarks land on the template.

  Bilinear sampling; pixels from outside the image are black (constant 0), as in
  insightface's crops: replicating the border would smear edge pixels into
  streaks that look like image structure, while black is plainly "no data".
  """
  matrix = similarity_transform(landmarks, size)
  return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: numpy fields do not compare to a bool
class Face:
  """One detection: box (x, y, w, h) in pixels, confidence, landmarks float32 [5, 2] (x, y),
  and the rung of FaceAligner's ladder that found it (one of RUNGS)."""
  box: tuple[float, float, float, float]
  confidence: float
  landmarks: np.ndarray
  rung: str = "as_is"

  def __post_init__(self):
    box = tuple(float(value) for value in self.box)
    if len(box) != 4:
      raise ValueError(f"box must be (x, y, w, h), got {self.box}")
    object.__setattr__(self, "box", box)
    object.__setattr__(self, "confidence", float(self.confidence))
    points = np.asarray(self.landmarks, dtype=np.float32)
    if points.shape != (5, 2):
      raise ValueError(f"landmarks must be [5, 2], got shape {points.shape}")
    object.__setattr__(self, "landmarks", points)
    if self.rung not in RUNGS:
      raise ValueError(f"rung must be one of {RUNGS}, got {self.rung!r}")

  @property
  def area(self) -> float:
    return self.box[2] * self.box[3]

  @property
  def centre(self) -> tuple[float, float]:
    x, y, w, h = self.box
    return x + w / 2.0, y + h / 2.0


def _squared_offset(face: Face, image_shape) -> float:
  """Squared distance of the box centre from the image centre, in pixels^2."""
  height, width = image_shape[:2]
  cx, cy = face.centre
  return (cx - width / 2.0) ** 2 + (cy - height / 2.0) ** 2


def choose_face(faces: Sequence[Face], image_shape, policy: str = "largest_central") -> Face:
  """The one face to keep from several.

  - largest_central: maximise area * (1 - d^2 / r^2), where d is the distance
    from the box centre to the image centre and r half the image diagonal: a
    centred face counts its whole area, one centred on a corner counts none.
    Unlike insightface's area - 2 d^2 the score does not depend on the image
    resolution (scaling the photo scales every score by the same factor).
  - largest: maximise box area.  - central: minimise d.  - confident: maximise confidence.

  Ties go to the earliest face in `faces`. Raises NoFaceError when `faces` is empty.
  """
  if policy not in FACE_POLICIES:
    raise ValueError(f"face policy must be one of {FACE_POLICIES}, got {policy!r}")
  if not faces:
    raise NoFaceError("no face detected")
  height, width = image_shape[:2]
  half_diagonal_squared = max((width / 2.0) ** 2 + (height / 2.0) ** 2, 1e-12)
  scores = {
      "largest_central":
          lambda f: f.area * (1.0 - _squared_offset(f, image_shape) / half_diagonal_squared),
      "largest": lambda f: f.area,
      "central": lambda f: -_squared_offset(f, image_shape),
      "confident": lambda f: f.confidence,
  }
  return max(faces, key=scores[policy])  # max() keeps the first of equal scores


def pad_image(image: np.ndarray, pad: int, fill: str = DEFAULT_PAD_FILL) -> np.ndarray:
  """`image` [H, W, C] grown by `pad` pixels on every side: [H + 2 pad, W + 2 pad, C].

  fill: "mean" (constant, the image's per-channel mean colour, rounded), "black"
  (constant 0), "reflect" (mirror without repeating the edge pixel, cv2
  BORDER_REFLECT_101), "replicate" (the edge pixel repeated).
  """
  if fill not in PAD_FILLS:
    raise ValueError(f"pad fill must be one of {PAD_FILLS}, got {fill!r}")
  if pad < 0:
    raise ValueError(f"pad must be >= 0 pixels, got {pad}")
  if pad == 0:
    return image
  if fill == "reflect":  # numpy reflects repeatedly when pad exceeds the image
    return np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
  if fill == "replicate":
    return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
  value = (np.round(image.reshape(-1, image.shape[2]).mean(axis=0)) if fill == "mean"
           else np.zeros(image.shape[2]))
  return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                            value=[float(v) for v in value])


class FaceAligner:
  """MTCNN (the `mtcnn` package) + `choose_face` + `warp_face`, with a retry ladder.

  The ladder: `detect` and `align` (so `align_or_fallback`, the tool and --align=online)
  try rungs in order and stop at the first that yields a usable face (confidence >=
  `min_confidence_of(rung)`); each Face records the `rung` that found it:
    as_is           the image as it is (always first);
  then the rungs of `detect_retries` (--detect_retries), in the order given, from
    pad             the image padded by detect_padding x its longer side (below);
    more_pad        padded by retry_settings.more_padding (0.3);
    low_confidence  padded by low_padding (0.3), MTCNN stage thresholds 0.5, 0.6, 0.7
                    (its own: 0.6, 0.7, 0.8), usable from 0.8 (min_confidence if lower);
    onet            MTCNN's O-Net alone on the whole image taken as the face box (`_onet`).
  An image in which no rung finds a usable face goes to on_no_face. A rung's faces are
  what that rung alone gives, so faces found as they are (or padded) are unchanged.

  Why "pad,onet" by default (bench/bench_detector_ladder.py, docs/data.md "Detector retry
  ladder"): of 1698 faces cropped from the eyebrows to the chin (300 LFW, 399 ORL; colour,
  gray, gray with a hard side light) as_is aligns 29.2 %, + pad 70.8 %, + more_pad 78.3 %,
  + low_confidence 81.8 %, + onet 97.9 %; as_is, pad, onet alone 97.6 %, with an equal or
  lower median landmark error per variant and 4-36 % less time per crop. After onet,
  more_pad and low_confidence add 6 crops, with landmark errors of 17-44 % of the eye
  distance, and on a whole side-lit ORL image a face 65 % off. Every ladder stops at as_is
  on the 35 photos; run alone on every photo, pad and low_confidence report 2 and 4 faces
  that as_is does not (mostly background), onet none; no rung finds a face in 262
  face-free patches of the photos. onet runs after pad: on loose frames the padded cascade
  places the face better (onet first took 1 of the 11 side-lit whole ORL images as_is
  misses, 51 % off), and today's padded faces stay as they were.

  The detector (which imports TensorFlow and takes seconds to build) is created
  on first use. Images whose longer side exceeds `max_side` are shrunk for
  MTCNN's cascade only; boxes and landmarks are mapped back to the full image
  (pad subtracted, shrink undone), which is what gets warped: pixels outside the
  original image stay black. Detections whose box centre lies in the padding are
  dropped; images under 12 pixels a side (MTCNN's smallest window) hold no face.
  `detector` may pass an existing mtcnn.MTCNN (or anything with its `detect_faces`;
  without mtcnn's `get_stage`, the "onet" rung finds nothing) to share one.

  Why pad (figures: bench/bench_alignment_padding.py, docs/data.md "Alignment padding"): MTCNN
  misses faces that fill the frame; on 200 LFW faces cropped to the central 80 % of
  their box it aligns 43.5 % unpadded, 96.0 / 98.0 / 90.0 % at padding 0.1 / 0.2 /
  0.3 (replicate fill). ORL's 92x112 crops keep some margin: 399/400 unpadded,
  400/400 padded. Uncropped photos lose nothing (LFW 200/200, photos 35/35 at 0.2);
  landmarks move by a median 1-3 px (3-4 % of the eye distance: MTCNN's refinement
  stages see other candidate boxes), and in 3 of the 35 photos another face (2 group
  shots) or a wider box (a half-visible face) is chosen. Default 0.2: the best on tight
  crops, with no face lost elsewhere. Padding every image costs +3 % time on LFW and up
  to 2x on large photos (the padded image has (1 + 2 x 0.2)^2 the pixels), and moves
  faces found without it; so by default only images without a face are padded
  ("retry"): a face found unpadded is exactly what it was before padding existed. Retry
  aligns 197/200 tight crops, 400/400 ORL, 200/200 LFW and 35/35 photos, every face
  found unpadded unchanged.
  Fill "replicate" (edge pixels repeated): at 0.2 it aligns 98.0 % of the tight
  crops against 93.5 % for the mean colour, 93.0 % reflect (which also mirrors the
  face into the fill) and 73.5 % black, and is as good elsewhere (within one image).

  on_no_face: what `align_or_fallback` does with an image in which no rung finds a usable
  face: "reject" it, or keep it as a "center" square resize (`fit_square`): the last resort.
  `retry_settings` (RetrySettings) holds the later rungs' measured values.
  """

  def __init__(self, size: int = 112, policy: str = "largest_central",
               min_confidence: float = 0.9, max_side: int = 1024, detector=None,
               detect_padding: float = DEFAULT_DETECT_PADDING, on_no_face: str = "reject",
               pad_fill: str = DEFAULT_PAD_FILL, pad_mode: str = "retry",
               detect_retries=DEFAULT_DETECT_RETRIES,
               retry_settings: RetrySettings | None = None):
    if policy not in FACE_POLICIES:
      raise ValueError(f"face policy must be one of {FACE_POLICIES}, got {policy!r}")
    if size <= 0 or max_side <= 0:
      raise ValueError(f"size and max_side must be positive, got {size} and {max_side}")
    if not 0.0 <= detect_padding <= 2.0:
      raise ValueError(f"detect_padding must lie in [0, 2] (a fraction of the longer side), "
                       f"got {detect_padding}")
    if on_no_face not in NO_FACE_POLICIES:
      raise ValueError(f"on_no_face must be one of {NO_FACE_POLICIES}, got {on_no_face!r}")
    if pad_fill not in PAD_FILLS:
      raise ValueError(f"pad_fill must be one of {PAD_FILLS}, got {pad_fill!r}")
    if pad_mode not in PAD_MODES:
      raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    self.pad_mode = pad_mode
    self.size = int(size)
    self.policy = policy
    self.min_confidence = float(min_confidence)
    self.max_side = int(max_side)
    self.detect_padding = float(detect_padding)
    self.on_no_face = on_no_face
    self.pad_fill = pad_fill
    self.detect_retries = parse_detect_retries(detect_retries)
    self.retry_settings = retry_settings or RetrySettings()
    self._detector = detector
    self._lock = threading.Lock()

  @property
  def detector(self):
    """The mtcnn.MTCNN instance, built once on first use."""
    with self._lock:
      if self._detector is None:
        import mtcnn  # imports TensorFlow; kept out of module import time
        self._detector = mtcnn.MTCNN()
      return self._detector

  @property
  def rungs(self) -> tuple[str, ...]:
    """The rungs tried, in order: "as_is" then detect_retries. With pad_mode "always" the
    first pass is "pad" (padded); "pad" is left out when detect_padding is 0 (it would
    repeat "as_is") or already first."""
    first = "pad" if self.pad_mode == "always" and self.detect_padding else "as_is"
    rest = [rung for rung in self.detect_retries
            if rung != first and not (rung == "pad" and not self.detect_padding)]
    return (first, *rest)

  def min_confidence_of(self, rung: str) -> float:
    """The confidence from which a face found by `rung` is usable: min_confidence, or for
    "low_confidence" min(min_confidence, retry_settings.low_min_confidence)."""
    if rung == "low_confidence":
      return min(self.min_confidence, self.retry_settings.low_min_confidence)
    return self.min_confidence

  def usable(self, face: Face) -> bool:
    """face.confidence >= min_confidence_of(face.rung)."""
    return face.confidence >= self.min_confidence_of(face.rung)

  def detect_rung(self, image: np.ndarray, rung: str) -> list[Face]:
    """Every face one rung reports (usable or not), in full-image coordinates, marked with
    the rung. The cascade rungs return what MTCNN returns (faces that passed its stage
    thresholds); "onet" returns its one candidate when its confidence reaches min(0.8,
    min_confidence_of("onet")) (0.8: the O-Net threshold of the cascade), else nothing."""
    image = _check_image(image)
    settings = self.retry_settings
    if rung == "as_is":
      return self._cascade(image, 0.0, rung)
    if rung == "pad":
      return self._cascade(image, self.detect_padding, rung)
    if rung == "more_pad":
      return self._cascade(image, settings.more_padding, rung)
    if rung == "low_confidence":
      return self._cascade(image, settings.low_padding, rung, settings.low_thresholds)
    if rung == "onet":
      return self._onet(image)
    raise ValueError(f"rung must be one of {RUNGS}, got {rung!r}")

  def detect_all(self, image: np.ndarray, padded: bool | None = None) -> list[Face]:
    """Every face MTCNN reports, whatever its confidence, in full-image coordinates.

    padded=None: the ladder: the faces of every rung tried, in order, up to and including
    the first rung that reports a usable face (`usable`; all rungs when none does).
    padded=True / False: one cascade pass on the image padded by detect_padding / as it is.
    """
    image = _check_image(image)
    if padded is not None:
      return self._cascade(image, self.detect_padding if padded else 0.0,
                           "pad" if padded and self.detect_padding else "as_is")
    candidates = []
    for rung in self.rungs:
      faces = self.detect_rung(image, rung)
      candidates += faces
      if any(self.usable(face) for face in faces):
        break
    return candidates

  def _cascade(self, image: np.ndarray, padding: float, rung: str,
               thresholds: Sequence[float] | None = None) -> list[Face]:
    """MTCNN's cascade on the image shrunk to `max_side` (if larger) and then padded by
    round(padding x the shrunk image's longer side) pixels with pad_fill; `thresholds`
    (P-Net, R-Net, O-Net) replace mtcnn's own stage thresholds.

    A point (u, v) of that padded image maps back to ((u - pad + 0.5) / s_x - 0.5,
    (v - pad + 0.5) / s_y - 0.5), s the shrink factors (1 when not shrunk), box sizes to
    (w / s_x, h / s_y). Faces centred in the padding are dropped.
    """
    height, width = image.shape[:2]
    if min(height, width) < 12:  # smaller than MTCNN's 12x12 proposal window
      return []
    scale = min(1.0, self.max_side / max(height, width))
    small = image
    scale_x = scale_y = 1.0
    if scale < 1.0:
      small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                         interpolation=cv2.INTER_AREA)
      scale_x, scale_y = small.shape[1] / width, small.shape[0] / height
    pad = int(round(padding * max(small.shape[:2])))
    canvas = pad_image(small, pad, self.pad_fill)
    kwargs = {}
    if thresholds is not None:  # only then: a detector stand-in need not take them
      kwargs = dict(zip(("threshold_pnet", "threshold_rnet", "threshold_onet"),
                        (float(t) for t in thresholds)))
    rows = np.asarray(self.detector.detect_faces(canvas, output_type="numpy", box_format="xywh",
                                                 **kwargs))
    faces = []
    for row in rows.reshape(-1, 16):
      # Columns: image id, x, y, w, h, confidence, 5 landmark x's, 5 landmark y's.
      x, y, w, h = row[1:5]
      points = np.stack([row[6:11], row[11:16]], axis=1)
      x, y, points = x - pad, y - pad, points - pad
      if scale < 1.0:  # pixel-centre convention of cv2.resize: x_small = (x + 0.5) * s - 0.5
        x, y, w, h = (x + 0.5) / scale_x - 0.5, (y + 0.5) / scale_y - 0.5, w / scale_x, h / scale_y
        points = (points + 0.5) / np.array([scale_x, scale_y]) - 0.5
      face = Face((x, y, w, h), row[5], points, rung)
      cx, cy = face.centre
      if pad and not (-0.5 <= cx <= width - 0.5 and -0.5 <= cy <= height - 0.5):
        continue  # a "face" found in the fill (e.g. a mirror image of the real one)
      faces.append(face)
    return faces

  def _onet(self, image: np.ndarray) -> list[Face]:
    """The "onet" rung: MTCNN's O-Net on the whole image taken as the face box.

    The square of side S = round(onet_scale x max(H, W)) centred on the image (offset
    (left, top) = ((S - W) // 2, (S - H) // 2), edge pixels replicated) is resized to 48x48
    (area interpolation when shrinking, bilinear when enlarging), normalised as mtcnn does,
    (RGB - 127.5) / 128, NHWC, and run through the O-Net stage's model, which returns box
    offsets r, landmarks l (5 x's then 5 y's, in [0, 1] of the square) and the softmax
    (not face, face). Landmark (x, y) = S l - 0.5 - (left, top) (pixel centres at
    integers); box corners = square corners + r S; confidence = the face probability.
    """
    height, width = image.shape[:2]
    if min(height, width) < 12:
      return []
    get_stage = getattr(self.detector, "get_stage", None)
    stage = get_stage(stage_id=3) if get_stage is not None else None
    if stage is None or getattr(stage, "model", None) is None:
      return []  # not mtcnn's MTCNN: no O-Net to run
    side = max(int(round(self.retry_settings.onet_scale * max(height, width))), height, width)
    left, top = (side - width) // 2, (side - height) // 2
    square = cv2.copyMakeBorder(image, top, side - height - top, left, side - width - left,
                                cv2.BORDER_REPLICATE)
    patch = cv2.resize(square, (ONET_INPUT, ONET_INPUT),
                       interpolation=cv2.INTER_AREA if side > ONET_INPUT else cv2.INTER_LINEAR)
    batch = ((patch.astype(np.float32) - 127.5) / 128.0)[None]
    offsets, marks, scores = (np.asarray(out, dtype=np.float64)[0] for out in stage.model(batch))
    confidence = float(scores[1])
    if confidence < min(MTCNN_THRESHOLDS[2], self.min_confidence_of("onet")):
      return []
    points = np.stack([marks[:5], marks[5:10]], axis=1) * side - 0.5 - np.array([left, top])
    x1, y1, x2, y2 = np.array([0.0, 0.0, side, side]) + offsets[:4] * side - [left, top, left, top]
    return [Face((x1 - 0.5, y1 - 0.5, x2 - x1, y2 - y1), confidence, points, "onet")]

  def detect(self, image: np.ndarray) -> list[Face]:
    """The usable faces of the first rung that finds any (`detect_all`), in full-image
    coordinates, each marked with its rung; [] when no rung does."""
    return [face for face in self.detect_all(image) if self.usable(face)]

  def align(self, image: np.ndarray) -> tuple[np.ndarray, Face]:
    """(uint8 [size, size, 3] crop, the chosen Face of `detect`, its .rung saying which rung
    found it); NoFaceError / AlignmentError otherwise. The reason names the best confidence
    any rung reported ("no face with confidence >= 0.9 (best 0.853)"), or "no face detected"."""
    image = _check_image(image)
    candidates = self.detect_all(image)
    if not candidates:
      raise NoFaceError("no face detected")
    faces = [face for face in candidates if self.usable(face)]
    if not faces:
      best = max(face.confidence for face in candidates)
      raise NoFaceError(f"no face with confidence >= {self.min_confidence:g} (best {best:.3f})")
    face = choose_face(faces, image.shape, self.policy)
    return warp_face(image, face.landmarks, self.size), face

  def align_or_none(self, image: np.ndarray) -> tuple[np.ndarray | None, str]:
    """(crop, "") or (None, reason) when no face is found or it cannot be aligned.

    Only aligned faces: ignores on_no_face (see `align_or_fallback`)."""
    try:
      aligned, _ = self.align(image)
    except (NoFaceError, AlignmentError) as error:
      return None, str(error)
    return aligned, ""

  def align_or_fallback(self, image: np.ndarray) -> tuple[np.ndarray | None, str, str]:
    """(crop, status, reason) with status in STATUSES:

    - (aligned face, "aligned", ""): a rung of the ladder found it;
    - no usable face on any rung (NoFaceError / AlignmentError) and on_no_face="center":
      (fit_square(image, size), "fallback", why no face);
    - the same with on_no_face="reject": (None, "rejected", why no face).
    """
    aligned, reason = self.align_or_none(image)
    if aligned is not None:
      return aligned, "aligned", ""
    if self.on_no_face == "center":
      return fit_square(_check_image(image), self.size), "fallback", reason
    return None, "rejected", reason


def _check_image(image) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
  return image


def align_dataset_stage(dataset, aligner: FaceAligner, num_parallel_calls: int = 1,
                        image_key: str = "image"):
  """tf.data stage that aligns the image of every element, keeping failures visible.

  Element structures (the image: uint8 [H, W, 3], any size):
    image                 -> (aligned, status, ok, reason)
    (image, *rest)        -> (aligned, *rest, status, ok, reason)
    {image_key: image, ...} -> same dict with image_key = aligned, plus "status", "ok", "reason"
  from `aligner.align_or_fallback`: aligned is uint8 [size, size, 3] (static
  shape); status the string "aligned", "fallback" (centred resize, with
  on_no_face="center") or "rejected"; ok = status != "rejected" (the image is
  usable); reason a string, "" when aligned. A rejected image gives zeros, so
  callers count and report rejects (`.filter(lambda *e: e[-2])` drops them).
  Detection runs in Python (tf.numpy_function); follow with `.cache(path)` to
  pay for it once.
  """
  import tensorflow as tf

  size = aligner.size

  def align_numpy(image):
    aligned, status, reason = aligner.align_or_fallback(image)
    if aligned is None:
      aligned = np.zeros((size, size, 3), np.uint8)
    return (aligned, np.bytes_(status.encode()), np.bool_(status != "rejected"),
            np.bytes_(reason.encode()))

  def align_tensor(image):
    image = tf.ensure_shape(tf.convert_to_tensor(image), [None, None, 3])
    if image.dtype != tf.uint8:
      raise TypeError(f"align_dataset_stage needs uint8 images, got {image.dtype}")
    aligned, status, ok, reason = tf.numpy_function(
        align_numpy, [image], [tf.uint8, tf.string, tf.bool, tf.string], name="align_face")
    aligned.set_shape([size, size, 3])
    for scalar in (status, ok, reason):
      scalar.set_shape([])
    return aligned, status, ok, reason

  def stage(*element):
    if len(element) == 1 and isinstance(element[0], dict):
      fields = dict(element[0])
      if image_key not in fields:
        raise KeyError(f"align_dataset_stage: element has no {image_key!r} key, only {sorted(fields)}")
      fields[image_key], fields["status"], fields["ok"], fields["reason"] = align_tensor(
          fields[image_key])
      return fields
    aligned, status, ok, reason = align_tensor(element[0])
    return (aligned, *element[1:], status, ok, reason)

  return dataset.map(stage, num_parallel_calls=num_parallel_calls, deterministic=True)
