"""Teacher-guided width/depth search end to end, by the command line: a teacher trained with
--mode=fixed, the differentiable search distilling from it (its artefacts, and resuming after
a lost checkpoint), the argmax student retrained with --distill_from, and the flag errors."""
import os
import shutil

import numpy as np
import pytest
from absl import flags

from enas_face import flags as enas_flags
from enas_face import spaces
from enas_face.config import ConfigError
from test_search_core import lose_last_checkpoint, read_json, read_jsonl, run

DATA = ["--dataset=synthetic", "--image_size=16", "--synthetic_identities=8",
        "--synthetic_images_per_identity=8", "--synthetic_heldout_identities=4",
        "--synthetic_heldout_images_per_identity=4", "--num_pairs=20", "--num_folds=2",
        "--batch_size=8", "--warmup_epochs=0", "--eval_every=0"]
TEACHER = ["--num_layers=2", "--num_reductions=1", "--base_filters=8", "--embedding_dim=16",
           "--epochs=1"]
STUDENT = ["--search_space=mobilefacenet", "--width_multiplier=0.25", "--embedding_dim=8"]
SEARCH = ["--mode=search", "--search_strategy=differentiable", "--search_epochs=2",
          "--cost_model=flops", "--cost_target=2e5"]


@pytest.fixture(scope="module")
def teacher(main_in_process, tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("teacher") / "run")
  result = main_in_process(*DATA, *TEACHER, "--mode=fixed", f"--run_dir={run_dir}")
  assert result.returncode == 0, result.stderr[-4000:]
  return run_dir


@pytest.fixture(scope="module")
def search_run(teacher, main_in_process, tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("search") / "run")
  result = main_in_process(*DATA, *STUDENT, *SEARCH, f"--teacher_run_dir={teacher}",
                           f"--run_dir={run_dir}")
  assert result.returncode == 0, result.stderr[-4000:]
  assert "argmax architecture" in result.stdout
  return run_dir


@pytest.mark.slow
def test_search_writes_distributions_ranking_and_plot(search_run, teacher):
  space = spaces.get("mobilefacenet")
  model = spaces.load_config(os.path.join(search_run, "config.json")).model
  records = read_jsonl(os.path.join(search_run, "distributions.jsonl"))
  assert [r["epoch"] for r in records] == [1, 2]
  assert records[0]["tau"] == pytest.approx(5.0) and records[1]["tau"] == pytest.approx(0.1)
  for record in records:
    assert set(record["probabilities"]) == {d.name for d in space.decisions(model)}
    for values in record["probabilities"].values():
      assert sum(values) == pytest.approx(1.0, abs=1e-3)
    sample = space.from_json(record["sample"], model)
    assert record["argmax_flops"] == space.flops(model, sample)
    assert np.isfinite(record["loss"]) and np.isfinite(record["arch_loss"])
  ranked = read_json(os.path.join(search_run, "arcs_ranked.json"))
  best = ranked["architectures"][0]
  [sample] = spaces.load_samples(os.path.join(search_run, "arcs_ranked.json"), space, model)
  assert best["flops"] == space.flops(model, sample) and best["params"] == space.params(model, sample)
  assert sample == space.from_json(records[-1]["sample"], model)
  summary = read_json(os.path.join(search_run, "search_summary.json"))
  assert summary["teacher"] == teacher
  assert os.path.getsize(os.path.join(search_run, "distributions.png")) > 1000


@pytest.mark.slow
def test_search_resumes_after_a_lost_checkpoint(search_run, teacher, main_in_process, tmp_path):
  copy = str(tmp_path / "copy")
  shutil.copytree(search_run, copy)
  lose_last_checkpoint(copy, 2)
  result = main_in_process(*DATA, *STUDENT, *SEARCH, f"--teacher_run_dir={teacher}",
                           f"--run_dir={copy}",  # the original's data cache, as it was trained:
                           f"--cache_dir={os.path.join(search_run, 'data_cache')}")
  assert result.returncode == 0, result.stderr[-4000:]
  assert "resuming width/depth search" in result.stderr
  records = read_jsonl(os.path.join(copy, "distributions.jsonl"))
  original = read_jsonl(os.path.join(search_run, "distributions.jsonl"))
  assert [r["epoch"] for r in records] == [1, 2]
  assert records[0] == original[0]  # epoch 1 was not redone
  for name, values in original[1]["probabilities"].items():  # epoch 2 redone the same way
    np.testing.assert_allclose(records[1]["probabilities"][name], values, atol=2e-3)


@pytest.mark.slow
def test_student_retrains_with_distillation_from_the_search(search_run, teacher, main_in_process,
                                                            tmp_path):
  run_dir = str(tmp_path / "student")
  ranked = os.path.join(search_run, "arcs_ranked.json")
  args = [*DATA, *STUDENT, "--mode=fixed", "--epochs=2", f"--arc_file={ranked}",
          f"--distill_from={teacher}", "--distill_kl_alpha=0.9", f"--run_dir={run_dir}"]
  result = main_in_process(*args)
  assert result.returncode == 0, result.stderr[-4000:]
  config = spaces.load_config(os.path.join(run_dir, "config.json"))
  assert config.distill.teacher == teacher and config.distill.kl_alpha == 0.9
  metrics = read_json(os.path.join(run_dir, "metrics.json"))
  sample = spaces.load_samples(ranked, spaces.of(config.model), config.model)[0]
  assert metrics["params"] == spaces.of(config.model).params(config.model, sample)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  names = [n for n, _ in tf.train.list_variables(os.path.join(run_dir, "checkpoints", "ckpt-2"))]
  assert any(n.startswith("distill/") for n in names)  # the 8 -> 16 projection is saved
  history = read_jsonl(os.path.join(run_dir, "train_history.jsonl"))
  assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["loss"]) for h in history)
  lose_last_checkpoint(run_dir, 2)
  result = run(*args[:-2], "--distill_kl_alpha=0.5", args[-1])  # another loss: refused
  assert result.returncode != 0 and "--distill_kl_alpha=0.9" in result.stderr
  result = main_in_process(*args)
  assert result.returncode == 0, result.stderr[-4000:]
  assert [h["epoch"] for h in read_jsonl(os.path.join(run_dir, "train_history.jsonl"))] == [1, 2]


def write_teacher_file(path: str, config, keep=None, dim: int = 5) -> list[str]:
  """A teacher embeddings file (random unit targets) of the training images of `config`'s
  data, keyed as training looks them up; `keep`: how many of them. Returns the keys."""
  from enas_face.data import keys as image_keys
  from enas_face.data import load_dataset, teacher_files
  train = load_dataset(config.data).train
  keys = image_keys.image_keys(train.images, train.paths)
  rng = np.random.default_rng(0)
  writer = teacher_files.EmbeddingsWriter(path, teacher_files.header("test", "run", dim, {}))
  writer.append([teacher_files.record(k, "crop", rng.normal(size=dim)) for k in keys[:keep]])
  return keys


@pytest.mark.slow
def test_search_with_an_embeddings_file_teacher(parse, main_in_process, tmp_path):
  """An embeddings-file teacher guides the differentiable search: each half's targets ride
  beside its images (embedding + relational terms), the 8 -> 5 projection is checkpointed;
  a file without some training images is refused naming it and the count."""
  path = str(tmp_path / "teacher.jsonl")
  keys = write_teacher_file(path, parse(*STUDENT, *SEARCH))
  run_dir = str(tmp_path / "search")
  args = [*DATA, *STUDENT, *SEARCH, "--search_epochs=1", f"--distill_from={path}",
          "--distill_relational_weight=0.5"]
  result = main_in_process(*args, f"--run_dir={run_dir}")
  assert result.returncode == 0, result.stderr[-4000:]
  summary = read_json(os.path.join(run_dir, "search_summary.json"))
  assert summary["teacher"] == path
  [record] = read_jsonl(os.path.join(run_dir, "distributions.jsonl"))
  assert np.isfinite(record["loss"]) and np.isfinite(record["arch_loss"])
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  names = [n for n, _ in tf.train.list_variables(os.path.join(run_dir, "checkpoints", "ckpt-1"))]
  assert any(n.startswith("distill/") for n in names)
  partial = str(tmp_path / "partial.jsonl")
  write_teacher_file(partial, parse(*STUDENT, *SEARCH), keep=len(keys) - 3)
  result = main_in_process(*args[:-2], f"--distill_from={partial}",
                           f"--run_dir={tmp_path / 'refused'}")
  assert result.returncode == 2
  assert f"--distill_from={partial}: 3 of {len(keys)} training images have no teacher " \
         "embedding" in result.stderr


@pytest.fixture
def parse():
  values = flags.FLAGS

  def config(*argv):
    values.unparse_flags()
    values(["prog", *DATA, "--run_dir=/tmp/unused", *argv])
    return enas_flags.config_from_flags(values)

  yield config
  values.unparse_flags()


def test_flag_errors_name_the_flag(parse, tmp_path):
  with pytest.raises(ConfigError, match="--search_space=mobilefacenet"):
    parse(*SEARCH[:-2], "--cost_model=flops", "--cost_target=1e6")  # enas_macro: no supernet
  with pytest.raises(ConfigError, match="--cost_model=flops and --cost_target"):
    parse(*STUDENT, "--mode=search", "--search_strategy=differentiable", "--cost_model=params",
          "--cost_target=1e5")
  (tmp_path / "config.json").write_text("{}")  # a run folder, as far as the flags can tell
  with pytest.raises(ConfigError, match="only the differentiable search distils"):
    parse(*STUDENT, "--mode=search", "--search_strategy=multi_trial", "--cost_model=flops",
          "--cost_target=1e6", f"--distill_from={tmp_path}")
  with pytest.raises(ConfigError, match="--distill_from=.*no such file or folder"):
    parse(*STUDENT, "--mode=fixed", f"--distill_from={tmp_path / 'none'}")
  with pytest.raises(ConfigError, match="--distill_kl_alpha=1.0 must be in"):
    parse(*STUDENT, "--mode=fixed", "--distill_kl_alpha=1.0")
  with pytest.raises(ConfigError, match="--image_size=24"):
    parse(*STUDENT, "--mode=fixed", "--image_size=24")
  with pytest.raises(ConfigError, match="--gumbel_tau_min"):
    parse(*STUDENT, *SEARCH, "--gumbel_tau_min=6")
  config = parse("--model=mobilefacenet", "--width_multiplier=0.5", "--mode=fixed")
  assert config.model.search_space == "mobilefacenet" and config.model.width_multiplier == 0.5
  assert spaces.config_from_json(spaces.config_to_json(config)) == config
