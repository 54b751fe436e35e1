"""bench/bench_distill.py: dlib's FLOPs counted from its definition, students held to the
budget, and the table assembled from the runs it would start (runs stubbed by a tiny
finished run)."""
import dataclasses
import json
import os
import shutil
import sys

import pytest

from enas_face import runlog, spaces
from enas_face.config import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_distill as bench  # noqa: E402  pylint: disable=wrong-import-position
import passthrough  # noqa: E402  pylint: disable=wrong-import-position


def test_dlib_resnet_has_29_convolutions_and_dlibs_feature_map_sizes():
  """dlib documents "a ResNet network with 29 conv layers"; without padding at stride 2:
  150 -> 72 (7x7 s2) -> 35 (max pool 3 s2) -> 17 -> 8 -> 3 -> 1."""
  count = bench.dlib_resnet_flops()
  assert count["convolutions"] == 29
  assert count["stage_sizes"] == [35, 35, 17, 8, 3, 1]
  first = 2 * 72 * 72 * 7 * 7 * 3 * 32
  assert count["flops"] > first and 4e8 < count["flops"] < 6e8


def test_conv_flops_counts_a_multiply_add_as_two():
  assert bench.conv_flops(8, 3, 4, 3, 1, 1) == (2 * 8 * 8 * 9 * 3 * 4, 8)
  assert bench.conv_flops(35, 32, 64, 3, 2, 0)[1] == 17


def test_mobilefacenet_student_is_the_widest_within_the_budget():
  model = ModelConfig(image_size=112, embedding_dim=128)
  space = spaces.get("mobilefacenet")

  def flops(width):
    scaled = dataclasses.replace(model, search_space="mobilefacenet", width_multiplier=width)
    return space.flops(scaled, space.default(scaled))

  width = bench.closest_width_within(model, 50e6)
  assert flops(width) <= 50e6 < flops(round(width + 0.01, 2))
  with pytest.raises(SystemExit, match="--budget_flops=1: no MobileFaceNet width fits"):
    bench.closest_width_within(model, 1)


def test_an_enas_student_above_the_budget_is_refused_naming_the_flag():
  model = ModelConfig(image_size=112, stem_stride=2, embedding_dim=128)
  assert bench.student_flags("enas", model, 50e6, "--base_filters=20") == [
      "--search_space=enas_macro", "--base_filters=20"]
  with pytest.raises(SystemExit, match="--enas_flags='--base_filters=32': the ENAS student has "
                                       "112.3 MFLOPs, above --budget_flops=5e"):
    bench.student_flags("enas", model, 50e6, "--base_filters=32")


def test_the_lfw_flagfile_students_fit_a_tenth_of_dlib():
  model = bench.model_of(os.path.join(ROOT, "flags", "distill_lfw_view1.cfg"))
  assert (model.image_size, model.base_filters, model.stem_stride) == (112, 20, 2)
  budget = bench.dlib_resnet_flops()["flops"] / 10
  assert bench.student_flags("enas", model, budget, "")[0] == "--search_space=enas_macro"
  assert bench.student_flags("mobilefacenet", model, budget, "")[1].startswith(
      "--width_multiplier=0.")


def test_main_runs_every_student_variant_and_seed_and_writes_the_table(
    tiny_fixed_run, monkeypatch, tmp_path, capsys):
  commands = []

  def fake_step(command, done, log):
    commands.append(command)
    run_dir = os.path.dirname(done)
    if done.endswith(runlog.TEACHER_METRICS):
      os.makedirs(run_dir)
      runlog.write_json(done, {"teacher": "/t/dlib.jsonl", "teacher_kind": "embeddings",
                               "pair_set_names": ["lfw"], "pair_sets": {"lfw": {
                                   "verification_accuracy": 0.98, "verification_std": 0.01,
                                   "tar_at_far_1e-3": 0.9}}})
    else:
      shutil.copytree(tiny_fixed_run.run_dir, run_dir)
    return 1.0

  monkeypatch.setattr(passthrough, "run_step", fake_step)
  monkeypatch.setattr(bench, "tflite_latencies", lambda runs: {name: 2.5 for name in runs})
  teacher = tmp_path / "dlib.jsonl"
  teacher.write_text("{}\n")
  root = tmp_path / "runs"
  results = tmp_path / "data" / "distill_runs.jsonl"
  arguments = [f"--flagfile={os.path.join(ROOT, 'flags', 'distill_lfw_view1.cfg')}",
               f"--teacher={teacher}", f"--results={results}", "--seeds=0,1", "--",
               "--epochs=1"]
  bench.main([f"--runs_root={root}", *arguments])
  assert len(commands) == 1 + 2 * 3 * 2
  assert len(runlog.read(str(results))) == 1 + 2 * 3 * 2
  assert "--mode=evaluate_teacher" in commands[0]
  fixed = commands[1:]
  assert all(c[-1] == "--epochs=1" and "--mode=fixed" in c for c in fixed)
  with_teacher = [c for c in fixed if f"--distill_from={teacher}" in c]
  assert len(with_teacher) == 8
  assert sum("--unlabelled=small_identities" in c for c in fixed) == 4
  assert sum("--search_space=mobilefacenet" in c for c in fixed) == 6
  saved = json.loads((root / "distill_table.json").read_text())
  rows = {r["row"]: r for r in saved["rows"]}
  assert rows["teacher"]["accuracy_mean"] == 0.98
  assert rows["teacher"]["flops"] == bench.dlib_resnet_flops()["flops"]
  metrics = json.loads(open(os.path.join(tiny_fixed_run.run_dir, runlog.METRICS)).read())
  student = rows["mobilefacenet_unlabelled"]
  assert student["seeds"] == 2 and student["latency_ms"] == 2.5
  assert student["accuracy_mean"] == pytest.approx(metrics["verification_accuracy"])
  printed = capsys.readouterr().out
  assert "| enas: teacher, labelled + unlabelled images |" in printed
  assert "Budget B = 50.87 MFLOPs (0.100 of the teacher's 508.7)" in printed
  # Another machine: no run folders, the committed records; nothing runs, the same table.
  moved = tmp_path / "elsewhere"
  moved.mkdir()
  teacher.rename(moved / "dlib.jsonl")
  arguments[1] = f"--teacher={moved / 'dlib.jsonl'}"
  bench.main([f"--runs_root={tmp_path / 'fresh'}", *arguments])
  assert len(commands) == 1 + 2 * 3 * 2
  again = json.loads((tmp_path / "fresh" / "distill_table.json").read_text())
  assert again["rows"] == saved["rows"]
  # Other flags after `--` make other runs (the teacher's evaluation too: they reach it).
  bench.main([f"--runs_root={tmp_path / 'other'}", "--students=enas", "--variants=none",
              *arguments[:-1], "--epochs=2"])
  assert len(commands) == 1 + 2 * 3 * 2 + 3
  # A variant's flags beyond the defaults are named in its row's label, and only there.
  bench.main([f"--runs_root={tmp_path / 'ce0'}", "--students=enas",
              "--variants=teacher,unlabelled",
              "--unlabelled_flags=--distill_ce_weight=0.5 --unlabelled=small_identities",
              *arguments])
  saved = json.loads((tmp_path / "ce0" / "distill_table.json").read_text())
  labels = [r["label"] for r in saved["rows"]]
  assert labels[1:] == ["enas: teacher, labelled images",
                        "enas: teacher, labelled + unlabelled images (--distill_ce_weight=0.5)"]


def test_unknown_students_or_a_missing_teacher_are_named(tmp_path, capsys):
  flagfile = f"--flagfile={os.path.join(ROOT, 'flags', 'distill_lfw_view1.cfg')}"
  with pytest.raises(SystemExit) as exit_info:
    bench.main([flagfile, f"--teacher={tmp_path}", f"--runs_root={tmp_path}",
                "--students=resnet"])
  assert exit_info.value.code == 2 and "--students=resnet: unknown ['resnet']" in \
      capsys.readouterr().err
  with pytest.raises(SystemExit):
    bench.main([flagfile, f"--teacher={tmp_path / 'none.jsonl'}", f"--runs_root={tmp_path}"])
  assert f"--teacher={tmp_path / 'none.jsonl'}: no such file" in capsys.readouterr().err


def test_plan_prints_the_budget_and_students_and_runs_nothing(monkeypatch, tmp_path, capsys):
  monkeypatch.setattr(passthrough, "run_step", lambda *a: pytest.fail("--plan ran something"))
  bench.main([f"--flagfile={os.path.join(ROOT, 'flags', 'distill_lfw_view1.cfg')}",
              f"--teacher={tmp_path}", f"--runs_root={tmp_path / 'runs'}", "--plan"])
  printed = capsys.readouterr().out
  assert "teacher 508.7 MFLOPs, budget 50.87 MFLOPs" in printed
  assert "student enas: --search_space=enas_macro: 46.90 MFLOPs" in printed
  assert "--width_multiplier=0.28: 48.08 MFLOPs" in printed
  assert not os.path.exists(tmp_path / "runs")


def test_more_pairs_verifies_every_row_on_a_second_set_once(tiny_fixed_run, monkeypatch,
                                                            tmp_path, capsys):
  """--more_pairs: the teacher evaluated on both sets in a folder of its own, each finished
  student by --mode=eval on its folder; recorded, so a rerun evaluates nothing."""
  commands = []

  def pair_sets(accuracy):
    return {name: {"verification_accuracy": accuracy + i / 100, "verification_std": 0.01,
                   "tar_at_far_1e-3": 0.5, "num_pairs": 10 * (i + 1)}
            for i, name in enumerate(("pairsDevTest", "people"))}

  def fake_step(command, done, log):
    commands.append(command)
    if "--mode=evaluate_teacher" in command:
      run_dir = os.path.dirname(done) if done else command[-1].split("=", 1)[1]
      os.makedirs(run_dir, exist_ok=True)
      names = ["pairsDevTest", "people"] if done is None else ["pairsDevTest"]
      runlog.write_json(os.path.join(run_dir, runlog.TEACHER_METRICS), {
          "teacher": "/t/dlib.jsonl", "teacher_kind": "embeddings", "pair_set_names": names,
          "pair_sets": pair_sets(0.97)})
    elif "--mode=eval" in command:
      assert done is None and command[-1].startswith("--run_dir=")
      path = os.path.join(command[-1].split("=", 1)[1], runlog.METRICS)
      runlog.write_json(path, dict(json.load(open(path)), pair_sets=pair_sets(0.8)))
    else:
      shutil.copytree(tiny_fixed_run.run_dir, os.path.dirname(done))
    return 1.0

  monkeypatch.setattr(passthrough, "run_step", fake_step)
  monkeypatch.setattr(bench, "tflite_latencies", lambda runs: {name: 2.5 for name in runs})
  teacher = tmp_path / "dlib.jsonl"
  teacher.write_text("{}\n")
  arguments = [f"--flagfile={os.path.join(ROOT, 'flags', 'distill_lfw_view1.cfg')}",
               f"--teacher={teacher}", f"--results={tmp_path / 'runs.jsonl'}", "--seeds=0,1",
               "--students=enas", "--variants=none",
               "--more_pairs=lfw:runs/pairs/people.txt,data/lfw/aligned_112"]
  bench.main([f"--runs_root={tmp_path / 'a'}", *arguments])
  evaluations = [c for c in commands if "--mode=eval" in c]
  assert len(evaluations) == 2 and all(
      "--pairs=lfw:data/lfw/pairsDevTest.txt,data/lfw/aligned_112,"
      "lfw:runs/pairs/people.txt,data/lfw/aligned_112" in c for c in evaluations)
  assert len(commands) == 2 + 2 + 2  # teacher twice, two trainings, two evaluations
  rows = json.loads((tmp_path / "a" / "distill_table.json").read_text())["rows"]
  assert rows[0]["more_accuracy_mean"] == pytest.approx(0.98)
  assert rows[1]["more_accuracies"] == pytest.approx([0.81, 0.81])
  assert rows[1]["more_num_pairs"] == 20
  assert "| people acc (20 pairs, mean +- std over seeds) | fold std |" in capsys.readouterr().out
  bench.main([f"--runs_root={tmp_path / 'b'}", *arguments])
  assert len(commands) == 6
  # --report: the recorded rows only, the missing runs named, nothing run.
  bench.main([f"--runs_root={tmp_path / 'c'}", "--report", *arguments[:4],
              "--students=enas,mobilefacenet", "--variants=none", arguments[-1]])
  assert len(commands) == 6
  printed = capsys.readouterr().out
  assert "| enas: no teacher | " in printed and "mobilefacenet: no teacher" not in printed
  assert "Not run yet: mobilefacenet_none_s0, mobilefacenet_none_s1" in printed
