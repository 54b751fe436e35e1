import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_face import export
from enas_face import runtimes
from enas_face.evaluation import verification
from enas_face.spaces import enas_macro
from enas_face.models.child import FixedChild
from enas_face.config import ModelConfig
from enas_face.data.base import VerificationPairs

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


LITERT_RUN = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
interpreter.allocate_tensors()
(inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
assert inp["dtype"] == np.uint8 and list(inp["shape"]) == [1, 16, 16, 3], inp
assert out["dtype"] == np.float32 and list(out["shape"]) == [1, 8], out
embeddings = []
for image in np.load(sys.argv[2]):
  interpreter.set_tensor(inp["index"], image[None])
  interpreter.invoke()
  embeddings.append(interpreter.get_tensor(out["index"])[0].copy())
np.save(sys.argv[3], np.stack(embeddings))
assert "enas_face" not in sys.modules and "tensorflow" not in sys.modules, "imported"
"""


@pytest.fixture(scope="module")
def tiny_model():
  """A 16x16 child with set standardisation and BN statistics moved off their defaults."""
  keras.utils.set_random_seed(0)
  config = ModelConfig(image_size=16, base_filters=4, embedding_dim=8)
  model = FixedChild(config, enas_macro.default_architecture(5)).build_for_input()
  model.standardize.set_statistics([100.0, 110.0, 120.0], [50.0, 55.0, 60.0])
  model(tf.random.uniform([8, 16, 16, 3], 0, 255), training=True)
  return model


def _images(n, seed):
  return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


def test_tflite_runs_under_litert_in_a_process_without_enas_face_or_tensorflow(tiny_model,
                                                                               tmp_path):
  images = _images(6, 0)
  expected = tf.math.l2_normalize(tiny_model(images.astype(np.float32), training=False),
                                  -1).numpy()
  path = str(tmp_path / "model.tflite")
  report = export.export_tflite(tiny_model, 16, path, "none", check_images=images)
  assert os.path.exists(path) and not os.path.exists(path + ".tmp")
  assert report["input"]["dtype"] == "uint8" and report["output"]["dtype"] == "float32"
  np.save(tmp_path / "images.npy", images)
  subprocess.run([sys.executable, "-c", LITERT_RUN, path, str(tmp_path / "images.npy"),
                  str(tmp_path / "out.npy")], check=True, cwd=str(tmp_path),
                 env={**os.environ, "PYTHONPATH": ""})
  embeddings = np.load(tmp_path / "out.npy")
  assert embeddings.shape == (6, 8)
  np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(embeddings, expected, atol=1e-4)
  np.testing.assert_allclose(runtimes.run_tflite(path, images), embeddings, atol=1e-6)


# Measured on this tiny random model (4 seeds): fp16 mean cosine >= 0.999999, int8 mean
# >= 0.995 and min >= 0.986 (max |diff| 0.08-0.14: int8 steps of the unit embedding are 1/128).
@pytest.mark.parametrize("quantization, min_mean_cosine, min_cosine, max_abs_diff", [
    ("fp16", 0.999, 0.99, 0.02),
    ("int8", 0.97, 0.9, 0.5),
])
def test_quantized_tflite_parity_report(tiny_model, tmp_path, quantization, min_mean_cosine,
                                        min_cosine, max_abs_diff):
  representative, check = _images(32, 1), _images(16, 2)
  pairs = VerificationPairs(check, np.random.default_rng(3).integers(0, 16, (20, 2)),
                            np.arange(20) % 2 == 0, num_folds=2)
  path = str(tmp_path / f"model_{quantization}.tflite")
  report = export.export_tflite(tiny_model, 16, path, quantization,
                                representative_images=representative, check_images=check,
                                pairs=pairs, metadata={"image_size": 16})
  with open(tmp_path / f"model_{quantization}.json") as f:
    assert json.load(f) == report
  assert report["file"] == os.path.basename(path) and report["bytes"] == os.path.getsize(path)
  assert report["quantization"] == quantization and report["metadata"] == {"image_size": 16}
  assert report["input"]["dtype"] == "uint8" and report["input"]["shape"] == [1, 16, 16, 3]
  assert report["output"]["dtype"] == "float32" and report["output"]["shape"] == [1, 8]
  assert ("representative_images" in report) == (quantization == "int8")
  parity = report["parity"]
  assert set(parity) == {"num_images", "max_abs_diff", "mean_cosine", "min_cosine"}
  assert parity["num_images"] == 16
  assert parity["mean_cosine"] > min_mean_cosine and parity["min_cosine"] > min_cosine
  assert 0 < parity["max_abs_diff"] < max_abs_diff
  # The report is what a recomputation from the written file gives.
  reference = export.reference_embeddings(tiny_model, 16, check)
  converted = runtimes.run_tflite(path, check)
  cosine = np.sum(reference * converted, 1) / (np.linalg.norm(reference, axis=1)
                                               * np.linalg.norm(converted, axis=1))
  assert parity["mean_cosine"] == pytest.approx(cosine.mean(), abs=1e-6)
  assert parity["min_cosine"] == pytest.approx(cosine.min(), abs=1e-6)
  assert parity["max_abs_diff"] == pytest.approx(np.abs(reference - converted).max(), abs=1e-6)
  accuracy = report["verification"]
  assert accuracy["num_pairs"] == 20 and accuracy["num_folds"] == 2
  for key, embeddings in (("accuracy_float", reference), ("accuracy_converted", converted)):
    assert accuracy[key] == pytest.approx(verification.verification_report(
        embeddings, pairs.pairs, pairs.is_same, num_folds=2)["verification_accuracy"])
  assert accuracy["accuracy_change"] == pytest.approx(
      accuracy["accuracy_converted"] - accuracy["accuracy_float"])


def test_onnx_export_agrees_under_onnxruntime(tiny_model, tmp_path):
  pytest.importorskip("tf2onnx", reason="the onnx extra is not installed")
  check = _images(12, 4)
  pairs = VerificationPairs(check, np.random.default_rng(5).integers(0, 12, (20, 2)),
                            np.arange(20) % 2 == 0, num_folds=2)
  path = str(tmp_path / "model.onnx")
  report = export.export_onnx(tiny_model, 16, path, check_images=check, pairs=pairs)
  with open(tmp_path / "model_onnx.json") as f:
    assert json.load(f) == report
  assert report["input"] == {"name": "images", "type": "tensor(uint8)",
                             "shape": [None, 16, 16, 3]}
  assert report["output"]["shape"] == [None, 8]
  assert report["parity"]["max_abs_diff"] < 1e-4 and report["parity"]["min_cosine"] > 0.9999
  assert report["verification"]["accuracy_change"] == pytest.approx(0.0, abs=0.05)
  expected = export.reference_embeddings(tiny_model, 16, check)
  np.testing.assert_allclose(runtimes.run_onnx(path, check), expected, atol=1e-4)


def test_int8_without_representative_images_names_them(tiny_model):
  with pytest.raises(ValueError, match="representative_images"):
    export.to_tflite(tiny_model, 16, "int8")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_RUN = ["--image_size=16", "--synthetic_identities=8", "--synthetic_images_per_identity=6",
            "--synthetic_heldout_identities=4", "--synthetic_heldout_images_per_identity=5",
            "--num_pairs=20", "--base_filters=4", "--embedding_dim=8", "--batch_size=8",
            "--warmup_epochs=1", "--pca_components=8", "--eval_batch_size=64", "--epochs=2"]


def run_main(*args):
  return subprocess.run([sys.executable, "-m", "enas_face.main", *args], cwd=ROOT,
                        capture_output=True, text=True,
                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_bad_export_format_is_one_error_line_naming_the_flag():
  result = run_main("--export_format=saved_model,coreml")
  assert result.returncode == 2, result.stderr
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: --export_format="), result.stderr
  assert "coreml" in lines[0] and "tflite_int8" in lines[0]


def _check_tflite_export(folder: str, name: str, stdout: str, quantization: str):
  report = json.load(open(os.path.join(folder, name.replace(".tflite", ".json"))))
  assert report["quantization"] == quantization and report["file"] == name
  assert report["parity"]["num_images"] == 20  # the tiny run's 4 x 5 pair images
  assert report["parity"]["mean_cosine"] > 0.9
  assert report["verification"]["num_pairs"] == 20
  assert report["metadata"]["image_size"] == 16
  assert f"{os.path.join(folder, name)} (" in stdout


@pytest.mark.slow
def test_fixed_and_export_modes_write_the_export_formats(tiny_fixed_run, main_in_process,
                                                         tmp_path):
  """--mode=fixed exports what --export_format asks for; --mode=export on the finished run
  writes the SavedModel and the int8 file with its parity report into --export_dir.
  The fixed run is the session's tiny run (tests/conftest.py), trained with these flags."""
  run_dir, result = tiny_fixed_run.run_dir, tiny_fixed_run.result
  assert sorted(tiny_fixed_run.args) == sorted(
      ["--mode=fixed", f"--run_dir={run_dir}", "--export_format=saved_model,tflite", *TINY_RUN])
  assert result.returncode == 0, result.stderr[-3000:]
  saved = os.path.join(run_dir, "saved_model")
  assert os.path.exists(os.path.join(saved, "saved_model.pb"))
  _check_tflite_export(saved, "model.tflite", result.stdout, "none")
  assert not os.path.exists(os.path.join(saved, "model_int8.tflite"))
  export_dir = str(tmp_path / "exported")
  result = main_in_process("--mode=export", f"--run_dir={run_dir}", f"--export_dir={export_dir}",
                           "--export_format=saved_model,tflite_int8")
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.exists(os.path.join(export_dir, "saved_model.pb"))
  _check_tflite_export(export_dir, "model_int8.tflite", result.stdout, "int8")
  report = json.load(open(os.path.join(export_dir, "model_int8.json")))
  assert report["representative_images"] == 32  # all 8 x 4 training images of the tiny run
  assert not os.path.exists(os.path.join(export_dir, "model.tflite"))
