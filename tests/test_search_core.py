"""The search core on tiny synthetic runs: named search spaces in the logs and rankings,
the verification reward on held-out identities, the multi-trial strategy's trial cache
(a rerun after a lost checkpoint retrains nothing), and the new flags' errors."""
import json
import os
import re
import subprocess
import sys

import pytest
from absl import flags

from enas_face import flags as enas_flags
from enas_face import main as enas_main
from enas_face import spaces
from enas_face.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

# About 20 s of search (2 epochs) on an idle 2-core machine.
TINY = ["--dataset=synthetic", "--image_size=16", "--synthetic_identities=12",
        "--synthetic_images_per_identity=8", "--synthetic_heldout_identities=6",
        "--synthetic_heldout_images_per_identity=4", "--num_pairs=40", "--num_folds=2",
        "--num_layers=3", "--num_reductions=1", "--base_filters=8", "--embedding_dim=16",
        "--batch_size=16", "--epochs=2", "--warmup_epochs=0", "--search_epochs=2",
        "--controller_steps=2", "--controller_samples=2", "--num_final_samples=3",
        "--latency_warmup=1", "--latency_repeats=2"]
VERIFICATION = ["--reward_metric=verification", "--reward_identities=4", "--reward_pairs=20",
                "--reward=accuracy"]
MULTI_TRIAL = ["--mode=search", "--controller=random", "--search_strategy=multi_trial",
               "--trial_epochs=1", "--search_epochs=2", "--controller_steps=1",
               "--controller_samples=2"]


@pytest.fixture(scope="module")
def flagfile(tmp_path_factory):
  path = tmp_path_factory.mktemp("flags") / "tiny.cfg"
  path.write_text("\n".join(TINY) + "\n")
  return str(path)


def run(*args):
  return subprocess.run([sys.executable, "-m", "enas_face.main", *args], cwd=ROOT,
                        capture_output=True, text=True, env=ENV)


def read_json(path):
  with open(path) as f:
    return json.load(f)


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def model_config(run_dir):
  return spaces.load_config(os.path.join(run_dir, "config.json")).model


# ------------------------------------------------------------ one-shot, verification reward
@pytest.fixture(scope="module")
def one_shot_run(flagfile, main_in_process, tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("one_shot") / "search")
  result = main_in_process(f"--flagfile={flagfile}", "--mode=search", f"--run_dir={run_dir}",
                           *VERIFICATION)
  assert result.returncode == 0, result.stderr[-4000:]
  return run_dir


@pytest.mark.slow
def test_one_shot_log_holds_named_samples_with_verification_scores(one_shot_run):
  space = spaces.get("enas_macro")
  model = model_config(one_shot_run)
  records = read_jsonl(os.path.join(one_shot_run, "sampled_arcs.jsonl"))
  assert len(records) == 2 * 2 * 2  # epochs x controller steps x samples
  for record in records:
    assert record["space"] == "enas_macro"
    assert isinstance(record["sample"], dict)
    sample = space.from_json(record["sample"], model)
    assert record["encoding"] == space.to_string(sample) == record["arc"]
    assert record["reward_metric"] == "verification"
    assert record["strategy"] == "one_shot"
    assert 0.0 <= record["score"] <= 1.0
    assert record["latency_ms"] is None  # --reward=accuracy does not price latency
    assert record["reward"] == pytest.approx(record["score"])


@pytest.mark.slow
def test_one_shot_ranking_and_summary(one_shot_run):
  space = spaces.get("enas_macro")
  model = model_config(one_shot_run)
  ranked = read_json(os.path.join(one_shot_run, "arcs_ranked.json"))
  assert ranked["space"] == "enas_macro" and ranked["strategy"] == "one_shot"
  entries = ranked["architectures"]
  assert 1 <= len(entries) <= 3  # distinct draws of --num_final_samples=3
  scores = [e["score"] for e in entries]
  assert scores == sorted(scores, reverse=True)
  for rank, entry in enumerate(entries, 1):
    assert entry["rank"] == rank and entry["reward_metric"] == "verification"
    assert entry["encoding"] == space.to_string(space.from_json(entry["sample"], model))
    assert 0.0 <= entry["score"] <= 1.0 and entry["latency_ms"] > 0  # priced for the ranking
  assert len({e["encoding"] for e in entries}) == len(entries)
  loaded = spaces.load_samples(os.path.join(one_shot_run, "arcs_ranked.json"), space, model)
  assert [space.to_string(s) for s in loaded] == [e["encoding"] for e in entries]
  summary = read_json(os.path.join(one_shot_run, "search_summary.json"))
  assert summary["reward_metric"] == "verification" and summary["strategy"] == "one_shot"
  assert summary["search_space"] == "enas_macro" and summary["rewarded_samples"] == 8
  assert "trials" not in summary


# ------------------------------------------------------------------------ multi-trial
def lose_last_checkpoint(run_dir, number):
  """A kill after epoch `number`'s trials but before its checkpoint: ckpt-`number` goes,
  the index names ckpt-`number - 1` again."""
  folder = os.path.join(run_dir, "checkpoints")
  removed = [name for name in os.listdir(folder) if name.startswith(f"ckpt-{number}.")]
  assert removed, os.listdir(folder)
  for name in removed:
    os.remove(os.path.join(folder, name))
  previous = f"ckpt-{number - 1}"
  with open(os.path.join(folder, "checkpoint"), "w") as f:
    f.write(f'model_checkpoint_path: "{previous}"\nall_model_checkpoint_paths: "{previous}"\n')


@pytest.fixture(scope="module")
def multi_trial_run(flagfile, main_in_process, tmp_path_factory):
  """A finished multi-trial search (its outputs read at once), then the rerun after its
  epoch-2 checkpoint was lost."""
  run_dir = str(tmp_path_factory.mktemp("multi_trial") / "search")
  args = [f"--flagfile={flagfile}", *MULTI_TRIAL, f"--run_dir={run_dir}"]
  result = main_in_process(*args)
  assert result.returncode == 0, result.stderr[-4000:]
  first = {"log": read_jsonl(os.path.join(run_dir, "sampled_arcs.jsonl")),
           "trials": read_jsonl(os.path.join(run_dir, "trials.jsonl")),
           "ranked": read_json(os.path.join(run_dir, "arcs_ranked.json")),
           "summary": read_json(os.path.join(run_dir, "search_summary.json"))}
  lose_last_checkpoint(run_dir, 2)
  rerun = main_in_process(*args)
  assert rerun.returncode == 0, rerun.stderr[-4000:]
  return {"run_dir": run_dir, "first": first, "rerun_stderr": rerun.stderr,
          "log": read_jsonl(os.path.join(run_dir, "sampled_arcs.jsonl")),
          "trials": read_jsonl(os.path.join(run_dir, "trials.jsonl")),
          "summary": read_json(os.path.join(run_dir, "search_summary.json"))}


@pytest.mark.slow
def test_multi_trial_trains_each_distinct_sample_once(multi_trial_run):
  first, run_dir = multi_trial_run["first"], multi_trial_run["run_dir"]
  log, trials = first["log"], first["trials"]
  assert len(log) == 2 * 1 * 2
  assert {r["strategy"] for r in log} == {"multi_trial"}
  encodings = [t["encoding"] for t in trials]
  assert len(encodings) == len(set(encodings))  # one record per trial
  assert set(encodings) == {r["encoding"] for r in log}  # one trial per distinct sample
  by_encoding = {t["encoding"]: t for t in trials}
  for record in log:  # every rewarded sample carries its trial's score
    assert record["score"] == by_encoding[record["encoding"]]["score"]
  for trial in trials:
    assert trial["trial_epochs"] == 1 and trial["reward_metric"] == "classification"
    assert 0.0 <= trial["score"] <= 1.0
    folder = os.path.join(run_dir, "trials", trial["encoding"].replace(" ", "-"))
    assert os.path.isdir(folder) and not os.path.exists(os.path.join(folder, "checkpoints"))
  entries = first["ranked"]["architectures"]
  assert first["ranked"]["strategy"] == "multi_trial"
  assert sorted(e["encoding"] for e in entries) == sorted(encodings)  # exactly the trials
  assert [e["score"] for e in entries] == sorted((t["score"] for t in trials), reverse=True)
  for entry in entries:
    assert entry["score"] == by_encoding[entry["encoding"]]["score"]
  assert first["summary"]["strategy"] == "multi_trial"
  assert first["summary"]["trials"] == len(trials)
  assert first["summary"]["trials_trained_this_invocation"] == len(trials)


@pytest.mark.slow
def test_multi_trial_rerun_after_a_lost_checkpoint_retrains_nothing(multi_trial_run):
  first, run_dir = multi_trial_run["first"], multi_trial_run["run_dir"]
  summary = multi_trial_run["summary"]
  # It did resume from epoch 1 and ran epoch 2 again (its samples came from the cache).
  assert re.search(r"resuming (the )?search from \S*ckpt-1 \(epoch 1 of 2\)",
                   multi_trial_run["rerun_stderr"]), multi_trial_run["rerun_stderr"][-3000:]
  assert os.path.exists(os.path.join(run_dir, "checkpoints", "ckpt-2.index"))
  assert summary["trials_trained_this_invocation"] == 0
  assert summary["trials"] == len(first["trials"])
  assert multi_trial_run["trials"] == first["trials"]  # no trial record added or changed
  log = multi_trial_run["log"]
  assert len(log) == len(first["log"])
  for before, after in zip(first["log"], log):
    for key in ("epoch", "step", "sample_index", "encoding", "score"):
      assert after[key] == before[key], key


# ---------------------------------------------------------------------------- flag errors
@pytest.fixture
def parse():
  """In-process flag parsing, as tests/test_flags.py does; the flags are reset afterwards."""
  values = flags.FLAGS

  def config(*argv):
    values.unparse_flags()
    values(["prog", *TINY, *argv])
    return enas_flags.config_from_flags(values)

  yield config
  values.unparse_flags()


def test_verification_reward_needs_reward_identities(parse):
  with pytest.raises(ConfigError, match="--reward_identities"):
    parse("--mode=search", "--reward_metric=verification")
  with pytest.raises(ConfigError, match="--reward_identities"):
    parse("--mode=search", "--reward_metric=verification_auc")
  config = parse("--mode=search", "--reward_metric=verification", "--reward_identities=4",
                 "--reward_pairs=20")
  assert (config.search.reward_metric, config.search.reward_identities) == ("verification", 4)
  parse("--mode=fixed", "--reward_metric=verification")  # only a search rewards


def test_unknown_search_space_is_named(parse):
  with pytest.raises(ConfigError, match="--search_space=nope"):
    parse("--mode=search", "--search_space=nope")


def test_reward_pairs_must_fill_the_folds(parse):
  with pytest.raises(ConfigError, match="--reward_pairs"):
    parse("--mode=search", "--reward_identities=4", "--reward_pairs=21", "--num_folds=2")


def test_flag_errors_end_with_one_error_line_and_exit_code_2():
  for args, expected in ((["--reward_metric=verification"], "--reward_identities"),
                         (["--search_space=nope"], "--search_space=nope"),
                         (["--reward_identities=4", "--reward_pairs=21", "--num_folds=2"],
                          "--reward_pairs")):
    result = run(*TINY, "--mode=search", *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and expected in result.stderr


def test_a_search_is_not_resumed_with_another_strategy(parse, tmp_path):
  run_dir = str(tmp_path / "search")
  config = parse("--mode=search", f"--run_dir={run_dir}")
  enas_main._prepare_run_dir(config)
  assert config.search.strategy == "one_shot"
  enas_main._prepare_run_dir(parse("--mode=search", f"--run_dir={run_dir}"))  # same: resumes
  other = parse("--mode=search", f"--run_dir={run_dir}", "--search_strategy=multi_trial")
  with pytest.raises(ConfigError, match="search with other settings "
                     r"\(--search_strategy='one_shot' there, 'multi_trial' now\)"):
    enas_main._prepare_run_dir(other)
  assert spaces.load_config(os.path.join(run_dir, "config.json")).search.strategy == "one_shot"
  # The command line refuses it before any training: exit code 2, one error line.
  result = run(*TINY, "--mode=search", f"--run_dir={run_dir}", "--search_strategy=multi_trial")
  assert result.returncode == 2 and result.stderr.startswith("error: ")
  assert f"--run_dir={run_dir}" in result.stderr and "other settings" in result.stderr
