"""`Embedder`: a trained or exported model applied to photos.

    embedder = Embedder.load(path)          # a run folder, a SavedModel folder, .tflite, .onnx
    faces = embedder.embed("photo.jpg")     # [FaceEmbedding]: every face found
    result = embedder.verify("a.jpg", "b.jpg")

A photo goes the way training's images went (`--align=online`), through the same
functions: `data.images.read_image` decodes any file to 8-bit RGB (grayscale becomes
three equal channels, EXIF orientation applied), `data.align.FaceAligner` finds the faces
(MTCNN with its retries) and warps each onto the ArcFace template at the model's input
size S, and with on_no_face="center" a photo without a face becomes its centred square
resize (`data.real.fit_square`), status "fallback". The model maps the uint8 crops
[N, S, S, 3] to unit embeddings e / ||e||_2 (the serving function of export.py, or the
same function converted to TFLite / ONNX).

Decision: same person iff cos(e_a, e_b) = <e_a, e_b> > t, with t read from the model's
thresholds.json (export.py writes it beside every export; evaluation/thresholds.py) or
given by the user. A .tflite or .onnx model runs without TensorFlow (runtimes.py);
MTCNN detection itself runs on TensorFlow.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Sequence

import numpy as np

from enas_face.data import align
from enas_face.data import images as image_io
from enas_face.data.real import fit_square
from enas_face.evaluation import thresholds
from enas_face import runlog
from enas_face import runtimes

KINDS = ("run", "saved_model", "tflite", "onnx")


class EmbedderError(ValueError):
  """A model path that cannot be loaded; the message names it."""


class NoFaceInPhoto(ValueError):
  """A photo in which no usable face was found; the message names the photo and says why."""


@dataclasses.dataclass(frozen=True, eq=False)
class FaceEmbedding:
  """One face of one photo: where it is and its unit embedding.

  box (x, y, w, h) and landmarks [5, 2] in the photo's pixels (None for a "fallback":
  no face found, the centred square used, on_no_face="center"); status "aligned" or
  "fallback"; rung: the detector's retry that found it (data.align.RUNGS, "" for a
  fallback); index: the face's position in the photo, left to right."""
  photo: str
  index: int
  box: tuple[float, float, float, float]
  landmarks: np.ndarray | None
  confidence: float
  status: str
  embedding: np.ndarray
  rung: str = ""

  def to_json(self, with_embedding: bool = True) -> dict:
    out = {"photo": self.photo, "face": self.index, "status": self.status, "rung": self.rung,
           "box": [round(v, 1) for v in self.box], "confidence": round(self.confidence, 4),
           "landmarks": (None if self.landmarks is None
                         else np.round(self.landmarks, 1).tolist())}
    if with_embedding:
      out["embedding"] = [round(float(v), 6) for v in self.embedding]
    return out


@dataclasses.dataclass(frozen=True)
class Verification:
  """cos(e_a, e_b) of the chosen face of each photo, and the decision score > threshold."""
  score: float
  same: bool
  threshold: float
  threshold_name: str
  a: FaceEmbedding
  b: FaceEmbedding

  def to_json(self) -> dict:
    return {"photo_a": self.a.photo, "photo_b": self.b.photo, "score": round(self.score, 6),
            "same": self.same, "threshold": round(self.threshold, 6),
            "threshold_name": self.threshold_name,
            "box_a": self.a.to_json(False)["box"], "box_b": self.b.to_json(False)["box"]}


def model_kind(path: str) -> str:
  """Which of KINDS the model at `path` is; EmbedderError naming it otherwise."""
  if os.path.isdir(path):
    if os.path.isfile(os.path.join(path, runlog.CONFIG)):
      return "run"
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
      return "saved_model"
    raise EmbedderError(f"{path}: neither a run folder (no {runlog.CONFIG}) nor a SavedModel "
                        "folder (no saved_model.pb)")
  if not os.path.exists(path):
    raise EmbedderError(f"{path}: no such model file or folder")
  extension = os.path.splitext(path)[1].lower()
  if extension in (".tflite", ".onnx"):
    return extension[1:]
  raise EmbedderError(f"{path}: not a model (a run folder, a SavedModel folder, a .tflite or "
                      "an .onnx file)")


def fingerprint(paths: Sequence[str]) -> str:
  """sha256 over the files' names (relative to their common folder) and bytes: the identity
  of a model's weights, so a gallery can refuse another model's embeddings."""
  digest = hashlib.sha256()
  root = os.path.commonpath([os.path.abspath(p) for p in paths]) if len(paths) > 1 else ""
  for path in sorted(paths):
    name = os.path.relpath(os.path.abspath(path), root) if root else os.path.basename(path)
    digest.update(name.encode() + b"\0")
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
  return "sha256:" + digest.hexdigest()[:32]


def _saved_model_files(folder: str) -> list[str]:
  files = [os.path.join(folder, "saved_model.pb")]
  variables = os.path.join(folder, "variables")
  if os.path.isdir(variables):
    files += [os.path.join(variables, name) for name in sorted(os.listdir(variables))]
  return files


def read_calibration(path: str) -> dict | None:
  """The thresholds.json at `path` (validated), or None when there is none."""
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      obj = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise thresholds.ThresholdError(f"{path}: unreadable thresholds file ({e})") from e
  return thresholds.validate(obj, path)


class Embedder:
  """A face model (`load`) plus the aligner that prepares photos for it.

  embed_crops(uint8 [N, S, S, 3]) -> float32 [N, D] unit embeddings; embed(photo) ->
  [FaceEmbedding] for every face; embed_face(photo) -> the chosen face (FaceAligner's
  policy); verify(a, b) -> Verification at `threshold` (from thresholds.json by name, or a
  number)."""

  def __init__(self, path: str, kind: str, image_size: int, embed_batch, model_files: list[str],
               calibration: dict | None, threshold: str = thresholds.DEFAULT_CHOICE,
               aligner: align.FaceAligner | None = None, thresholds_path: str = "",
               **aligner_options):
    self.path = path
    self.kind = kind
    self.image_size = int(image_size)
    self._embed_batch = embed_batch
    self.model_files = model_files
    self.calibration = calibration
    self.thresholds_path = thresholds_path
    self.threshold_name = threshold
    if calibration is not None or _is_number(threshold):
      self._threshold: float | None = thresholds.choose(calibration, threshold)
    else:
      self._threshold = None  # verify / identify explain, when asked
    self.aligner = aligner or align.FaceAligner(size=self.image_size, **aligner_options)
    if self.aligner.size != self.image_size:
      raise ValueError(f"the aligner makes {self.aligner.size}x{self.aligner.size} crops; "
                       f"{path} takes {self.image_size}x{self.image_size}")
    self._fingerprint: str | None = None
    self.embedding_dim = int(self.embed_crops(
        np.zeros((1, self.image_size, self.image_size, 3), np.uint8)).shape[1])

  # ------------------------------------------------------------------ loading
  @classmethod
  def load(cls, path: str, threshold: str = thresholds.DEFAULT_CHOICE,
           aligner: align.FaceAligner | None = None, num_threads: int = 1,
           **aligner_options) -> "Embedder":
    """The model at `path`: a run folder (its latest checkpoint), a SavedModel folder, a
    .tflite or an .onnx file; thresholds from the thresholds.json of its export (beside the
    file; in the SavedModel folder; a run's export folder). aligner_options go to
    data.align.FaceAligner (policy, min_confidence, detect_padding, on_no_face, ...)."""
    kind = model_kind(path)
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    thresholds_path = os.path.join(folder, runlog.THRESHOLDS)
    if kind == "run":
      image_size, embed_batch, files, thresholds_path = _load_run(path)
    elif kind == "saved_model":
      image_size, embed_batch = _load_saved_model(path)
      files = _saved_model_files(path)
    elif kind == "tflite":
      runner = runtimes.TFLiteRunner(path, num_threads)
      image_size, embed_batch, files = runner.image_size, runner, [path]
    else:
      image_size, embed_batch = _load_onnx(path)
      files = [path]
    return cls(path, kind, image_size, embed_batch, files, read_calibration(thresholds_path),
               threshold, aligner, thresholds_path, **aligner_options)

  @property
  def fingerprint(self) -> str:
    """`fingerprint` of the model's weight files (computed once)."""
    if self._fingerprint is None:
      self._fingerprint = fingerprint(self.model_files)
    return self._fingerprint

  def describe(self) -> dict:
    """What a gallery file records of the model it was made with."""
    return {"path": os.path.abspath(self.path), "kind": self.kind,
            "fingerprint": self.fingerprint, "image_size": self.image_size,
            "embedding_dim": self.embedding_dim}

  @property
  def threshold(self) -> float:
    """The decision threshold t (same iff cosine > t); ThresholdError when the model has no
    thresholds.json and no number was given."""
    if self._threshold is None:
      raise thresholds.ThresholdError(
          f"--threshold={self.threshold_name}: {self.path} has no {runlog.THRESHOLDS} (looked "
          f"for {self.thresholds_path}; --mode=export writes it); pass a number, e.g. "
          "--threshold=0.3")
    return self._threshold

  # --------------------------------------------------------------- embedding
  def embed_crops(self, crops: np.ndarray) -> np.ndarray:
    """float32 [N, D] unit embeddings of aligned uint8 crops [N, S, S, 3]."""
    crops = np.asarray(crops)
    size = self.image_size
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
      raise ValueError(f"{self.path} embeds uint8 [N, {size}, {size}, 3] crops, got "
                       f"{crops.dtype} {crops.shape}")
    if not len(crops):
      return np.zeros((0, getattr(self, "embedding_dim", 0)), np.float32)
    return np.asarray(self._embed_batch(crops), np.float32)

  def read(self, photo) -> tuple[np.ndarray, str]:
    """(uint8 RGB [H, W, 3], its name) of a path (data.images.read_image: ImageError names
    the file) or of an image array (uint8 [H, W, 3] or [H, W] grayscale)."""
    if isinstance(photo, (str, os.PathLike)):
      return image_io.read_image(photo), os.fspath(photo)
    image = np.asarray(photo)
    if image.ndim == 2:
      image = np.repeat(image[:, :, None], 3, axis=2)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
      raise ValueError(f"an image array must be uint8 [H, W, 3] or [H, W], got {image.dtype} "
                       f"{image.shape}")
    return image, "<array>"

  def crops(self, image: np.ndarray) -> list[tuple[np.ndarray, align.Face | None, str]]:
    """(crop, face, status) for every usable face of `image`, left to right; with
    on_no_face="center" and none found, [(fit_square(image), None, "fallback")]."""
    found = []
    for face in sorted(self.aligner.detect(image), key=lambda f: f.box[0]):
      try:
        found.append((align.warp_face(image, face.landmarks, self.image_size), face, "aligned"))
      except align.AlignmentError:
        continue
    if not found and self.aligner.on_no_face == "center":
      found.append((fit_square(image, self.image_size), None, "fallback"))
    return found

  def embed(self, photos):
    """For one photo (a path or an image array): [FaceEmbedding] of every face found ([]
    when none, unless on_no_face="center"). For a list of photos: a list of such lists."""
    if isinstance(photos, (list, tuple)):
      return [self.embed(photo) for photo in photos]
    image, name = self.read(photos)
    found = self.crops(image)
    if not found:
      return []
    embeddings = self.embed_crops(np.stack([crop for crop, _, _ in found]))
    return [_face_embedding(name, index, image, face, status, embedding)
            for index, ((_, face, status), embedding) in enumerate(zip(found, embeddings))]

  def embed_face(self, photo) -> FaceEmbedding:
    """The embedding of the one face FaceAligner's policy chooses in `photo`; NoFaceInPhoto
    naming the photo when none is usable (and on_no_face="reject")."""
    image, name = self.read(photo)
    found = self.crops(image)
    if not found:
      raise NoFaceInPhoto(f"{name}: no face found (min confidence "
                          f"{self.aligner.min_confidence:g}; --on_no_face=center keeps the "
                          "centred square)")
    index = 0
    if found[0][1] is not None:
      chosen = align.choose_face([face for _, face, _ in found], image.shape, self.aligner.policy)
      index = next(i for i, (_, face, _) in enumerate(found) if face is chosen)
    crop, face, status = found[index]
    return _face_embedding(name, index, image, face, status, self.embed_crops(crop[None])[0])

  def verify(self, a, b, threshold: float | None = None) -> Verification:
    """cos of the chosen faces of photos a and b, and the decision cos > threshold (the
    model's, unless given)."""
    face_a, face_b = self.embed_face(a), self.embed_face(b)
    t = self.threshold if threshold is None else float(threshold)
    score = float(np.dot(face_a.embedding, face_b.embedding))
    name = self.threshold_name if threshold is None else "given"
    return Verification(score, score > t, t, name, face_a, face_b)


def _is_number(text: str) -> bool:
  try:
    float(text)
  except (TypeError, ValueError):
    return False
  return True


def _face_embedding(name: str, index: int, image: np.ndarray, face: align.Face | None,
                    status: str, embedding: np.ndarray) -> FaceEmbedding:
  if face is None:  # the centred square of fit_square
    height, width = image.shape[:2]
    side = min(height, width)
    box = ((width - side) // 2, (height - side) // 2, side, side)
    return FaceEmbedding(name, index, tuple(float(v) for v in box), None, 0.0, status, embedding)
  return FaceEmbedding(name, index, face.box, face.landmarks, face.confidence, status, embedding,
                       face.rung)


# ----------------------------------------------------------------- backends
def _load_run(path: str):
  """A run folder's latest child behind the SavedModel's serving function."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  from enas_face import export  # pylint: disable=import-outside-toplevel
  from enas_face.training import checkpoints  # pylint: disable=import-outside-toplevel

  run = checkpoints.load_run(path, "--model_path")
  size = run.config.model.image_size
  serve = export.EmbeddingModule(run.child, size).serve
  prefix = run.checkpoint
  files = tf.io.gfile.glob(prefix + ".*")
  export_dir = run.config.export_dir or os.path.join(path, runlog.SAVED_MODEL_DIR)

  def embed(crops):
    return np.concatenate([serve(tf.constant(crops[i:i + 256]))[export.SIGNATURE_OUTPUT].numpy()
                           for i in range(0, len(crops), 256)])

  return size, embed, files, os.path.join(export_dir, runlog.THRESHOLDS)


def _load_saved_model(path: str):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    serve = tf.saved_model.load(path).signatures["serving_default"]
  except (OSError, ValueError, KeyError) as e:
    raise EmbedderError(f"{path}: not a loadable SavedModel with a serving_default signature "
                        f"({e})") from e
  (spec,) = serve.structured_input_signature[1].values()
  size = spec.shape[1]
  if size is None or spec.shape[1] != spec.shape[2] or spec.dtype != tf.uint8:
    raise EmbedderError(f"{path}: its serving_default takes {spec.dtype.name} {spec.shape}, "
                        "not uint8 [N, S, S, 3] images")
  (input_name,) = serve.structured_input_signature[1]
  output_name = next(iter(serve.structured_outputs))

  def embed(crops):
    return np.concatenate([serve(**{input_name: tf.constant(crops[i:i + 256])})[output_name]
                           .numpy() for i in range(0, len(crops), 256)])

  return int(size), embed


def _load_onnx(path: str):
  session = runtimes.onnx_session(path)
  shape = session.get_inputs()[0].shape
  if len(shape) != 4 or not isinstance(shape[1], int):
    raise EmbedderError(f"{path}: its input is {shape}, not [N, S, S, 3] images")
  name = session.get_inputs()[0].name
  return shape[1], lambda crops: session.run(None, {name: crops})[0]
