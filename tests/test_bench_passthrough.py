"""bench/passthrough.py's run memory: a run's key survives a move to another clone and
machine, and a recorded run's result files come back without running it."""
import json
import os
import sys

from enas_face import runlog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import passthrough  # noqa: E402  pylint: disable=wrong-import-position


def test_run_key_ignores_run_dir_and_where_files_live_but_not_the_flagfiles_lines(tmp_path):
  flagfile = os.path.join(ROOT, "flags", "distill_lfw_view1.cfg")
  one = passthrough.main_command(f"--flagfile={flagfile}", "--seed=0",
                                 f"--distill_from={tmp_path / 'a' / 'dlib.jsonl'}",
                                 f"--run_dir={tmp_path / 'x'}")
  two = passthrough.main_command(f"--flagfile={flagfile}", "--seed=0",
                                 f"--distill_from={tmp_path / 'b' / 'dlib.jsonl'}",
                                 f"--run_dir={tmp_path / 'y'}")
  assert passthrough.run_key(one) == passthrough.run_key(two)
  assert "flags/distill_lfw_view1.cfg{" in passthrough.run_key(one)
  assert "base_filters=20" in passthrough.run_key(one)
  assert passthrough.run_key(one) != passthrough.run_key(one[:-2] + one[-1:])
  copy = tmp_path / "copy.cfg"
  copy.write_text(open(flagfile).read().replace("--base_filters=20", "--base_filters=22"))
  edited = [a.replace(flagfile, str(copy)) for a in one]
  assert "base_filters=22" in passthrough.run_key(edited)


def test_paths_under_the_runs_root_keep_their_folder(tmp_path):
  """Two searches' rankings under the runs root are two runs, on any machine."""
  def retrain(root, search):
    return passthrough.main_command(f"--arc_file={root / search / 'arcs_ranked.json'}")
  here, there = tmp_path / "here", tmp_path / "there"
  key = lambda command, root: passthrough.run_key(command, (str(root),))  # noqa: E731
  assert key(retrain(here, "search_plain"), here) == key(retrain(there, "search_plain"), there)
  assert key(retrain(here, "search_plain"), here) != key(retrain(here, "search_teacher"), here)
  assert "search_plain/arcs_ranked.json" in key(retrain(here, "search_plain"), here)


def test_a_dataset_path_after_its_scheme_is_reduced_like_any_path(tmp_path):
  """--dataset=tfrecord:/abs/path: the path under a root keeps its folder, the scheme stays."""
  def train(root):
    return passthrough.main_command(f"--dataset=tfrecord:{root / 'set_dlib' / 'records'}")
  key = lambda root: passthrough.run_key(train(root), (str(root),))  # noqa: E731
  assert key(tmp_path / "here") == key(tmp_path / "there")
  assert "--dataset=tfrecord:set_dlib/records" in key(tmp_path / "here")
  assert passthrough.run_key(passthrough.main_command("--dataset=synthetic")).endswith(
      "--dataset=synthetic")


def test_a_recorded_run_is_restored_not_rerun(tmp_path, monkeypatch):
  started = []

  def fake_run_step(command, done, log):
    started.append(command)
    runlog.write_json(done, {"verification_accuracy": 0.9})
    runlog.write_json(os.path.join(os.path.dirname(done), "arcs_ranked.json"), [[1, 2]])
    runlog.append(os.path.join(os.path.dirname(done), "history.jsonl"), [{"epoch": 1}])
    return 5.0

  monkeypatch.setattr(passthrough, "run_step", fake_run_step)
  results = str(tmp_path / "data" / "runs.jsonl")
  command = passthrough.main_command("--seed=0", f"--run_dir={tmp_path / 'a'}")
  (tmp_path / "a").mkdir()
  keep = ("metrics.json", "arcs_ranked.json", "history.jsonl", "missing.json")
  records = passthrough.RunRecords(results)
  assert records.run(command, str(tmp_path / "a" / "metrics.json"), "log", keep) == 5.0
  # another machine: a new folder, the same results file
  again = passthrough.RunRecords(results)
  moved = passthrough.main_command("--seed=0", f"--run_dir={tmp_path / 'b'}")
  assert again.run(moved, str(tmp_path / "b" / "metrics.json"), "log", keep) == 0.0
  assert len(started) == 1
  assert json.load(open(tmp_path / "b" / "arcs_ranked.json")) == [[1, 2]]
  assert len(runlog.read(results)[0]["code_version"]) == 40
  assert json.load(open(tmp_path / "b" / "metrics.json"))["verification_accuracy"] == 0.9
  assert runlog.read(str(tmp_path / "b" / "history.jsonl")) == [{"epoch": 1}]
  assert not os.path.exists(tmp_path / "b" / "missing.json")
  other = passthrough.main_command("--seed=1", f"--run_dir={tmp_path / 'c'}")
  (tmp_path / "c").mkdir()
  again.run(other, str(tmp_path / "c" / "metrics.json"), "log", keep)
  assert len(started) == 2


def test_summarised_runs_once_and_records_the_summary_with_its_name(tmp_path, monkeypatch):
  """A bench's step (bench_distill, bench_cleaning_retrain): the record of a finished run is
  its summary, made once; a second machine reads it back without running or summarising."""
  started, summarised = [], []

  def fake_run_step(command, done, log):
    started.append(command)
    runlog.write_json(done, {"verification_accuracy": 0.8})
    return 1.0

  def summary(run_dir):
    summarised.append(run_dir)
    return json.load(open(os.path.join(run_dir, "metrics.json")))

  monkeypatch.setattr(passthrough, "run_step", fake_run_step)
  results = str(tmp_path / "runs.jsonl")
  command = passthrough.main_command("--seed=3", f"--run_dir={tmp_path / 'a'}")
  (tmp_path / "a").mkdir()
  record = passthrough.RunRecords(results).summarised(
      command, str(tmp_path / "a" / "metrics.json"), "log", summary, "a_s3")
  assert record["verification_accuracy"] == 0.8 and record["name"] == "a_s3"
  assert summarised == [str(tmp_path / "a")]
  moved = passthrough.main_command("--seed=3", f"--run_dir={tmp_path / 'b'}")
  again = passthrough.RunRecords(results).summarised(
      moved, str(tmp_path / "b" / "metrics.json"), "log", summary, "b_s3")
  assert again["name"] == "a_s3" and len(started) == 1 and len(summarised) == 1
