"""The test oracle of the analytic FLOPs count: TensorFlow's profiler on a frozen graph.

Only tests use it (enas_face counts FLOPs from the architecture: spaces/enas_macro.py).
"""
from __future__ import annotations

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants


def profiler_flops(model, image_size: int) -> int:
  """Floating-point operations of one batch-1 inference (a multiply-add counts 2).

  Freezes the inference graph (variables -> constants) and reads `total_float_ops` from
  the TF profiler.
  """
  spec = tf.TensorSpec([1, image_size, image_size, 3], tf.float32)
  concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
  graph = tf.Graph()
  with graph.as_default():
    tf.graph_util.import_graph_def(frozen.graph.as_graph_def(), name="")
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                            cmd="op", options=options)
  return int(profile.total_float_ops)
