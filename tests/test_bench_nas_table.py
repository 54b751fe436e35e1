"""bench/bench_nas_table.py: the plan stays in the band, every finished run reaches the
committed results file, and a new machine (no run folders) resumes from that file alone.
Training is stubbed: the stub writes what a finished `--mode=fixed` run leaves."""
import json
import os
import sys

import pytest

from enas_face import runlog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_nas_table as bench  # noqa: E402  pylint: disable=wrong-import-position


def args_for(tmp_path, command, work="work", *extra):
  return bench.parse_args([command, f"--work_dir={tmp_path / work}",
                           f"--table={tmp_path / 'table.json'}",
                           f"--results={tmp_path / 'data' / 'runs.jsonl'}", "--archs=3", "--uniform=2",
                           "--seeds=0,1", *extra])


@pytest.fixture
def trainings(monkeypatch):
  """Stubs the training subprocess: writes metrics and a 2-epoch history; counts the calls."""
  started = []

  def fake_call(command, **_):
    folder = next(a.split("=", 1)[1] for a in command if a.startswith("--run_dir="))
    seed = int(next(a.split("=", 1)[1] for a in command if a.startswith("--seed=")))
    started.append((os.path.basename(folder), seed))
    accuracy = 0.8 + 0.01 * len(started)
    runlog.append(os.path.join(folder, runlog.TRAIN_HISTORY),
                  [{"epoch": e, "loss": 5.0 - e, "pairs/heldout/verification_accuracy": 0.7}
                   for e in (1, 2)])
    runlog.write_json(os.path.join(folder, runlog.METRICS),
                      {"verification_accuracy": accuracy, "verification_std": 0.01})
    return 0

  monkeypatch.setattr(bench.subprocess, "call", fake_call)
  monkeypatch.setattr(bench, "tflite_latency_ms", lambda encoding, repeats: 1.5)
  monkeypatch.setattr(bench, "jacob_cov_images", lambda: None)
  monkeypatch.setattr(bench, "jacob_cov", lambda encoding, seed, images: -1.0 - seed)
  return started


def test_plan_is_in_the_band_and_redrawn_identically(tmp_path):
  first = bench.make_plan(args_for(tmp_path, "plan"))
  low, high = first["band"]
  assert all(low <= entry["flops"] <= high for entry in first["architectures"])
  assert [e["role"] for e in first["architectures"]].count("sampled") == 3
  assert bench.make_plan(args_for(tmp_path, "plan")) == first


def test_a_new_machine_resumes_from_the_results_file_alone(tmp_path, trainings):
  args = args_for(tmp_path, "build", "work", "--hours=1")
  plan = bench.load_plan(args)
  bench.build(args, plan)
  planned = len(plan["architectures"]) * 2
  assert len(trainings) == planned
  assert len(runlog.read(args.results)) == planned
  # Another machine: a fresh work dir (no plan, no run folders), the same results file.
  again = args_for(tmp_path, "build", "elsewhere", "--hours=1")
  bench.build(again, bench.load_plan(again))
  assert len(trainings) == planned
  table = bench.collect(args_for(tmp_path, "collect", "elsewhere"), bench.load_plan(again))
  assert len(table["architectures"]) == len(plan["architectures"])
  row = table["architectures"][0]
  assert set(row["seeds"]) == {"0", "1"}
  assert row["seeds"]["0"]["epochs"][1]["loss"] == 3.0
  assert row["jacob_cov"] == {"0": -1.0, "1": -2.0}
  assert json.load(open(tmp_path / "table.json"))["planned"] == len(plan["architectures"])


def test_runs_finished_before_they_were_recorded_are_recorded_not_rerun(tmp_path, trainings):
  args = args_for(tmp_path, "build", "work", "--hours=1", "--only=a000", "--seeds=0")
  plan = bench.load_plan(args)
  bench.build(args, plan)
  os.remove(args.results)
  bench.build(args, plan)
  assert trainings == [("a000_s0", 0)]
  assert [(r["id"], r["seed"]) for r in runlog.read(args.results)] == [("a000", 0)]


def test_results_of_another_plan_are_refused_naming_the_file(tmp_path, trainings):
  args = args_for(tmp_path, "build", "work", "--hours=1", "--only=a003", "--seeds=0")
  plan = bench.load_plan(args)
  bench.build(args, plan)
  other = args_for(tmp_path, "build", "other", "--hours=1", "--plan_seed=5")
  with pytest.raises(SystemExit, match="runs.jsonl.*another plan"):
    bench.recorded_runs(other, bench.load_plan(other))


def test_compare_reads_the_recorded_accuracies(tmp_path, trainings):
  args = args_for(tmp_path, "build", "work", "--hours=1", "--only=a000,a001", "--seeds=0,1")
  bench.build(args, bench.load_plan(args))
  fresh = args_for(tmp_path, "compare", "fresh", "--only=a001,a000", "--seeds=0,1")
  rows = bench.compare(fresh, bench.load_plan(fresh))["architectures"]
  assert [r["id"] for r in rows] == ["a001", "a000"]
  assert all(len(r["accuracies"]) == 2 and r["std"] > 0 for r in rows)
  with pytest.raises(SystemExit, match="a000 seed 2.*build --only=a000 --seeds=2"):
    bench.compare(args_for(tmp_path, "compare", "fresh", "--only=a000", "--seeds=2"),
                  bench.load_plan(fresh))


def test_shards_started_at_different_times_never_share_a_run(tmp_path, trainings):
  args = args_for(tmp_path, "build", "work", "--hours=1", "--shard=0/2", "--only=a000,a001")
  plan = bench.load_plan(args)
  bench.build(args, plan)  # shard 0 first: a000 at both seeds
  assert sorted(trainings) == [("a000_s0", 0), ("a000_s1", 1)]
  # shard 1 starts later, with less left to do: it takes a001 only, never a000
  bench.build(args_for(tmp_path, "build", "work", "--hours=1", "--shard=1/2"), plan)
  assert sorted(trainings)[:2] == [("a000_s0", 0), ("a000_s1", 1)]
  assert {name for name, _ in trainings[2:]} == {
      f"{e['id']}_s{seed}" for e in plan["architectures"] if int(e["id"][1:]) % 2 == 1
      for seed in (0, 1)}
