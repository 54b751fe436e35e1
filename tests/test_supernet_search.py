"""One-shot search on the MobileFaceNet supernet, ENAS's way and TuNAS's (categorical
policy, controller and path dropout warm-up, absolute-value reward), end to end on tiny
settings in process: its log, its resume after a lost checkpoint, and the supernet scorer
(search/supernet_score.py) with its BatchNorm recalibration."""
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from enas_face import spaces
from enas_face.config import ModelConfig
from enas_face.models import builders
from enas_face.search import supernet_score
from test_search_core import lose_last_checkpoint, read_json, read_jsonl

MODEL = ModelConfig(image_size=16, embedding_dim=8, search_space="mobilefacenet",
                    width_multiplier=0.25)  # conftest.TINY_SUPERNET_SEARCH's network
SPACE = spaces.get("mobilefacenet")


@pytest.fixture(scope="module")
def tunas_run(tiny_tunas_search):
  """conftest's finished 3-epoch TuNAS-recipe search (the first epoch its warm-up), stderr."""
  return tiny_tunas_search.run_dir, tiny_tunas_search.result.stderr


def uniform_log_prob() -> float:
  return -sum(math.log(d.num_choices) for d in SPACE.decisions(MODEL))


@pytest.mark.slow
def test_tunas_recipe_searches_the_supernet_one_shot(tunas_run):
  run_dir, stderr = tunas_run
  records = read_jsonl(os.path.join(run_dir, "sampled_arcs.jsonl"))
  assert len(records) == 3 * 2 * 2
  assert {(r["space"], r["strategy"], r["sampler"]) for r in records} == {
      ("mobilefacenet", "one_shot", "categorical")}
  for r in records:  # R = Acc - 0.1 |c/T - 1| (the two_sided reward, TuNAS's absolute one)
    assert r["reward"] == pytest.approx(r["score"] - 0.1 * abs(r["cost"] / 2e5 - 1), abs=1e-9)
    assert r["cost"] == SPACE.flops(MODEL, SPACE.from_json(r["sample"], MODEL))
  # The warm-up epoch takes no policy step: still uniform through epoch 2's first step.
  frozen = [r for r in records if r["epoch"] == 1 or r["step"] == 3]
  assert all(r["log_prob"] == pytest.approx(uniform_log_prob(), abs=1e-4) for r in frozen)
  assert any(abs(r["log_prob"] - uniform_log_prob()) > 1e-3 for r in records if r["epoch"] == 3)
  assert "controller warm-up: no policy step in the first 1 of 3 epochs" in stderr
  assert "path_keep_probability" in stderr
  summary = read_json(os.path.join(run_dir, "search_summary.json"))
  assert (summary["controller"], summary["controller_warmup_epochs"],
          summary["path_dropout_warmup"]) == ("categorical", 1, 1.0)
  ranked = read_json(os.path.join(run_dir, "arcs_ranked.json"))
  assert ranked["strategy"] == "one_shot" and ranked["architectures"]


@pytest.mark.slow
def test_tunas_search_resumes_after_a_lost_checkpoint(tiny_tunas_search, main_in_process,
                                                     tmp_path):
  """A kill after epoch 3's controller steps but before its checkpoint: the rerun redoes
  epoch 3 from epoch 2's checkpoint (policy, its random stream, baseline, supernet; the
  warm-up over) and draws the same architectures."""
  run_dir = tiny_tunas_search.run_dir
  copy = tiny_tunas_search.copy(str(tmp_path / "copy"))
  lose_last_checkpoint(copy, 3)
  args = [a for a in tiny_tunas_search.args if not a.startswith("--run_dir=")]
  result = main_in_process(*args, f"--run_dir={copy}", tiny_tunas_search.same_data())
  assert result.returncode == 0, result.stderr[-4000:]
  assert "resuming search from" in result.stderr
  original = read_jsonl(os.path.join(run_dir, "sampled_arcs.jsonl"))
  resumed = read_jsonl(os.path.join(copy, "sampled_arcs.jsonl"))
  key = lambda r: (r["epoch"], r["step"], r["sample_index"])  # noqa: E731
  assert [key(r) for r in resumed] == [key(r) for r in original]  # no gap, no duplicate
  first = lambda log: [r["arc"] for r in log if r["epoch"] == 3]  # noqa: E731
  assert first(resumed) == first(original)


# ------------------------------------------------------------------- the supernet scorer
def test_recalibrated_batch_norm_is_the_batch_statistics():
  """On one batch, inference with recalibrated statistics equals the batch-statistics output;
  over two batches, the stem's BatchNorm holds the mean and variance of all their images."""
  shared = builders.build_shared(MODEL)
  rng = np.random.default_rng(0)
  for weight in shared.weights:  # moving statistics far from the images' ones
    weight.assign(rng.normal(0.0, 0.3, weight.shape).astype("float32")
                  + (1.0 if "variance" in weight.path or weight.path.endswith("std") else 0.0))
  arc = tf.constant(SPACE.encode(SPACE.sample_uniform(MODEL, rng)), tf.int32)
  images = [rng.uniform(0, 255, (6, 16, 16, 3)).astype("float32") for _ in range(2)]
  forward = lambda batch: shared(tf.constant(batch), arc=arc, training=True)  # noqa: E731
  layers = supernet_score.batch_norm_layers(shared)
  assert supernet_score.recalibrate_batch_norm(shared, forward, images[:1]) < len(layers)
  np.testing.assert_allclose(shared(images[0], arc=arc, training=False).numpy(),
                             shared(images[0], arc=arc, batch_statistics=True).numpy(),
                             rtol=1e-3, atol=1e-3)
  supernet_score.recalibrate_batch_norm(shared, forward, images)
  stem = shared.stem_conv
  conv = np.concatenate([stem.conv(shared.standardize(x)).numpy() for x in images])
  np.testing.assert_allclose(stem.norm.moving_mean.numpy(), conv.mean((0, 1, 2)), rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(stem.norm.moving_variance.numpy(), conv.var((0, 1, 2)), rtol=1e-3,
                             atol=1e-4)


@pytest.mark.slow
def test_scorer_gives_the_search_scores_and_recalibrates(tunas_run):
  run_dir, _ = tunas_run
  scorer = supernet_score.SupernetScorer(run_dir, recalibration_images=16)
  assert scorer.epochs_trained == 3 and len(scorer.calibration) == 2  # 16 images, batches of 8
  ranked = read_json(os.path.join(run_dir, "arcs_ranked.json"))["architectures"]
  for entry in ranked:  # the search's final candidates: the reward metric, batch statistics
    assert scorer.score(entry["encoding"], "reward", "batch") == pytest.approx(entry["score"])
  encodings = [entry["encoding"] for entry in ranked] + [SPACE.encode(SPACE.default(MODEL))]
  for encoding in encodings:
    for bn in supernet_score.BN_MODES:
      value = scorer.score(encoding, "verification", bn)
      assert 0.0 <= value <= 1.0
      assert scorer.score(encoding, "verification", bn) == value  # deterministic
  with pytest.raises(ValueError, match="metric must be one of"):
    scorer.score(encodings[0], "accuracy")


@pytest.mark.slow
def test_enas_one_shot_search_runs_on_the_supernet(tiny_tunas_search, main_in_process, tmp_path):
  """--search_space=mobilefacenet --search_strategy=one_shot with ENAS's LSTM controller and
  the default reward: the shared model is the supernet called with arc=."""
  args = [a for a in tiny_tunas_search.args
          if not a.startswith(("--run_dir=", "--controller=", "--controller_warmup",
                               "--controller_optimizer", "--controller_lr", "--path_dropout",
                               "--reward=", "--cost_penalty", "--entropy", "--baseline",
                               "--search_epochs"))]
  run_dir = str(tmp_path / "enas")
  result = main_in_process(*args, "--search_epochs=1", "--warmup_epochs=0",
                           "--controller_hidden=16",
                           f"--run_dir={run_dir}", tiny_tunas_search.same_data())
  assert result.returncode == 0, result.stderr[-4000:]
  records = read_jsonl(os.path.join(run_dir, "sampled_arcs.jsonl"))
  assert len(records) == 1 * 2 * 2 and {r["sampler"] for r in records} == {"enas"}
  assert all(0.0 <= r["score"] <= 1.0 and r["cost"] > 0 for r in records)
  summary = read_json(os.path.join(run_dir, "search_summary.json"))
  assert (summary["strategy"], summary["controller_warmup_epochs"]) == ("one_shot", 0)
