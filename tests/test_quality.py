"""--mode=quality / eval / export with --aggregation on a tiny trained embedder: the quality network
learns to score degraded frames lower, a killed run resumes, the set SavedModel reloads alone."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDER = ["--image_size=32", "--synthetic_identities=20", "--synthetic_images_per_identity=12",
            "--synthetic_heldout_identities=6", "--synthetic_heldout_images_per_identity=5",
            "--num_pairs=40", "--base_filters=8", "--embedding_dim=32", "--batch_size=32",
            "--warmup_epochs=1", "--pca_components=8", "--eval_batch_size=128", "--seed=0"]
SETS = ["--set_synthetic_identities=20", "--set_videos_per_identity=3", "--set_size=6",
        "--set_pairs=60", "--quality_epochs=3", "--quality_steps_per_epoch=20",
        "--quality_identities_per_batch=8"]


def run_main(*args):
  return subprocess.run([sys.executable, "-m", "enas_face.main", *args], cwd=ROOT,
                        capture_output=True, text=True,
                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def ok(result):
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return result


@pytest.fixture(scope="module")
def embedder(main_in_process, tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("quality") / "embedder")
  ok(main_in_process("--mode=fixed", f"--run_dir={run_dir}", "--epochs=4", *EMBEDDER))
  return run_dir


@pytest.fixture(scope="module")
def qanpp_run(embedder, main_in_process):
  ok(main_in_process("--mode=quality", f"--run_dir={embedder}", "--quality_net=qanpp", *SETS))
  return embedder


def _quality_metrics(run_dir, net):
  with open(os.path.join(run_dir, "quality", net, "metrics.json")) as f:
    return json.load(f)


@pytest.mark.slow
def test_qanpp_learns_to_score_degraded_frames_lower(qanpp_run):
  report = _quality_metrics(qanpp_run, "qanpp")
  assert report["methods"] == ["mean", "best", "qanpp"]
  assert report["num_identities"] == 10 and report["num_sets"] == 30
  for method in report["methods"]:
    assert 0.0 <= report["by_method"][method]["verification_accuracy"] <= 1.0
    assert "tar_at_far_1e-4" in report["by_method"][method]
  # Seeded tiny run: held-out frames' learned quality against their known degradation level.
  assert report["spearman_quality_vs_degradation"]["qanpp"] < -0.3
  history = [json.loads(line) for line in open(os.path.join(qanpp_run, "quality", "qanpp",
                                                             "history.jsonl"))]
  assert [h["epoch"] for h in history] == [1, 2, 3]


@pytest.mark.slow
def test_a_killed_quality_run_resumes_and_other_settings_are_refused(qanpp_run, main_in_process,
                                                                     tmp_path):
  import shutil
  qdir = os.path.join(qanpp_run, "quality", "qanpp")
  copy = str(tmp_path / "run")
  shutil.copytree(qanpp_run, copy)
  cdir = os.path.join(copy, "quality", "qanpp", "checkpoints")
  # As if killed after epoch 2: the epoch-3 checkpoint never written, its log line written.
  for name in os.listdir(cdir):
    if name.startswith("ckpt-3"):
      os.remove(os.path.join(cdir, name))
  with open(os.path.join(cdir, "checkpoint"), "w") as f:
    f.write('model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-2"\n')
  result = ok(main_in_process("--mode=quality", f"--run_dir={copy}", "--quality_net=qanpp",
                              *SETS))
  assert "resuming the qanpp quality network" in result.stderr
  history = [json.loads(line) for line in open(os.path.join(copy, "quality", "qanpp",
                                                             "history.jsonl"))]
  assert [h["epoch"] for h in history] == [1, 2, 3]
  original = [json.loads(line) for line in open(os.path.join(qdir, "history.jsonl"))]
  assert history[2]["loss"] == pytest.approx(original[2]["loss"], rel=1e-3)
  refused = run_main("--mode=quality", f"--run_dir={copy}", "--quality_net=qanpp", *SETS,
                     "--quality_lr=0.01")
  assert refused.returncode == 2 and "--quality_lr" in refused.stderr


@pytest.mark.slow
def test_eval_aggregations_and_missing_network(qanpp_run, main_in_process):
  result = ok(main_in_process("--mode=eval", f"--run_dir={qanpp_run}",
                              "--aggregation=mean,best,qanpp", *SETS))
  assert "set-to-set verification" in result.stdout
  with open(os.path.join(qanpp_run, "metrics.json")) as f:
    metrics = json.load(f)
  assert set(metrics["set_verification"]["by_method"]) == {"mean", "best", "qanpp"}
  assert metrics["set_verification"]["by_method"]["best"]["scores_of"] == "qanpp"
  assert "verification_accuracy" in metrics  # image-level, next to it
  missing = run_main("--mode=eval", f"--run_dir={qanpp_run}", "--aggregation=qan", *SETS)
  assert missing.returncode == 2
  assert "--mode=quality --quality_net=qan" in missing.stderr


@pytest.mark.slow
def test_set_saved_model_reloads_without_enas_face(qanpp_run, main_in_process, tmp_path):
  export_dir = str(tmp_path / "export")
  ok(main_in_process("--mode=export", f"--run_dir={qanpp_run}", f"--export_dir={export_dir}",
                     "--aggregation=qanpp", *SETS))
  model_dir = os.path.join(export_dir, "set_qanpp")
  # Reference from the library: frame embeddings (no flip) and QAN++ scores -> numpy pooling.
  import dataclasses
  from enas_face.training import set_quality as quality
  from enas_face.training import checkpoints
  from enas_face.config import SetConfig
  from enas_face import spaces
  from enas_face.data import synthetic_video
  from enas_face.evaluation import sets
  config = spaces.load_config(os.path.join(qanpp_run, "config.json"))
  config = dataclasses.replace(config, run_dir=qanpp_run, sets=SetConfig())
  child = checkpoints.restore_child(config)
  frames = synthetic_video.make_synthetic_videos(2, 1, 5, 32, seed=3).frames
  codes = quality.embed_frames(child, frames, 64)
  net = quality.restore_net(config, "qanpp", codes.features.shape[1])
  frames_path = str(tmp_path / "frames.npy")
  np.save(frames_path, frames)
  code = ("import sys, json, numpy as np, tensorflow as tf\n"
          f"m = tf.saved_model.load({model_dir!r}).signatures['serving_default']\n"
          f"frames = np.load({frames_path!r})\n"
          "out = [m(frames=tf.constant(frames[k:k + 5])) for k in (0, 5)]\n"
          "print(json.dumps({'embeddings': [o['set_embedding'].numpy().tolist() for o in out],"
          " 'scores': [o['frame_scores'].numpy().tolist() for o in out],"
          " 'enas_face': any(n.startswith('enas_face') for n in sys.modules)}))\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                          "PYTHONPATH": ""})
  assert result.returncode == 0, result.stderr[-3000:]
  loaded = json.loads(result.stdout.strip().splitlines()[-1])
  assert loaded["enas_face"] is False
  scores = quality.frame_scores(net, "qanpp", frames, codes, 64)
  for k, start in enumerate((0, 5)):
    np.testing.assert_allclose(loaded["scores"][k], scores[start:start + 5], rtol=1e-4, atol=1e-5)
    expected = sets.aggregate(codes.embeddings[start:start + 5], scores[start:start + 5], "qanpp")
    np.testing.assert_allclose(loaded["embeddings"][k], expected, atol=1e-5)
    assert np.linalg.norm(loaded["embeddings"][k]) == pytest.approx(1.0, abs=1e-5)
