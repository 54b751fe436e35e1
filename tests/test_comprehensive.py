"""The comprehensive search (cleaning, loss and architecture): its spaces, that each decision
reaches what it should, the final recipe's JSON back into a fixed run, resuming, and trials
on two local Ray workers."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from enas_face.data import cleaning
from enas_face.data import keys
from enas_face import flags as enas_flags
from enas_face.models import heads
from enas_face import spaces
from enas_face.config import ConfigError
from enas_face.data.base import FaceDataset, LabelledImages, VerificationPairs
from enas_face.spaces import comprehensive
from enas_face.spaces.base import SampleError
from test_search_core import ROOT, ENV, lose_last_checkpoint, read_json, read_jsonl, run

TINY = ["--dataset=synthetic", "--image_size=16", "--synthetic_identities=12",
        "--synthetic_images_per_identity=8", "--synthetic_heldout_identities=6",
        "--synthetic_heldout_images_per_identity=4", "--num_pairs=40", "--num_folds=2",
        "--num_layers=3", "--num_reductions=1", "--base_filters=4", "--embedding_dim=16",
        "--batch_size=16", "--epochs=1", "--warmup_epochs=0", "--latency_warmup=1",
        "--latency_repeats=2", "--eval_every=0"]
SEARCH = ["--mode=search", "--search_strategy=multi_trial", "--controller=random",
          "--trial_epochs=1", "--cleaning_proxy_epochs=1", "--controller_steps=1",
          "--controller_samples=2", "--reward_metric=verification", "--reward_identities=4",
          "--reward_pairs=20", "--reward=two_sided", "--cost_model=flops", "--cost_target=2e5"]
NAMES = ("comprehensive", "loss_only", "data_only", "arch_only")


@pytest.fixture
def parse():
  values = flags.FLAGS

  def config(*argv):
    values.unparse_flags()
    values(["prog", *TINY, *argv])
    return enas_flags.config_from_flags(values)

  yield config
  values.unparse_flags()


# ------------------------------------------------------------------------------ the spaces
def test_spaces_are_registered_with_their_decisions(parse):
  model = parse("--search_space=comprehensive").model
  arch = len(spaces.get("enas_macro").decisions(model))
  counts = {name: len(spaces.get(name).decisions(model)) for name in NAMES}
  assert counts == {"comprehensive": 4 + 6 + arch, "loss_only": 6, "data_only": 4,
                    "arch_only": arch}
  names = [d.name for d in spaces.get("comprehensive").decisions(model)]
  assert names[:10] == ["clean/outlier_threshold", "clean/merge_threshold",
                        "clean/duplicate_action", "clean/min_images", "loss/head", "loss/s_pos",
                        "loss/s_neg", "loss/m1", "loss/m2", "loss/m3"]
  assert all(spaces.get(n).owns_loss and not spaces.get(n).supports_weight_sharing for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_samples_round_trip_through_encoding_and_json(parse, name):
  space = spaces.get(name)
  model = parse(f"--search_space={name}").model
  rng = np.random.default_rng(0)
  for _ in range(40):
    sample = space.sample_uniform(model, rng)
    assert space.decode(space.encode(sample), model) == sample
    text = json.dumps(space.to_json(sample))
    assert space.from_json(json.loads(text), model) == sample
    assert space.from_string(space.to_string(sample), model) == sample


def test_irrelevant_decisions_share_one_encoding(parse):
  space = spaces.get("loss_only")
  model = parse("--search_space=loss_only").model
  softmax = [space.decode([0, s, t, 1, 2, 3], model) for s in range(3) for t in range(2)]
  assert {space.to_string(s) for s in softmax} == {space.to_string(space.default(model))}
  data = spaces.get("data_only")
  unused = [data.decode([1, 0, action, 2], model) for action in (0, 1)]  # no merge threshold
  assert unused[0] == unused[1]


def test_held_aspects_stay_at_their_defaults(parse):
  model = parse("--search_space=loss_only").model
  joint = spaces.get("comprehensive")
  sample = joint.decode([1] * len(joint.decisions(model)), model)
  with pytest.raises(SampleError, match="loss_only space holds the data aspect"):
    spaces.get("loss_only").from_json(joint.to_json(sample), model)
  default = spaces.get("arch_only").default(model)
  assert default.loss.head == "softmax" and not default.cleaning.active
  with pytest.raises(SampleError, match="not on the grid"):
    spaces.get("loss_only").from_json({"loss": {"head": "rescaled_margin", "s_pos": 50.0}}, model)


@pytest.mark.parametrize("field,grid", [("s_pos", comprehensive.SCALES),
                                        ("s_neg", comprehensive.SCALES), ("m1", comprehensive.M1),
                                        ("m2", comprehensive.M2), ("m3", comprehensive.M3)])
def test_each_loss_decision_reaches_the_heads_parameters(parse, field, grid):
  config = parse("--search_space=loss_only")
  space = spaces.of(config.model)
  position = 1 + [name for name, _ in comprehensive.LOSS_GRID[1:]].index(field)
  dataset, _ = tiny_dataset()
  for index, value in enumerate(grid):
    choices = [1, 0, 0, 0, 0, 0]  # rescaled_margin
    choices[position] = index
    sample = space.decode(choices, config.model)
    prepared, same, result = space.prepare_training(dataclasses.replace(config, arc=sample),
                                                    dataset, sample)
    assert same is dataset and result is None
    head = heads.build_head(prepared.head, dataset.num_classes, 4)
    assert isinstance(head.margin, heads.RescaledMargin)
    assert getattr(head.margin, field) == pytest.approx(value)
  softmax = space.decode([0] * 6, config.model)
  prepared, _, _ = space.prepare_training(config, dataset, softmax)
  assert isinstance(heads.build_head(prepared.head, dataset.num_classes, 4), heads.SoftmaxHead)


def tiny_dataset():
  angles = np.deg2rad([0, 10, 110, 180, 185, 190, 270, 275])  # image 2 is identity 0's outlier
  e = np.stack([np.cos(angles), np.sin(angles)], 1)
  images = np.arange(8, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
  part = LabelledImages(images, np.array([0, 0, 0, 1, 1, 1, 2, 2], np.int32))
  pairs = VerificationPairs(images[:2], np.array([[0, 1]]), np.array([True]), 1)
  return FaceDataset("toy", part, part, part, 3, pairs), e


def test_each_cleaning_decision_reaches_the_training_data(parse, tmp_path):
  dataset, e = tiny_dataset()
  path = str(tmp_path / "proxy.npz")
  cleaning.ProxyEmbeddings(keys.pixel_hashes(dataset.train.images), e, "test").save(path)
  config = parse("--search_space=data_only", f"--cleaning_embeddings={path}")
  space = spaces.of(config.model)

  def prepared(choices):
    sample = space.decode(choices, config.model)
    return space.prepare_training(config, dataset, sample)[1]

  assert prepared([0, 0, 0, 0]) is dataset  # nothing cleaned
  # Identity 0's centre lies at 40 deg: image 2 (110 deg, cosine 0.244) is the only image
  # under 0.3 (outlier choice 4) and over 0.2 (choice 3).
  assert len(prepared([4, 0, 0, 0]).train.labels) == 7
  assert len(prepared([3, 0, 0, 0]).train.labels) == 8
  assert prepared([0, 0, 0, 2]).num_classes == 2  # min_images=3 drops identity 2 (2 images)
  merged = prepared([0, 5, 0, 0])  # centre cosine > 0.7: only near identities join
  assert merged.num_classes == 3  # 0 deg, 180 deg and 270 deg centres are far apart


def test_head_flags_and_one_shot_are_refused_by_name(parse):
  with pytest.raises(ConfigError, match="--head=arcface with --search_space=comprehensive"):
    parse("--search_space=comprehensive", "--head=arcface")
  with pytest.raises(ConfigError, match="--search_strategy=one_shot"):
    parse("--search_space=comprehensive", "--mode=search", "--search_strategy=one_shot")


# ---------------------------------------------------------------------- a search end to end
@pytest.fixture(scope="module")
def joint_search(main_in_process, tmp_path_factory):
  """A finished 2-epoch comprehensive search, then its rerun after a kill that lost the
  last search checkpoint and the proxy embeddings file (the proxy's training had finished)."""
  root = tmp_path_factory.mktemp("comprehensive")
  run_dir = str(root / "search")
  # Seed 2: the random sampler's draws include samples whose cleaning leaves enough to train.
  args = [*TINY, *SEARCH, "--search_space=comprehensive", "--search_epochs=2", "--seed=2",
          f"--run_dir={run_dir}"]
  first = main_in_process(*args)
  assert first.returncode == 0, first.stderr[-4000:]
  path = os.path.join(run_dir, "cleaning", cleaning.EMBEDDINGS_NAME)
  before = {"trials": read_jsonl(os.path.join(run_dir, "trials.jsonl")),
            "embeddings": cleaning.ProxyEmbeddings.load(path)}
  os.remove(path)
  lose_last_checkpoint(run_dir, 2)
  rerun = main_in_process(*args)
  assert rerun.returncode == 0, rerun.stderr[-4000:]
  return {"root": root, "run_dir": run_dir, "before": before}


@pytest.mark.slow
def test_search_resumes_without_retraining_the_proxy_or_finished_trials(joint_search):
  run_dir, before = joint_search["run_dir"], joint_search["before"]
  proxy_history = read_jsonl(os.path.join(run_dir, "cleaning", "proxy", "train_history.jsonl"))
  assert len(proxy_history) == 1  # one proxy epoch, trained once
  assert read_jsonl(os.path.join(run_dir, "trials.jsonl")) == before["trials"]
  summary = read_json(os.path.join(run_dir, "search_summary.json"))
  assert summary["trials_trained_this_invocation"] == 0
  again = cleaning.ProxyEmbeddings.load(os.path.join(run_dir, "cleaning", cleaning.EMBEDDINGS_NAME))
  np.testing.assert_array_equal(again.keys, before["embeddings"].keys)
  np.testing.assert_allclose(again.embeddings, before["embeddings"].embeddings, atol=1e-5)
  assert len(again.keys) == 12 * 8 - 12 * 2  # every training image, reward identities' too


@pytest.mark.slow
def test_final_recipe_round_trips_into_a_fixed_run(joint_search, main_in_process):
  run_dir = joint_search["run_dir"]
  final = read_json(os.path.join(run_dir, "final_config.json"))
  ranked = read_json(os.path.join(run_dir, "arcs_ranked.json"))
  assert final["sample"] == ranked["architectures"][0]["sample"]
  untrained = [t["encoding"] for t in joint_search["before"]["trials"] if "not_trained" in t]
  assert not {e["encoding"] for e in ranked["architectures"]} & set(untrained)
  assert final["cleaning_embeddings"] == os.path.join(run_dir, "cleaning", cleaning.EMBEDDINGS_NAME)
  retrain = str(joint_search["root"] / "retrain")
  result = main_in_process(*TINY, "--mode=fixed", "--search_space=comprehensive", "--seed=2",
                           f"--arc_file={os.path.join(run_dir, 'final_config.json')}",
                           f"--run_dir={retrain}")
  assert result.returncode == 0, result.stderr[-4000:]
  config = spaces.load_config(os.path.join(retrain, "config.json"))
  space = spaces.get("comprehensive")
  assert config.arc == space.from_json(final["sample"], config.model)
  assert config.data.cleaning_embeddings == final["cleaning_embeddings"]
  metrics = read_json(os.path.join(retrain, "metrics.json"))
  assert metrics["flops"] == final["flops"]
  manifest = os.path.join(retrain, "cleaning_manifest.json")
  if config.arc.cleaning.active:
    removed = read_json(manifest)
    assert removed["settings"] == final["sample"]["cleaning"]
    assert metrics["cleaning"]["removed_images"] == removed["removed_images"]
  else:
    assert not os.path.exists(manifest)


@pytest.mark.slow
def test_a_cleaning_sample_without_embeddings_names_the_flag(tmp_path):
  sample = {"cleaning": {"outlier_threshold": 0.3}, "loss": {"head": "softmax"}}
  path = tmp_path / "recipe.json"
  path.write_text(json.dumps(sample))
  result = run(*TINY, "--mode=fixed", "--search_space=data_only", f"--arc_file={path}",
               f"--run_dir={tmp_path / 'run'}")
  assert result.returncode == 2
  assert "--cleaning_embeddings" in result.stderr.splitlines()[-1]


@pytest.mark.slow
def test_trials_run_on_two_local_ray_workers(tmp_path):
  pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
  run_dir = str(tmp_path / "ray")
  result = run(*TINY, *SEARCH, "--search_space=loss_only", "--search_epochs=1",
               "--controller_samples=3", "--trial_workers=2", f"--run_dir={run_dir}")
  assert result.returncode == 0, result.stderr[-4000:]
  trials = read_jsonl(os.path.join(run_dir, "trials.jsonl"))
  log = read_jsonl(os.path.join(run_dir, "sampled_arcs.jsonl"))
  assert len(log) == 3 and {t["encoding"] for t in trials} == {r["encoding"] for r in log}
  assert len({t["worker"] for t in trials}) == min(2, len(trials))  # side by side
  assert all(0.0 <= t["score"] <= 1.0 for t in trials)


@pytest.mark.slow
def test_clean_dataset_tool_removes_what_the_rule_says(joint_search, tmp_path):
  run_dir = joint_search["run_dir"]
  recipe = tmp_path / "settings.json"
  recipe.write_text(json.dumps({"outlier_threshold": 0.5}))
  out = tmp_path / "cleaned"
  result = subprocess.run(
      [sys.executable, "tools/clean_dataset.py", *TINY, "--seed=2", f"--recipe={recipe}",
       f"--cleaning_embeddings={os.path.join(run_dir, 'cleaning', cleaning.EMBEDDINGS_NAME)}",
       f"--output_dir={out}", "--write_records"], cwd=ROOT, capture_output=True, text=True,
      env=ENV)
  assert result.returncode == 0, result.stderr[-3000:]
  manifest = read_json(out / "cleaning_manifest.json")
  # The rule recomputed here: images whose cosine to their label's centre is under 0.5.
  from enas_face.data import load_dataset  # pylint: disable=import-outside-toplevel
  config = spaces.load_config(os.path.join(run_dir, "config.json"))
  dataset = load_dataset(config.data)
  e = cleaning.unit(cleaning.ProxyEmbeddings.load(config.data.cleaning_embeddings or os.path.join(
      run_dir, "cleaning", cleaning.EMBEDDINGS_NAME)).lookup(dataset.train.images))
  centres = cleaning.identity_centres(e, dataset.train.labels, dataset.num_classes)
  under = np.flatnonzero(np.sum(e * centres[dataset.train.labels], 1) < 0.5)
  assert 0 < len(under) < len(dataset.train.labels)
  assert [r["index"] for r in manifest["removed"]] == under.tolist()
  assert all(r["reason"].startswith("outlier") for r in manifest["removed"])
  records = read_json(out / "records" / "manifest.json")
  # Val and test images follow their identity: gone when it has no training image left.
  alive = np.unique(np.delete(dataset.train.labels, under))
  assert records["num_images"] == (len(dataset.train.labels) - len(under)
                                   + np.isin(dataset.val.labels, alive).sum()
                                   + np.isin(dataset.test.labels, alive).sum())
  assert records["num_identities"] == len(alive)
  missing = subprocess.run([sys.executable, "tools/clean_dataset.py", *TINY, f"--recipe={recipe}",
                            f"--output_dir={out}"], cwd=ROOT, capture_output=True, text=True, env=ENV)
  assert missing.returncode == 2 and "--proxy_run_dir" in missing.stderr.splitlines()[-1]


def test_cleaning_embeddings_flag_takes_a_proxy_or_a_teacher_file(parse, tmp_path):
  with pytest.raises(ConfigError, match="--cleaning_embeddings=.*none.npz: no such file"):
    parse(f"--cleaning_embeddings={tmp_path / 'none.npz'}")
  (tmp_path / "e.txt").write_text("")
  with pytest.raises(ConfigError, match=r"--cleaning_embeddings=.*e.txt: expected a proxy's "
                                        r"\.npz or a teacher embeddings \.jsonl"):
    parse(f"--cleaning_embeddings={tmp_path / 'e.txt'}")
  (tmp_path / "t.jsonl").write_text("")
  assert parse(f"--cleaning_embeddings={tmp_path / 't.jsonl'}").data.cleaning_embeddings == str(
      tmp_path / "t.jsonl")
