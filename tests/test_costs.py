"""Cost models: analytic FLOPs and parameters against TensorFlow's own counts, the latency
table's structure, TFLite latency under LiteRT, the cost flags, and a FLOPs-budget search."""
import json
import os

import numpy as np
import pytest
from absl import flags

from flops_oracle import profiler_flops
from enas_face import costs
from enas_face.costs import factory as cost_factory
from enas_face import flags as enas_flags
from enas_face.config import ConfigError, ModelConfig
from enas_face.costs import latency_table
from enas_face.spaces import enas_macro
from enas_face.models import builders
from enas_face import spaces

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

# Model configs that exercise every module formula: the three embedding heads, stem
# strides 1 and 2, and 1 to 3 reductions.
CONFIGS = [
    ModelConfig(image_size=16, base_filters=4, embedding_dim=8, num_layers=3, num_reductions=1),
    ModelConfig(image_size=32, base_filters=8, embedding_dim=16, num_layers=5, num_reductions=2,
                stem_stride=2, embedding_head="gap"),
    ModelConfig(image_size=16, base_filters=4, embedding_dim=8, num_layers=4, num_reductions=2,
                embedding_head="flatten"),
    ModelConfig(image_size=32, base_filters=6, embedding_dim=12, num_layers=6, num_reductions=3),
]


def architectures():
  """12 architectures over the configs: the default, one with every skip, random draws."""
  rng = np.random.default_rng(7)
  out = []
  for config in CONFIGS:
    n = config.num_layers
    out.append((config, enas_macro.Architecture(tuple(i % 4 for i in range(n)),
                                                tuple(tuple(1 for _ in range(i)) for i in range(n)))))
    out.extend((config, enas_macro.sample_uniform(n, rng)) for _ in range(2))
  return out


@pytest.fixture(scope="module")
def built():
  """(config, arc, model) with the model built through the space."""
  return [(c, a, builders.build_fixed(c, a, name="oracle")) for c, a in architectures()]


def test_analytic_flops_equal_the_profilers_count(built):
  assert len(built) >= 10
  for config, arc, model in built:
    assert enas_macro.flops(config, arc) == profiler_flops(model, config.image_size), (
        config, arc.to_string())


def test_analytic_params_equal_keras_count(built):
  for config, arc, model in built:
    assert spaces.of(config).params(config, arc) == costs.keras_params(model)["trainable"], (
        config, arc.to_string())


def test_flops_and_params_cost_models_count_without_building():
  config = CONFIGS[1]
  arc = enas_macro.default_architecture(config.num_layers)
  flops_model = cost_factory.make_cost_model("flops", config)
  params_model = cost_factory.make_cost_model("params", config)
  assert flops_model(arc) == enas_macro.flops(config, arc) > 0
  assert params_model(arc) == enas_macro.params(config, arc) > 0
  assert flops_model.unit == "FLOPs" and params_model.unit == "params"
  assert flops_model.evaluations == params_model.evaluations == 0
  # More work, more FLOPs: adding a skip adds its 1x1 conv, BN and add.
  more = enas_macro.Architecture(arc.ops, tuple(tuple(1 for _ in s) for s in arc.skips))
  assert flops_model(more) > flops_model(arc)


# ------------------------------------------------------------------------- latency table
def test_modules_of_an_architecture_are_rows_of_the_table():
  for config, arc in architectures():
    rows = set(spaces.of(config).every_cost_module(config))
    keys = spaces.of(config).cost_modules(config, arc)
    assert len(keys) == len(set(keys)) and set(keys) <= rows
    assert "input" in keys and "head" in keys
    assert sum(k.startswith("layer") and "_skip" not in k for k in keys) == config.num_layers
    assert sum("_skip" in k for k in keys) == arc.num_skips


def test_table_prediction_is_the_overhead_plus_the_modules_entries():
  config = CONFIGS[0]
  keys = spaces.of(config).every_cost_module(config)
  rng = np.random.default_rng(0)
  table = {"overhead_ms": 0.25, "modules": {k: {"ms": float(rng.uniform(0, 1))} for k in keys}}
  for _, arc in [a for a in architectures() if a[0] is config]:
    used = spaces.of(config).cost_modules(config, arc)
    expected = 0.25 + sum(table["modules"][k]["ms"] for k in used)
    assert latency_table.predict(table, used) == pytest.approx(expected)
  with pytest.raises(KeyError, match="layer9_sep3x3"):
    latency_table.predict(table, ["layer9_sep3x3"])


@pytest.mark.parametrize("runtime", ["tf_function", "tflite"])
def test_built_table_times_every_module_and_prices_samples(tmp_path, runtime, frozen_gc):
  config = ModelConfig(image_size=16, base_filters=4, embedding_dim=8, num_layers=2,
                       num_reductions=1)
  table = latency_table.build_table(config, runtime=runtime, warmup=1, repeats=3)
  assert set(table["modules"]) == set(spaces.of(config).every_cost_module(config))
  assert table["overhead_ms"] > 0 and table["runtime"] == runtime
  assert all(row["ms"] >= 0 and row["raw_ms"] > 0 for row in table["modules"].values())
  path = tmp_path / "table.json"
  path.write_text(json.dumps(table))
  model = cost_factory.make_cost_model("lut", config, table_path=str(path))
  arc = enas_macro.default_architecture(2)
  assert model(arc) == pytest.approx(latency_table.predict(
      table, spaces.of(config).cost_modules(config, arc)))
  assert model.evaluations == 0 and "lut" in model.describe()


def test_table_errors_name_the_flag_and_the_problem(tmp_path):
  config = CONFIGS[0]
  with pytest.raises(ValueError, match="--cost_table"):
    latency_table.load_table("", config)
  with pytest.raises(ValueError, match=r"--cost_table=.*missing\.json: no such file"):
    latency_table.load_table(str(tmp_path / "missing.json"), config)
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  with pytest.raises(ValueError, match="not valid JSON"):
    latency_table.load_table(str(bad), config)
  other = tmp_path / "other.json"
  other.write_text(json.dumps({"format": latency_table.FORMAT, "space": "enas_macro",
                               "model": {**config.__dict__, "base_filters": 99},
                               "overhead_ms": 0.1, "modules": {}}))
  with pytest.raises(ValueError, match="another model config.*base_filters"):
    latency_table.load_table(str(other), config)


# ---------------------------------------------------------------------------- TFLite
def test_tflite_latency_is_measured_once_and_cached(tmp_path):
  config = CONFIGS[0]
  arc = enas_macro.default_architecture(config.num_layers)
  cache = str(tmp_path / "tflite.jsonl")
  model = cost_factory.make_cost_model("tflite", config, cache_path=cache, warmup=1, repeats=3)
  first = model(arc)
  assert first > 0 and model.evaluations == 1
  assert model(arc) == first and model.evaluations == 1
  value, details = model.evaluate(arc)
  assert value == first and 0 <= details["latency_cv"] and model.evaluations == 1
  again = cost_factory.make_cost_model("tflite", config, cache_path=cache, warmup=1, repeats=3)
  assert again(arc) == first and again.evaluations == 0


# ----------------------------------------------------------------------------- flags
def parse(*args):
  values = flags.FLAGS
  values.unparse_flags()
  values(["prog", *args])
  return enas_flags.config_from_flags(values)


def test_cost_flags_become_the_search_config():
  config = parse("--mode=search", "--cost_model=flops", "--cost_target=2e6", "--reward=budget")
  assert (config.search.cost_model, config.search.cost_target, config.search.reward) == (
      "flops", 2e6, "budget")
  assert parse("--mode=search").search.cost_target == enas_flags.DEFAULT_TARGET_MS
  assert parse("--mode=search", "--target_latency_ms=3.5").search.cost_target == 3.5  # old name


def test_cost_flag_errors_name_the_flag(tmp_path):
  with pytest.raises(ConfigError, match="--cost_target"):
    parse("--mode=search", "--cost_model=flops", "--reward=paper")
  with pytest.raises(ConfigError, match="--cost_table"):
    parse("--mode=search", "--cost_model=lut")
  with pytest.raises(ConfigError, match="--cost_table=.*no such file"):
    parse("--mode=search", "--cost_model=lut", f"--cost_table={tmp_path / 'none.json'}")


def test_old_config_json_with_latency_names_still_loads():
  config = parse("--mode=search")
  obj = spaces.config_to_json(config)
  obj["search"]["target_latency_ms"] = obj["search"].pop("cost_target")
  obj["search"]["latency_exponent"] = obj["search"].pop("cost_exponent")
  loaded = spaces.config_from_json(obj)
  assert loaded.search.cost_target == config.search.cost_target
  assert loaded.search.cost_exponent == config.search.cost_exponent


# ------------------------------------------------------------- a FLOPs-budget search
TINY = ["--dataset=synthetic", "--image_size=16", "--synthetic_identities=12",
        "--synthetic_images_per_identity=8", "--synthetic_heldout_identities=6",
        "--synthetic_heldout_images_per_identity=4", "--num_pairs=40", "--num_folds=2",
        "--num_layers=3", "--num_reductions=1", "--base_filters=8", "--embedding_dim=16",
        "--batch_size=16", "--epochs=2", "--warmup_epochs=0", "--search_epochs=2",
        "--controller_steps=2", "--controller_samples=3", "--num_final_samples=6"]


@pytest.mark.slow
def test_budget_search_never_ranks_an_over_budget_architecture(main_in_process, tmp_path):
  model = ModelConfig(image_size=16, num_layers=3, num_reductions=1, base_filters=8,
                      embedding_dim=16)
  rng = np.random.default_rng(0)
  flops = sorted(enas_macro.flops(model, enas_macro.sample_uniform(3, rng))
                 for _ in range(200))
  target = float(flops[len(flops) // 2])  # about half the space is over the budget
  run_dir = str(tmp_path / "search")
  result = main_in_process(*TINY, "--mode=search", f"--run_dir={run_dir}", "--cost_model=flops",
                           "--reward=budget", f"--cost_target={target}")
  assert result.returncode == 0, result.stderr[-4000:]
  space = spaces.of(model)
  with open(os.path.join(run_dir, "sampled_arcs.jsonl")) as handle:
    records = [json.loads(line) for line in handle if line.strip()]
  assert len(records) == 2 * 2 * 3
  for record in records:
    arc = space.from_json(record["sample"], model)
    assert record["cost"] == enas_macro.flops(model, arc) and record["cost_unit"] == "FLOPs"
    assert record["within_budget"] == (record["cost"] <= target)
    expected = record["score"] * (1.0 if record["within_budget"] else target / record["cost"])
    assert record["reward"] == pytest.approx(expected)
  with open(os.path.join(run_dir, "arcs_ranked.json")) as handle:
    ranked = json.load(handle)
  assert ranked["cost_model"] == "flops" and ranked["cost_target"] == target
  assert all(e["cost"] <= target and e["within_budget"] for e in ranked["architectures"])
  assert [e["rank"] for e in ranked["architectures"]] == list(
      range(1, len(ranked["architectures"]) + 1))
  with open(os.path.join(run_dir, "search_summary.json")) as handle:
    summary = json.load(handle)
  assert summary["cost_evaluations"] == 0  # nothing was built to be priced
  assert summary["final_over_budget"] == ranked["over_budget"]
  assert os.path.getsize(os.path.join(run_dir, "accuracy_vs_cost.png")) > 0


def test_the_timed_tflite_model_computes_what_keras_computes():
  """What TFLiteLatency times is the model itself (weights frozen in, no NaN)."""
  from enas_face.costs import tflite
  config = CONFIGS[0]
  model = builders.build_fixed(config, enas_macro.default_architecture(config.num_layers))
  images = np.random.default_rng(0).uniform(0, 255, (1, 16, 16, 3)).astype(np.float32)
  runner = tflite.interpreter(tflite.keras_to_tflite(model, [(1, 16, 16, 3)]))
  (inp,), (out,) = runner.get_input_details(), runner.get_output_details()
  runner.set_tensor(inp["index"], images)
  runner.invoke()
  np.testing.assert_allclose(runner.get_tensor(out["index"]),
                             model(images, training=False).numpy(), atol=1e-4, rtol=1e-4)
