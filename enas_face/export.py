"""SavedModel and TFLite export of a trained child.

The `serving_default` signature maps a batch of uint8 images [N, S, S, 3] to
L2-normalised embeddings [N, D]: e / max(||e||_2, eps). Per-channel
standardisation lives inside the model, so callers feed raw pixels.
Reload with `tf.saved_model.load(path).signatures["serving_default"]`; no
enas_face import is needed.

The TFLite files (`to_tflite`, `export_tflite`) compute the same function at
batch 1: uint8 [1, S, S, 3] -> float32 [1, D], in float32, with float16 weights
or fully in int8; each is checked against the serving function on real images
(`parity`) and runs under the LiteRT interpreter (`ai_edge_litert`, `runtimes.run_tflite`).
The ONNX file (`to_onnx`, `export_onnx`; the `onnx` extra) is the serving
function converted by tf2onnx, any batch, checked the same way under onnxruntime.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings

import keras
import numpy as np
import tensorflow as tf

from enas_face.evaluation import thresholds
from enas_face.evaluation import verification
from enas_face import runlog
from enas_face import runtimes

SIGNATURE_INPUT = "images"
SIGNATURE_OUTPUT = "embeddings"


class EmbeddingModule(tf.Module):
  """A tf.Module around the child with one uint8 -> unit-embedding signature."""

  def __init__(self, child: keras.Model, image_size: int):
    super().__init__(name="enas_face_embedder")
    self.child = child
    self.image_size = image_size
    self.serve = tf.function(
        self._embed,
        input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8,
                                       name=SIGNATURE_INPUT)])

  def _embed(self, images):
    embeddings = self.child(tf.cast(images, tf.float32), training=False)
    return {SIGNATURE_OUTPUT: tf.math.l2_normalize(embeddings, axis=-1, epsilon=1e-12)}


def export_saved_model(child: keras.Model, image_size: int, export_dir: str,
                       metadata: dict | None = None) -> str:
  """Writes the SavedModel to `export_dir` (replacing an older export atomically)."""
  module = EmbeddingModule(child, image_size)
  return save_module(module, module.serve, export_dir, metadata)


def save_module(module: tf.Module, serve, export_dir: str, metadata: dict | None = None) -> str:
  """tf.saved_model.save(module) with `serve` as serving_default and metadata as
  enas_face.json, written beside and swapped in, so a crash never leaves half an export."""
  tmp_dir = export_dir.rstrip("/") + ".tmp"
  shutil.rmtree(tmp_dir, ignore_errors=True)
  tf.saved_model.save(module, tmp_dir, signatures={"serving_default": serve})
  if metadata is not None:
    with open(os.path.join(tmp_dir, "enas_face.json"), "w") as f:
      json.dump(metadata, f, indent=2, sort_keys=True)
  shutil.rmtree(export_dir, ignore_errors=True)
  os.replace(tmp_dir, export_dir)
  return export_dir


def export_thresholds(child: keras.Model, image_size: int, export_dir: str, pairs,
                      pair_set: str) -> dict:
  """Calibrates the exported function's cosine scores on `pairs` (a data.base.VerificationPairs
  named `pair_set`) and writes EXPORT_DIR/thresholds.json (evaluation.thresholds.calibrate):
  the embeddings are the SavedModel's (`reference_embeddings`: no test-time flip), as a photo
  embedder computes them."""
  embeddings = reference_embeddings(child, image_size, pairs.images)
  scores = verification.cosine_scores(embeddings, pairs.pairs)
  calibration = thresholds.calibrate(scores, pairs.is_same, source={
      "pair_set": pair_set, "embeddings": "serving function, no test-time flip"})
  os.makedirs(export_dir, exist_ok=True)
  runlog.write_json(os.path.join(export_dir, runlog.THRESHOLDS), calibration)
  return calibration


# ------------------------------------------------------------------ TFLite
QUANTIZATIONS = ("none", "fp16", "int8")
TFLITE_FORMATS = {"tflite": "none", "tflite_fp16": "fp16", "tflite_int8": "int8"}
# Each format's file in the export folder; its parity report is report_path(file).
EXPORT_FILES = {"tflite": "model.tflite", "tflite_fp16": "model_fp16.tflite",
                "tflite_int8": "model_int8.tflite", "onnx": "model.onnx"}


def to_tflite(child: keras.Model, image_size: int, quantization: str = "none",
              representative_images: np.ndarray | None = None) -> bytes:
  """The child's serving function as a TFLite flatbuffer with batch 1.

  Input uint8 [1, S, S, 3] (raw pixels, as the SavedModel's), output float32
  [1, D], unit L2 norm, for every quantization:
  - "none": float32 weights and kernels;
  - "fp16": float16 weights, dequantised to float32 at load (float32 kernels);
  - "int8": full-integer post-training quantization, calibrated on
    `representative_images` (uint8 [N, S, S, 3]): every kernel is int8
    (TFLITE_BUILTINS_INT8 only, the L2 norm included); the uint8 pixels are cast and
    quantised inside the model, the unit embeddings dequantised to float32 at the end.
  """
  if quantization not in QUANTIZATIONS:
    raise ValueError(f"quantization={quantization!r}; choose from {', '.join(QUANTIZATIONS)}")
  if quantization == "int8":
    if representative_images is None or len(representative_images) == 0:
      raise ValueError("int8 quantization needs representative_images (uint8 [N, S, S, 3] "
                       "training images for calibration); got none")
    representative_images = _check_images(representative_images, image_size,
                                          "representative_images")
  module = EmbeddingModule(child, image_size)
  serve = tf.function(module._embed, input_signature=[
      tf.TensorSpec([1, image_size, image_size, 3], tf.uint8, name=SIGNATURE_INPUT)])
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [serve.get_concrete_function()], module)
  # The default lowering through a temporary SavedModel keeps Keras 3 variables as
  # VAR_HANDLE/READ_VARIABLE ops with nothing to initialise them (NaN embeddings, and int8
  # calibration fails in read_variable.cc); freezing the concrete function inlines them.
  converter.experimental_lower_to_saved_model = False
  if quantization in ("fp16", "int8"):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantization == "fp16":
    converter.target_spec.supported_types = [tf.float16]
  if quantization == "int8":
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    def representative_dataset():
      for image in representative_images:
        yield [image[None]]

    converter.representative_dataset = representative_dataset
  with warnings.catch_warnings():  # the uint8 input is cast inside: it has no statistics
    warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
    return converter.convert()


def _check_images(images, image_size: int, name: str) -> np.ndarray:
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (image_size,
                                                                           image_size, 3):
    raise ValueError(f"{name} must be uint8 [N, {image_size}, {image_size}, 3], got "
                     f"{images.dtype} {images.shape}")
  return images


def reference_embeddings(child: keras.Model, image_size: int, images: np.ndarray,
                         batch_size: int = 64) -> np.ndarray:
  """The SavedModel's embeddings [N, D] of uint8 `images`, computed by the same
  serving function (EmbeddingModule.serve) in TensorFlow, float32."""
  serve = EmbeddingModule(child, image_size).serve
  return np.concatenate([serve(tf.constant(images[i:i + batch_size]))[SIGNATURE_OUTPUT].numpy()
                         for i in range(0, len(images), batch_size)])


def parity(reference: np.ndarray, converted: np.ndarray) -> dict:
  """How far converted embeddings are from the reference, row by row: max |a - b| over all
  entries, and the mean and min of cos(a, b) = <a, b> / (|a| |b|)."""
  a, b = np.asarray(reference, np.float64), np.asarray(converted, np.float64)
  if a.shape != b.shape or a.ndim != 2 or not len(a):
    raise ValueError(f"parity needs two [N, D] arrays of one shape, N > 0; got {a.shape} "
                     f"and {b.shape}")
  cosine = np.einsum("nd,nd->n", a, b) / np.maximum(
      np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
  return {"num_images": int(len(a)), "max_abs_diff": float(np.max(np.abs(a - b))),
          "mean_cosine": float(np.mean(cosine)), "min_cosine": float(np.min(cosine))}


def export_tflite(child: keras.Model, image_size: int, path: str, quantization: str = "none",
                  representative_images: np.ndarray | None = None,
                  check_images: np.ndarray | None = None, pairs=None,
                  metadata: dict | None = None) -> dict:
  """Writes the .tflite at `path` (atomically), checks it against the SavedModel's serving
  function and writes that report to the .json beside it (model_int8.tflite ->
  model_int8.json); returns the report.

  Report: the file, its size and input/output tensors; `parity` (see `parity`) of the
  converted against the float embeddings of `check_images` (uint8, real images of the run);
  with `pairs` (a data.base.VerificationPairs), `verification`: the k-fold
  (pairs.num_folds) verification accuracy of the pairs' cosine scores with the float and
  with the converted embeddings (no test-time flip), and its change, converted - float.
  """
  check_images = _check_parity_images(check_images, image_size, path)
  flatbuffer = to_tflite(child, image_size, quantization, representative_images)
  runlog.write_bytes(path, flatbuffer)
  report = {"file": os.path.basename(path), "quantization": quantization,
            "bytes": len(flatbuffer), **runtimes.tflite_io(flatbuffer)}
  if quantization == "int8":
    report["representative_images"] = int(len(representative_images))
  return _finish_report(report, path, child, image_size, lambda x: runtimes.run_tflite(flatbuffer, x),
                        check_images, pairs, metadata)


def _check_parity_images(check_images, image_size: int, path: str) -> np.ndarray:
  if check_images is None or len(check_images) == 0:
    raise ValueError(f"{path}: the parity check needs check_images (uint8 [N, S, S, 3]); "
                     "got none")
  return _check_images(check_images, image_size, "check_images")


def _check_against_reference(child: keras.Model, image_size: int, run, check_images: np.ndarray,
                             pairs=None) -> dict:
  """`parity` of run(check_images) against the serving function's embeddings and, with
  `pairs`, `verification`: the accuracy with both embeddings and its change."""
  images = check_images if pairs is None else np.concatenate([check_images, pairs.images])
  reference = reference_embeddings(child, image_size, images)
  converted = run(images)
  n = len(check_images)
  report = {"parity": parity(reference[:n], converted[:n])}
  if pairs is not None:
    accuracy = {}
    for name, embeddings in (("float", reference[n:]), ("converted", converted[n:])):
      accuracy[name] = verification.verification_report(
          embeddings, pairs.pairs, pairs.is_same,
          num_folds=pairs.num_folds)["verification_accuracy"]
    report["verification"] = {"num_pairs": int(len(pairs.pairs)),
                              "num_folds": int(pairs.num_folds),
                              "accuracy_float": accuracy["float"],
                              "accuracy_converted": accuracy["converted"],
                              "accuracy_change": accuracy["converted"] - accuracy["float"]}
  return report


# -------------------------------------------------------------------- ONNX
ONNX_OPSET = 17


def to_onnx(child: keras.Model, image_size: int, opset: int = ONNX_OPSET) -> bytes:
  """The serving function as a serialized ONNX model (tf2onnx): input `images` uint8
  [N, S, S, 3] (any N), output `embeddings` float32 [N, D], unit L2 norm, float32 weights."""
  try:
    import tf2onnx
  except ImportError as e:
    raise ImportError(f"ONNX export needs {runtimes.ONNX_EXTRA}: {e}") from e
  module = EmbeddingModule(child, image_size)
  proto, _ = tf2onnx.convert.from_function(
      module.serve, input_signature=module.serve.input_signature, opset=opset)
  return proto.SerializeToString()


def export_onnx(child: keras.Model, image_size: int, path: str,
                check_images: np.ndarray | None = None, pairs=None,
                metadata: dict | None = None, opset: int = ONNX_OPSET) -> dict:
  """Writes the .onnx at `path` (atomically), checks it under onnxruntime against the
  SavedModel's serving function as `export_tflite` does and writes the report to
  report_path(path) (model.onnx -> model_onnx.json); returns the report."""
  check_images = _check_parity_images(check_images, image_size, path)
  serialized = to_onnx(child, image_size, opset)
  runlog.write_bytes(path, serialized)
  session = runtimes.onnx_session(serialized)

  def describe(node) -> dict:
    return {"name": node.name, "type": node.type,
            "shape": [d if isinstance(d, int) else None for d in node.shape]}

  report = {"file": os.path.basename(path), "quantization": "none", "opset": opset,
            "bytes": len(serialized), "input": describe(session.get_inputs()[0]),
            "output": describe(session.get_outputs()[0])}
  return _finish_report(report, path, child, image_size, lambda x: runtimes.run_onnx(serialized, x),
                        check_images, pairs, metadata)


def _finish_report(report: dict, path: str, child, image_size: int, run, check_images, pairs,
                   metadata: dict | None) -> dict:
  """The file's report plus its check against the reference (`run`: images -> embeddings),
  written beside the file and returned."""
  report.update(_check_against_reference(child, image_size, run, check_images, pairs))
  if metadata is not None:
    report["metadata"] = metadata
  runlog.write_json(report_path(path), report)
  return report


def report_path(model_path: str) -> str:
  """The parity report beside an exported file: model_int8.tflite -> model_int8.json,
  model.onnx -> model_onnx.json (model.json is model.tflite's)."""
  stem, ext = os.path.splitext(model_path)
  return stem + ("_onnx" if ext == ".onnx" else "") + ".json"
