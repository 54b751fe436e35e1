"""Several verification sets in one fixed run (--pairs=bin:A,bin:B): per-set history
keys every --eval_every epochs, RUN_DIR/best/ picked by --best_pairs, metrics.json's
pair_sets, --checkpoint=best, and best/ surviving a SIGKILL + resume."""
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from enas_face.data import verification_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
TINY = ["--mode=fixed", "--image_size=16", "--num_layers=2", "--num_reductions=1",
        "--base_filters=4", "--embedding_dim=8", "--batch_size=8", "--warmup_epochs=1",
        "--pca_components=8", "--eval_batch_size=64", "--num_folds=5", "--deterministic",
        "--eval_every=1", "--protocol=both"]


def command(*args):
  return [sys.executable, "-m", "enas_face.main", *args]


def run(*args):
  return subprocess.run(command(*args), cwd=ROOT, capture_output=True, text=True, env=ENV)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """A folder dataset of 6 identities x 10 blurred-noise faces and two .bin sets (lfw: 20
  pairs, cfp_fp: 30 pairs) of images of 5 other 'identities' (a noise pattern each)."""
  root = tmp_path_factory.mktemp("data")
  rng = np.random.default_rng(0)

  def face(base):
    noisy = base + rng.normal(0, 25, base.shape)
    return np.clip(cv2.GaussianBlur(noisy, (3, 3), 0), 0, 255).astype(np.uint8)

  for identity in range(6):
    base = rng.uniform(0, 255, (20, 20, 3))
    (root / "train" / f"id{identity}").mkdir(parents=True)
    for k in range(10):
      cv2.imwrite(str(root / "train" / f"id{identity}" / f"{k}.png"), face(base))
  bases = [rng.uniform(0, 255, (20, 20, 3)) for _ in range(5)]
  paths = {}
  for name, num_pairs in (("lfw", 20), ("cfp_fp", 30)):
    images, is_same = [], []
    for p in range(num_pairs):
      a = p % 5
      b = a if p % 2 == 0 else (a + 1 + p % 4) % 5
      images += [cv2.imencode(".png", face(bases[a]))[1].tobytes(),
                 cv2.imencode(".png", face(bases[b]))[1].tobytes()]
      is_same.append(a == b)
    paths[name] = str(root / f"{name}.bin")
    verification_files.save_bin(paths[name], images, is_same)
  return {"dataset": f"--dataset=folder:{root / 'train'}",
          "pairs": f"--pairs=bin:{paths['lfw']},bin:{paths['cfp_fp']}"}


def args_for(data, run_dir, epochs=3, *extra):
  return [*TINY, data["dataset"], data["pairs"], f"--run_dir={run_dir}", f"--epochs={epochs}",
          "--best_pairs=cfp_fp", *extra]


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def test_unknown_best_pairs_names_the_flag_and_the_sets(data, tmp_path):
  result = run(*TINY, data["dataset"], data["pairs"], f"--run_dir={tmp_path / 'r'}",
               "--best_pairs=agedb_30")
  assert result.returncode == 2, result.stderr[-2000:]
  assert "--best_pairs=agedb_30" in result.stderr and "lfw, cfp_fp" in result.stderr


@pytest.fixture(scope="module")
def clean_run(data, main_in_process, tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("clean") / "run")
  result = main_in_process(*args_for(data, run_dir))
  assert result.returncode == 0, result.stderr[-3000:]
  return run_dir, result.stdout


@pytest.mark.slow
def test_fixed_run_verifies_every_set_and_keeps_the_best(clean_run, data, main_in_process):
  run_dir, stdout = clean_run
  history = read_jsonl(os.path.join(run_dir, "train_history.jsonl"))
  assert [h["epoch"] for h in history] == [1, 2, 3]
  for record in history:
    for name in ("lfw", "cfp_fp"):
      for metric in ("verification_accuracy", "insightface_verification_accuracy"):
        assert 0.0 <= record[f"pairs/{name}/{metric}"] <= 1.0
  best = json.load(open(os.path.join(run_dir, "best", "best.json")))
  values = [h["pairs/cfp_fp/verification_accuracy"] for h in history]
  assert best["set"] == "cfp_fp" and best["metric"] == "verification_accuracy"
  assert best["value"] == max(values) and best["epoch"] == 1 + values.index(max(values))
  assert os.path.exists(os.path.join(run_dir, "best", f"ckpt-{best['epoch']}.index"))
  metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
  assert metrics["pair_set_names"] == ["lfw", "cfp_fp"] == sorted(metrics["pair_sets"])[::-1]
  assert metrics["pair_sets"]["cfp_fp"]["num_pairs"] == 30
  assert metrics["verification_accuracy"] == metrics["pair_sets"]["lfw"]["verification_accuracy"]
  assert "insightface_val_at_far_1e-3" in metrics["pair_sets"]["cfp_fp"]
  assert "pairs cfp_fp [30] insightface" in stdout and "pairs lfw [20] exact" in stdout
  # The last epoch's history accuracy is what evaluate() reports for the final weights.
  assert history[-1]["pairs/cfp_fp/verification_accuracy"] == pytest.approx(
      metrics["pair_sets"]["cfp_fp"]["verification_accuracy"])
  # --mode=eval --checkpoint=best evaluates the best epoch's weights.
  result = main_in_process("--mode=eval", f"--run_dir={run_dir}", "--checkpoint=best")
  assert result.returncode == 0, result.stderr[-3000:]
  evaluated = json.load(open(os.path.join(run_dir, "metrics.json")))
  assert evaluated["pair_sets"]["cfp_fp"]["verification_accuracy"] == pytest.approx(best["value"])
  # --mode=eval --pairs=... verifies the trained run on the sets named now, not its own.
  cfp_fp = data["pairs"].split(",")[1]
  result = main_in_process("--mode=eval", f"--run_dir={run_dir}", data["dataset"],
                           f"--pairs={cfp_fp}", "--checkpoint=best")
  assert result.returncode == 0, result.stderr[-3000:]
  again = json.load(open(os.path.join(run_dir, "metrics.json")))
  assert again["pair_set_names"] == ["cfp_fp"]
  assert again["verification_accuracy"] == pytest.approx(best["value"])


def _checkpoint_values(prefix):
  import tensorflow as tf
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


@pytest.mark.slow
def test_best_survives_a_kill_and_resume(data, clean_run, tmp_path):
  """SIGKILL once epoch 2's checkpoint exists (inside epoch 3), rerun: best/ equals the
  uninterrupted run's (same epoch, value and weights)."""
  killed = str(tmp_path / "killed")
  process = subprocess.Popen(command(*args_for(data, killed)), cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  index = os.path.join(killed, "checkpoints", "ckpt-2.index")
  tic = time.time()
  while not os.path.exists(index):
    assert process.poll() is None, f"the run ended (code {process.returncode}) before epoch 2"
    assert time.time() - tic < 300
    time.sleep(0.02)
  alive = process.poll() is None
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert alive, "the run finished before it could be killed"
  assert not os.path.exists(os.path.join(killed, "metrics.json"))
  result = run(*args_for(data, killed))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resuming training from" in result.stderr
  clean_dir, _ = clean_run
  best = json.load(open(os.path.join(killed, "best", "best.json")))
  assert best == json.load(open(os.path.join(clean_dir, "best", "best.json")))
  ours = _checkpoint_values(os.path.join(killed, "best", best["checkpoint"]))
  theirs = _checkpoint_values(os.path.join(clean_dir, "best", best["checkpoint"]))
  assert ours.keys() == theirs.keys() and ours
  for name in ours:
    np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
  assert sorted(os.listdir(os.path.join(killed, "best"))) == sorted(
      os.listdir(os.path.join(clean_dir, "best")))
