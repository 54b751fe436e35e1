"""bench/bench_nas_supernet.py: its flagfiles search the table's data and space (ENAS's and
TuNAS's recipes), `train` runs (and resumes) the search, and `score` writes each table
architecture's supernet score keyed by encoding, recipe and BatchNorm mode, resumably, with
Kendall tau against a tiny fake table."""
import json
import os

import numpy as np
import pytest

from bench import bench_nas_supernet as bench
from bench.passthrough import read_flagfile
from enas_face import spaces
from enas_face.config import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE_RECIPE = read_flagfile(os.path.join(ROOT, "flags", "nas_table_synthetic.cfg"))
# The table's flags that are not about the search or stand-alone training alone.
SHARED = ("dataset", "image_size", "synthetic_identities", "synthetic_images_per_identity",
          "synthetic_heldout_identities", "synthetic_heldout_images_per_identity", "num_pairs",
          "num_folds", "data_seed", "search_space", "embedding_dim", "head", "margin_scale",
          "batch_size", "lr_max", "lr_min", "weight_decay", "label_smoothing", "warmup_epochs")


@pytest.mark.parametrize("recipe", bench.RECIPES)
def test_flagfiles_search_the_tables_data_and_space(recipe):
  flags = read_flagfile(bench.flagfile(recipe))
  assert {name: flags.get(name) for name in SHARED} == {name: TABLE_RECIPE[name] for name in SHARED}
  assert (flags["mode"], flags["search_strategy"], flags["cost_model"]) == (
      "search", "one_shot", "flops")
  assert float(flags["cost_target"]) == 12e6  # the band's top, T
  assert flags["reward_metric"] == "classification"  # no training identity held out


def test_tunas_flagfile_holds_tunas_recipe_and_enas_does_not():
  tunas, enas = (read_flagfile(bench.flagfile(r)) for r in ("tunas", "enas"))
  assert (tunas["controller"], tunas["controller_warmup_fraction"], tunas["path_dropout_warmup"],
          tunas["reward"], tunas["cost_penalty"], tunas["baseline_decay"],
          tunas["entropy_weight"]) == ("categorical", "0.25", "1.0", "two_sided", "0.1", "0.95",
                                       "0")
  assert enas["controller"] == "enas" and "controller_warmup_fraction" not in enas
  updates = lambda f: int(f["controller_steps"]) * (  # noqa: E731
      1 - float(f.get("controller_warmup_fraction", 0)))
  assert updates(tunas) > 5 * updates(enas)  # many more controller updates
  assert tunas["search_epochs"] == enas["search_epochs"]  # the same shared training


def test_train_runs_the_recipes_search_and_leaves_a_finished_one(tmp_path, monkeypatch, capsys):
  calls = []
  monkeypatch.setattr(bench.subprocess, "call", lambda command, **kw: calls.append(command) or 0)
  bench.main(["train", "--recipe=tunas", f"--work_dir={tmp_path}", "--", "--search_epochs=2"])
  [command] = calls
  assert command[1:3] == ["-m", "enas_face.main"]
  assert f"--flagfile={bench.flagfile('tunas')}" in command
  assert f"--run_dir={tmp_path / 'tunas'}" in command and command[-1] == "--search_epochs=2"
  (tmp_path / "tunas" / "search_summary.json").write_text("{}")
  bench.main(["train", "--recipe=tunas", f"--work_dir={tmp_path}"])
  assert len(calls) == 1 and "finished" in capsys.readouterr().out


def fake_table(run_config, count=5, seed=0) -> dict:
  """A table of `count` architectures of the tiny run's space with made-up accuracies of
  two seeds, and the run's flags."""
  model = ModelConfig(**run_config["model"])
  space, rng = spaces.get("mobilefacenet"), np.random.default_rng(seed)
  rows = []
  for _ in range(count):
    accuracy = float(rng.uniform(0.6, 0.9))
    rows.append({"encoding": space.encode(space.sample_uniform(model, rng)),
                 "seeds": {s: {"verification_accuracy": accuracy + float(rng.normal(0, 0.01))}
                           for s in ("0", "1")}})
  return {"seeds": [0, 1], "architectures": rows,
          "flags": [f"--image_size={model.image_size}", f"--embedding_dim={model.embedding_dim}",
                    "--search_space=mobilefacenet", f"--width_multiplier={model.width_multiplier}"]}


@pytest.mark.slow
def test_score_writes_each_architectures_scores_and_kendall_tau(tiny_tunas_search, tmp_path,
                                                                capsys):
  tiny_tunas_search.copy(str(tmp_path / "work" / "tunas"))
  with open(os.path.join(tiny_tunas_search.run_dir, "config.json")) as f:
    table = fake_table(json.load(f))
  (tmp_path / "table.json").write_text(json.dumps(table))
  out = tmp_path / "scores.json"
  argv = ["score", f"--table={tmp_path / 'table.json'}", f"--work_dir={tmp_path / 'work'}",
          f"--out={out}", "--recalibration_images=16"]
  bench.main(argv)
  printed = capsys.readouterr().out
  assert "enas: no run folder" in printed and "| supernet tunas, BN recalibrate |" in printed
  scores = json.loads(out.read_text())
  assert scores["metric"] == "verification" and set(scores["runs"]) == {"tunas"}
  assert scores["runs"]["tunas"]["epochs_trained"] == 3
  for row in table["architectures"]:
    values = scores["scores"][bench.encoding_key(row["encoding"])]["tunas"]
    assert set(values) == {"batch", "recalibrate"}
    assert all(0.0 <= v <= 1.0 for v in values.values())
  taus = {row["score"]: row for row in scores["kendall_tau"]}
  assert set(taus) == {"seed 0 vs seed 1 (ceiling)", "supernet tunas, BN batch",
                       "supernet tunas, BN recalibrate"}
  assert all(-1.0 <= row["tau"] <= 1.0 and row["architectures"] == 5 for row in taus.values())
  bench.main(argv)  # a rerun keeps the scores of the same checkpoint
  assert "(0 scored now)" in capsys.readouterr().out
  assert json.loads(out.read_text())["scores"] == scores["scores"]
  plan = dict(table, architectures=[{"encoding": r["encoding"]} for r in table["architectures"]])
  (tmp_path / "plan.json").write_text(json.dumps(plan))
  bench.main([*argv[:1], f"--table={tmp_path / 'plan.json'}", *argv[2:]])
  assert "no Kendall tau" in capsys.readouterr().out
  other = dict(table, flags=["--image_size=32"])
  (tmp_path / "other.json").write_text(json.dumps(other))
  with pytest.raises(SystemExit, match="--image_size=16, the table with --image_size=32"):
    bench.main([*argv[:1], f"--table={tmp_path / 'other.json'}", *argv[2:]])


def test_enas_taken_is_the_enas_recipe_with_taken_updates():
  enas, taken = (read_flagfile(bench.flagfile(r)) for r in ("enas", "enas_taken"))
  assert taken.pop("shared_update") == "taken" and "shared_update" not in enas
  assert taken == enas
