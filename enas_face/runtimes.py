"""Running exported files without TensorFlow: LiteRT for .tflite, onnxruntime for .onnx.

    embeddings = run_tflite("model.tflite", images)   # uint8 [N, S, S, 3] -> float32 [N, D]
    embeddings = run_onnx("model.onnx", images)

Export (export.py) checks its files with these; the photo embedder (recognition/) runs
them, so a .tflite embedder imports LiteRT and numpy only.
"""
from __future__ import annotations

import numpy as np

ONNX_EXTRA = "the onnx extra (pip install -e '.[onnx]': tf2onnx, onnxruntime)"


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


