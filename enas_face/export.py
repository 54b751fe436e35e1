"""SavedModel export of a trained child.

The `serving_default` signature maps a batch of uint8 images [N, S, S, 3] to
L2-normalised embeddings [N, D]: e / max(||e||_2, eps). Per-channel
standardisation lives inside the model, so callers feed raw pixels.
Reload with `tf.saved_model.load(path).signatures["serving_default"]`; no
enas_face import is needed.
"""
from __future__ import annotations

import json
import os
import shutil

import keras
import tensorflow as tf

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
  tmp_dir = export_dir.rstrip("/") + ".tmp"
  shutil.rmtree(tmp_dir, ignore_errors=True)
  tf.saved_model.save(module, tmp_dir, signatures={"serving_default": module.serve})
  if metadata is not None:
    with open(os.path.join(tmp_dir, "enas_face.json"), "w") as f:
      json.dump(metadata, f, indent=2, sort_keys=True)
  shutil.rmtree(export_dir, ignore_errors=True)
  os.replace(tmp_dir, export_dir)
  return export_dir
