"""Classification heads on top of the face embedding.

Kept apart from the child (insightface's split): the head only exists for
training; verification and export use the embedding alone.
"""
from __future__ import annotations

import keras
from keras import layers


@keras.saving.register_keras_serializable("enas_face")
class SoftmaxHead(layers.Layer):
  """logits = e W + b, for softmax cross-entropy over the training identities."""

  def __init__(self, num_classes: int, **kwargs):
    super().__init__(**kwargs)
    if num_classes < 2:
      raise ValueError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
    self.num_classes = num_classes
    self.dense = layers.Dense(num_classes, name="logits")

  def build(self, input_shape):
    self.dense.build(input_shape)

  def call(self, embeddings, training=False):
    return self.dense(embeddings)

  def get_config(self):
    return {**super().get_config(), "num_classes": self.num_classes}
