"""bench/bench_cleaning_retrain.py with training stubbed: one run per set and seed, recorded,
restored on a new machine without training, a table of means; bad --sets name the flag."""
import json
import os
import sys

import pytest

from enas_face import runlog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_cleaning_retrain as bench  # noqa: E402  pylint: disable=wrong-import-position
import passthrough  # noqa: E402  pylint: disable=wrong-import-position

FLAGFILE = os.path.join(ROOT, "flags", "cleaning_retrain_lfw_view1.cfg")


def make_sets(root):
  sets = {}
  for name, kept in (("none", 100), ("dlib", 80)):
    records = root / f"set_{name}" / "records"
    records.mkdir(parents=True)
    runlog.write_json(str(records.parent / "cleaning_manifest.json"), {"kept_images": kept})
    sets[name] = records
  return sets


def test_each_set_and_seed_trains_once_and_a_new_machine_reads_the_records(tmp_path, monkeypatch,
                                                                           capsys):
  started = []

  def fake_run_step(command, done, log):
    started.append(command)
    dataset = next(a for a in command if a.startswith("--dataset="))
    seed = int(next(a for a in command if a.startswith("--seed="))[7:])
    accuracy = (0.8 if "set_none" in dataset else 0.9) + 0.01 * seed
    os.makedirs(os.path.dirname(done), exist_ok=True)
    runlog.write_json(done, {"verification_accuracy": accuracy, "verification_std": 0.03,
                             "tar_at_far_1e-3": 0.2})
    return 1.0

  monkeypatch.setattr(passthrough, "run_step", fake_run_step)
  results = str(tmp_path / "data" / "runs.jsonl")

  def run(machine):
    sets = make_sets(tmp_path / machine / "cleaning")
    bench.main([f"--flagfile={FLAGFILE}", "--seeds=0,1", f"--results={results}",
                f"--runs_root={tmp_path / machine / 'runs'}",
                "--sets=" + ",".join(f"{k}:{v}" for k, v in sets.items()), "--", "--epochs=1"])
    return json.loads(open(tmp_path / machine / "runs" / "cleaning_retrain.json").read())

  first = run("here")
  assert len(started) == 4 and all("--epochs=1" in c and "--mode=fixed" in c for c in started)
  rows = {r["set"]: r for r in first["rows"]}
  assert rows["none"]["accuracy_mean"] == pytest.approx(0.805)
  assert rows["dlib"]["accuracy_mean"] == pytest.approx(0.905)
  assert rows["dlib"]["accuracy_std"] == pytest.approx(0.005)
  assert rows["dlib"]["kept_train_images"] == 80
  assert "| dlib | 80 | 0.9050 +- 0.0050 (2 seeds)" in capsys.readouterr().out
  assert run("there")["rows"] == first["rows"] and len(started) == 4  # nothing trained again


def test_bad_sets_name_the_flag(tmp_path):
  with pytest.raises(SystemExit, match="--sets"):
    bench.parse_sets("no_colon_here")
  with pytest.raises(SystemExit, match="no such folder"):
    bench.parse_sets(f"a:{tmp_path / 'missing'}")
