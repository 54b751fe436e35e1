import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from enas_face import export
from enas_face.spaces import enas_macro
from enas_face.child import FixedChild
from enas_face.config import ModelConfig

RELOAD = """
import sys, numpy as np, tensorflow as tf
assert "enas_face" not in sys.modules
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
images = np.load(sys.argv[2])
np.save(sys.argv[3], serve(images=tf.constant(images))["embeddings"].numpy())
"""


def test_saved_model_reloads_in_a_fresh_process_with_the_same_embeddings(tmp_path):
  config = ModelConfig(image_size=16, base_filters=4, embedding_dim=8)
  model = FixedChild(config, enas_macro.default_architecture(5)).build_for_input()
  model.standardize.set_statistics([100.0, 110.0, 120.0], [50.0, 55.0, 60.0])
  # Move BN statistics away from their defaults so inference mode really is exercised.
  model(tf.random.uniform([8, 16, 16, 3], 0, 255), training=True)
  images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
  expected = tf.math.l2_normalize(model(images.astype(np.float32), training=False), -1).numpy()
  path = export.export_saved_model(model, 16, str(tmp_path / "saved_model"),
                                   metadata={"image_size": 16})
  assert os.path.exists(os.path.join(path, "enas_face.json"))
  np.save(tmp_path / "images.npy", images)
  subprocess.run([sys.executable, "-c", RELOAD, path, str(tmp_path / "images.npy"),
                  str(tmp_path / "out.npy")], check=True, cwd=str(tmp_path),
                 env={**os.environ, "PYTHONPATH": ""})
  reloaded = np.load(tmp_path / "out.npy")
  assert reloaded.shape == (5, 8)
  np.testing.assert_allclose(np.linalg.norm(reloaded, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(reloaded, expected, atol=1e-5)


def test_export_replaces_an_older_export(tmp_path):
  config = ModelConfig(image_size=8, num_layers=2, num_reductions=1, base_filters=4,
                       embedding_dim=4)
  model = FixedChild(config, enas_macro.default_architecture(2)).build_for_input()
  target = str(tmp_path / "sm")
  export.export_saved_model(model, 8, target)
  export.export_saved_model(model, 8, target)
  assert not os.path.exists(target + ".tmp")
  assert tf.saved_model.load(target).signatures["serving_default"] is not None
