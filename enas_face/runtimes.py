"""Running model files without TensorFlow: LiteRT for .tflite, onnxruntime for .onnx, dlib
for dlib's face recognition model.

    embeddings = run_tflite("model.tflite", images)   # uint8 [N, S, S, 3] -> float32 [N, D]
    embeddings = run_onnx("model.onnx", images)
    embeddings = OnnxRunner("any.onnx")(images)       # its input read from the model
    descriptor, status = DlibFaceEmbedder("models/dlib").embed(photo)  # its own preprocessing

Export (export.py) checks its files with these; the photo embedder (recognition/) runs
them, so a .tflite embedder imports LiteRT and numpy only; distillation teachers
(training/teachers.py, tools/teacher_embeddings.py) run ONNX and dlib models with them.
"""
from __future__ import annotations

import os

import numpy as np

ONNX_EXTRA = "the onnx extra (pip install -e '.[onnx]': tf2onnx, onnxruntime)"
DLIB_EXTRA = ("the dlib extra (pip install 'enas_face[dlib]', or -e '.[dlib]' in a checkout: "
              "dlib-bin, prebuilt dlib wheels)")
# dlib's public face recognition ResNet and the 5-point landmark model that makes its chips.
DLIB_EMBEDDER_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
DLIB_FILES = (DLIB_EMBEDDER_FILE, DLIB_LANDMARKS_FILE)
DLIB_NO_FACE = ("whole_image", "skip")


class ModelInputError(ValueError):
  """A model whose input this module cannot feed; the message says what it takes."""


def tflite_interpreter(model: bytes | str, num_threads: int = 1):
  """A LiteRT interpreter of a .tflite path or its bytes (tensors not yet allocated)."""
  from ai_edge_litert.interpreter import Interpreter
  source = {"model_path": model} if isinstance(model, str) else {"model_content": model}
  return Interpreter(**source, num_threads=num_threads)


class TFLiteRunner:
  """A .tflite embedder (a path or its bytes) under one LiteRT interpreter, reused across
  calls: runner(images) -> float32 [N, D] of uint8 `images` [N, S, S, 3].

  A model with a fixed batch B is fed B images at a time (the last chunk padded); a
  dynamic batch is resized to N. A quantised input is fed round(x / scale) + zero_point,
  a quantised output dequantised as (q - zero_point) * scale.
  """

  def __init__(self, model: bytes | str, num_threads: int = 1):
    self.interpreter = tflite_interpreter(model, num_threads)
    (self.input,), (self.output,) = (self.interpreter.get_input_details(),
                                     self.interpreter.get_output_details())
    self.interpreter.allocate_tensors()
    self.batch = int(self.input["shape"][0])

  @property
  def image_size(self) -> int:
    """S of the input [B, S, S, 3]."""
    return int(self.input["shape"][1])

  @property
  def embedding_dim(self) -> int:
    return int(self.output["shape"][-1])

  def __call__(self, images: np.ndarray) -> np.ndarray:
    inp, out, interpreter = self.input, self.output, self.interpreter
    images = np.asarray(images)
    if inp["shape_signature"][0] == -1 and len(images) and len(images) != self.batch:
      self.batch = len(images)
      interpreter.resize_tensor_input(inp["index"], [self.batch, *images.shape[1:]])
      interpreter.allocate_tensors()
    batch = self.batch
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    chunks = []
    for start in range(0, len(images), batch):
      chunk = images[start:start + batch]
      n = len(chunk)
      if n < batch:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
      if in_scale:
        info = np.iinfo(inp["dtype"])
        chunk = np.clip(np.round(chunk / in_scale) + in_zero, info.min, info.max)
      interpreter.set_tensor(inp["index"], chunk.astype(inp["dtype"]))
      interpreter.invoke()
      result = interpreter.get_tensor(out["index"])[:n]
      if out_scale:
        result = (result.astype(np.float32) - out_zero) * out_scale
      chunks.append(result.astype(np.float32))
    if not chunks:
      return np.zeros((0, self.embedding_dim), np.float32)
    return np.concatenate(chunks)


def run_tflite(model: bytes | str, images: np.ndarray, num_threads: int = 1) -> np.ndarray:
  """Embeddings [N, D] (float32) of uint8 `images` [N, S, S, 3] under LiteRT (`TFLiteRunner`)."""
  return TFLiteRunner(model, num_threads)(images)


def tflite_io(flatbuffer: bytes) -> dict:
  """Name, dtype, shape and quantization (scale, zero point) of the model's input and output."""
  interpreter = tflite_interpreter(flatbuffer)

  def describe(detail: dict) -> dict:
    scale, zero_point = detail["quantization"]
    return {"name": detail["name"], "dtype": np.dtype(detail["dtype"]).name,
            "shape": [int(d) for d in detail["shape"]],
            "quantization": {"scale": float(scale), "zero_point": int(zero_point)}}

  (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
  return {"input": describe(inp), "output": describe(out)}


def onnx_session(model: bytes | str):
  try:
    import onnxruntime
  except ImportError as e:
    raise ImportError(f"running ONNX needs {ONNX_EXTRA}: {e}") from e
  return onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])


def run_onnx(model: bytes | str, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """Embeddings [N, D] (float32) of uint8 `images` under onnxruntime (CPU); `model` is a
  .onnx path or its bytes."""
  session = onnx_session(model)
  name = session.get_inputs()[0].name
  return np.concatenate([session.run(None, {name: images[i:i + batch_size]})[0]
                         for i in range(0, len(images), batch_size)]).astype(np.float32)




class OnnxRunner:
  """An .onnx embedder under onnxruntime (CPU), fed as its input signature says:
  runner(uint8 images [N, S, S, 3]) -> float32 [N, D].

  The first input is read from the model: uint8, float32 or float16; NHWC [N, S, S, 3] or
  NCHW [N, 3, S, S] (transposed to it); a fixed batch B is fed B images at a time (the last
  chunk padded). A float input is fed x' = (x - mean) / std (mean 0, std 1: pixels in
  [0, 255], as export.py's models take them; insightface's ONNX models: 127.5, 127.5).
  ModelInputError when the input is none of these.
  """

  DTYPES = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32,
            "tensor(float16)": np.float16}

  def __init__(self, model: bytes | str, mean: float = 0.0, std: float = 1.0,
               batch_size: int = 64):
    self.session = onnx_session(model)
    inp = self.session.get_inputs()[0]
    self.input_name, shape = inp.name, list(inp.shape)
    if inp.type not in self.DTYPES or len(shape) != 4:
      raise ModelInputError(f"the model's input {inp.name!r} is {inp.type} {shape}; expected "
                            "uint8 or float images [N, S, S, 3] (NHWC) or [N, 3, S, S] (NCHW)")
    if shape[3] == 3:
      self.layout, sides = "NHWC", shape[1:3]
    elif shape[1] == 3:
      self.layout, sides = "NCHW", shape[2:4]
    else:
      raise ModelInputError(f"the model's input {inp.name!r} {shape} has no axis of 3 colour "
                            "channels at 1 (NCHW) or 3 (NHWC)")
    if not all(isinstance(side, int) for side in sides) or sides[0] != sides[1]:
      raise ModelInputError(f"the model's input {inp.name!r} {shape} has no fixed square "
                            "image size")
    self.image_size = int(sides[0])
    self.dtype = self.DTYPES[inp.type]
    self.mean, self.std = float(mean), float(std)
    self.batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    self.batch_size = self.batch or batch_size
    self.embedding_dim = int(self(np.zeros((1, self.image_size, self.image_size, 3),
                                           np.uint8)).shape[-1])

  def _feed(self, images: np.ndarray) -> np.ndarray:
    if self.dtype == np.uint8:
      x = np.clip(np.round(images), 0, 255).astype(np.uint8)
    else:
      x = ((images.astype(np.float32) - self.mean) / self.std).astype(self.dtype)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if self.layout == "NCHW" else x)

  def __call__(self, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.shape[1:] != (self.image_size, self.image_size, 3):
      raise ModelInputError(f"images {images.shape}; the model takes "
                            f"[N, {self.image_size}, {self.image_size}, 3]")
    chunks = []
    for start in range(0, len(images), self.batch_size):
      chunk = images[start:start + self.batch_size]
      n = len(chunk)
      if self.batch and n < self.batch:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, axis=0)])
      out = self.session.run(None, {self.input_name: self._feed(chunk)})[0]
      chunks.append(np.asarray(out, np.float32).reshape(len(chunk), -1)[:n])
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def is_dlib_folder(path: str) -> bool:
  """Whether `path` is a folder holding dlib's embedder and 5-point landmark model."""
  return os.path.isdir(path) and all(os.path.isfile(os.path.join(path, name))
                                     for name in DLIB_FILES)


def import_dlib():
  try:
    import dlib
  except ImportError as e:
    raise ImportError(f"dlib's face model needs {DLIB_EXTRA}: {e}") from e
  return dlib


class DlibFaceEmbedder:
  """dlib's face recognition ResNet with dlib's own preprocessing of a photo:
  embed(RGB uint8 [H, W, 3]) -> (descriptor float32 [128] or None, status).

  Its HOG frontal face detector (the image upsampled `upsample` times) finds the faces;
  of several, the one maximising area * (1 - d^2 / r^2) (d: box centre to image centre,
  r: half the diagonal; data.align.choose_face's largest_central). The 5-point landmark
  model places the face and compute_face_descriptor warps a 150x150 chip with 25 %
  padding (dlib's defaults) and embeds it: status "detected". No face found: with
  on_no_face="whole_image" the landmark model is given the whole image as the face box
  (status "whole_image": right for photos that are tight face crops), with "skip"
  (None, "no_face"). Descriptors are not unit vectors (dlib compares Euclidean
  distances < 0.6); distillation and verification normalise them.
  """

  def __init__(self, folder: str, upsample: int = 1, on_no_face: str = "whole_image",
               num_jitters: int = 0):
    if on_no_face not in DLIB_NO_FACE:
      raise ValueError(f"on_no_face must be one of {DLIB_NO_FACE}, got {on_no_face!r}")
    if not is_dlib_folder(folder):
      raise ModelInputError(f"{folder}: not a folder with {' and '.join(DLIB_FILES)}")
    dlib = import_dlib()
    self.dlib, self.upsample, self.on_no_face = dlib, int(upsample), on_no_face
    self.num_jitters = int(num_jitters)
    self.detector = dlib.get_frontal_face_detector()
    self.landmarks = dlib.shape_predictor(os.path.join(folder, DLIB_LANDMARKS_FILE))
    self.model = dlib.face_recognition_model_v1(os.path.join(folder, DLIB_EMBEDDER_FILE))
    self.embedding_dim = 128

  def face_box(self, image: np.ndarray):
    """(dlib.rectangle of the chosen face, "detected"), or (None, "no_face")."""
    faces = list(self.detector(image, self.upsample))
    if not faces:
      return None, "no_face"
    height, width = image.shape[:2]
    half_diagonal_squared = (height ** 2 + width ** 2) / 4.0

    def score(box):
      dx = (box.left() + box.right()) / 2.0 - (width - 1) / 2.0
      dy = (box.top() + box.bottom()) / 2.0 - (height - 1) / 2.0
      return box.width() * box.height() * (1.0 - (dx * dx + dy * dy) / half_diagonal_squared)

    return max(faces, key=score), "detected"

  def embed(self, image: np.ndarray) -> tuple[np.ndarray | None, str]:
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
      raise ModelInputError(f"expected an RGB uint8 [H, W, 3] image, got {image.shape}")
    box, status = self.face_box(image)
    if box is None:
      if self.on_no_face == "skip":
        return None, "no_face"
      box, status = self.dlib.rectangle(0, 0, image.shape[1] - 1, image.shape[0] - 1), \
          "whole_image"
    shape = self.landmarks(image, box)
    descriptor = self.model.compute_face_descriptor(image, shape, self.num_jitters)
    return np.asarray(descriptor, np.float32), status
