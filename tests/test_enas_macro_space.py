"""Tests for the ENAS macro search space (pure Python, no framework)."""
from __future__ import annotations

import collections
import itertools
import json
import pathlib

import numpy as np
import pytest

from enas_face.spaces import enas_macro
from enas_face.spaces.enas_macro import (OPS, Architecture, ArchitectureError, Decision, count_architectures,
                                    decisions, default_architecture, op_position, reduction_layers,
                                    sample_uniform, skip_position)

# ops (sep3x3, maxpool3x3, sep5x5); layer 1 <- 0; layer 2 <- 0, 1.
EXAMPLE = Architecture((0, 3, 1), ((), (1,), (1, 1)))
EXAMPLE_INTS = [0, 3, 1, 1, 1, 1]


def _sampled_architectures(count=200, seed=0):
  rng = np.random.default_rng(seed)
  return [sample_uniform(int(rng.integers(1, 9)), rng) for _ in range(count)]


# ------------------------------------------------------------- construction
def test_ops_constant():
  assert OPS == ("sep3x3", "sep5x5", "avgpool3x3", "maxpool3x3")


def test_lists_are_converted_to_tuples_and_hashable():
  from_lists = Architecture([0, 3, 1], [[], [1], [1, 1]])
  assert from_lists == EXAMPLE
  assert isinstance(from_lists.ops, tuple) and all(isinstance(b, tuple) for b in from_lists.skips)
  assert hash(from_lists) == hash(EXAMPLE)
  cache = {from_lists: "cached"}
  assert cache[EXAMPLE] == "cached"
  assert len({from_lists, EXAMPLE, default_architecture(3)}) == 2


def test_numpy_integers_are_accepted():
  arc = Architecture(np.array([0, 3, 1]), [np.array([], int), np.array([1]), np.array([1, 1])])
  assert arc == EXAMPLE and all(type(op) is int for op in arc.ops)


def test_frozen():
  with pytest.raises(Exception):
    EXAMPLE.ops = (1, 1, 1)


@pytest.mark.parametrize("ops, skips, message", [
    ((), (), "at least 1 layer"),
    ((4,), ((),), "op id of layer 0 is 4"),
    ((0, -1), ((), (0,)), "op id of layer 1 is -1"),
    ((0, 1), ((),), "got 1 entries for 2 ops"),
    ((0, 1), ((), (0, 1)), "layer 1 must have exactly 1 skip bits"),
    ((0, 1, 2), ((), (1,), (2, 0)), "skip bit from layer 0 into layer 2 is 2; expected 0 or 1"),
    ((0.5,), ((),), "op id of layer 0 must be an integer"),
    ("01", ((), ()), "ops must be a sequence"),
])
def test_invalid_architectures_are_rejected(ops, skips, message):
  with pytest.raises(ArchitectureError, match=message):
    Architecture(ops, skips)


def test_architecture_error_is_value_error():
  assert issubclass(ArchitectureError, ValueError)


# ---------------------------------------------------------------- queries
def test_queries_on_example():
  assert EXAMPLE.num_layers == 3
  assert EXAMPLE.op_names == ("sep3x3", "maxpool3x3", "sep5x5")
  assert EXAMPLE.skip_inputs(0) == ()
  assert EXAMPLE.skip_inputs(1) == (0,)
  assert EXAMPLE.skip_inputs(2) == (0, 1)
  assert EXAMPLE.num_skips == 3
  assert EXAMPLE.skip_density == 1.0
  with pytest.raises(ArchitectureError, match="layer must be in 0..2, got 3"):
    EXAMPLE.skip_inputs(3)


def test_skip_density():
  assert Architecture((2,), ((),)).skip_density == 0.0  # L = 1: no possible skips
  arc = Architecture((0, 0, 0, 0), ((), (0,), (1, 0), (0, 0, 1)))
  assert arc.num_skips == 2
  assert arc.skip_density == pytest.approx(2 / 6)


def test_str():
  assert str(EXAMPLE) == "L0 sep3x3 | L1 maxpool3x3 <- 0 | L2 sep5x5 <- 0,1"
  assert str(Architecture((2, 1), ((), (0,)))) == "L0 avgpool3x3 | L1 sep5x5"


# -------------------------------------------------------------- encodings
def test_to_ints_order_is_op_then_skip_bits():
  assert EXAMPLE.to_ints() == EXAMPLE_INTS
  arc = Architecture((1, 2, 3), ((), (0,), (1, 0)))
  assert arc.to_ints() == [1, 2, 0, 3, 1, 0]
  assert Architecture.from_ints([1, 2, 0, 3, 1, 0]) == arc


def test_to_string():
  assert EXAMPLE.to_string() == "0 3 1 1 1 1"


@pytest.mark.parametrize("text", [
    "0 3 1 1 1 1", "0,3,1,1,1,1", "0, 3, 1, 1, 1, 1", "[0, 3, 1, 1, 1, 1]", "(0 3 1 1 1 1)",
    "  [0 3 1\n1 1 1]  ", "0 ,3 , 1,1 1 1",
])
def test_from_string_accepts_separators_and_brackets(text):
  assert Architecture.from_string(text) == EXAMPLE


@pytest.mark.parametrize("text, message", [
    ("0 1", r"encoding has 2 integers; expected L\(L\+1\)/2 .* 1 \(L=1\) or 3 \(L=2\)"),
    ("0 1 0 1", "encoding has 4 integers"),
    ("4", "op id of layer 0 is 4; expected 0..3"),
    ("0 4 0", "op id of layer 1 is 4"),
    ("0 0 2", "skip bit from layer 0 into layer 1 is 2; expected 0 or 1"),
    ("0 x 1", "token 1 of architecture string is 'x'"),
    ("0 1 1.5", "token 2 of architecture string is '1.5'"),
    ("", "architecture string is empty"),
    ("   ", "architecture string is empty"),
    ("[]", "architecture string is empty"),
    (" , ", "architecture string is empty"),
    ("[0 1 1", "does not end with ']'"),
])
def test_from_string_rejects_bad_strings(text, message):
  with pytest.raises(ArchitectureError, match=message):
    Architecture.from_string(text)


def test_num_layers_must_agree_with_length():
  assert Architecture.from_string("0 3 1 1 1 1", num_layers=3) == EXAMPLE
  with pytest.raises(ArchitectureError, match="i.e. 3 layers; expected num_layers=5 \\(15 integers\\)"):
    Architecture.from_string("0 3 1 1 1 1", num_layers=5)
  with pytest.raises(ArchitectureError, match="num_layers=2"):
    Architecture.from_ints(EXAMPLE_INTS, num_layers=2)


def test_from_ints_rejects_non_sequences():
  with pytest.raises(ArchitectureError, match="from_string"):
    Architecture.from_ints("0 1 1")
  with pytest.raises(ArchitectureError, match="sequence of integers"):
    Architecture.from_ints(3)
  with pytest.raises(ArchitectureError, match="encoding has 0 integers"):
    Architecture.from_ints([])


def test_from_ints_accepts_numpy_arrays():
  assert Architecture.from_ints(np.array(EXAMPLE_INTS)) == EXAMPLE


def test_round_trips_for_sampled_architectures(tmp_path):
  for index, arc in enumerate(_sampled_architectures()):
    ints = arc.to_ints()
    assert len(ints) == arc.num_layers * (arc.num_layers + 1) // 2
    assert Architecture.from_ints(ints) == arc
    assert Architecture.from_ints(ints, num_layers=arc.num_layers) == arc
    assert Architecture.from_string(arc.to_string()) == arc
    assert Architecture.from_json(arc.to_json()) == arc
    assert Architecture.from_json(json.loads(json.dumps(arc.to_json()))) == arc
    assert Architecture.from_json({"encoding": arc.to_string()}) == arc
    if index % 20 == 0:
      path = tmp_path / f"arc{index}.json"
      arc.save_json(path)
      assert Architecture.load_json(path) == arc
      assert Architecture.load_json(str(path)) == arc


# -------------------------------------------------------------------- JSON
def test_to_json_content():
  assert EXAMPLE.to_json() == {"ops": ["sep3x3", "maxpool3x3", "sep5x5"],
                               "skips": [[], [1], [1, 1]],
                               "encoding": "0 3 1 1 1 1"}


def test_from_json_variants():
  assert Architecture.from_json({"ops": [0, 3, 1], "skips": [[], [1], [1, 1]]}) == EXAMPLE
  assert Architecture.from_json({"ops": ["sep3x3", 3, "sep5x5"], "skips": [[], [1], [1, 1]]}) == EXAMPLE
  assert Architecture.from_json({"encoding": "0 3 1 1 1 1"}) == EXAMPLE
  assert Architecture.from_json({"encoding": EXAMPLE_INTS}) == EXAMPLE


@pytest.mark.parametrize("obj, message", [
    ([0, 3, 1], "expected a JSON object"),
    ({}, "needs 'ops' and 'skips' or 'encoding'"),
    ({"ops": [0]}, "needs both 'ops' and 'skips'"),
    ({"ops": ["conv7x7"], "skips": [[]]}, "op of layer 0 is 'conv7x7'; expected one of sep3x3"),
    ({"ops": [0, 3, 1], "skips": [[], [1], [1, 1]], "encoding": "0 3 1 1 1 0"}, "disagrees"),
    ({"encoding": 7}, "'encoding' must be a string or a list"),
    ({"encoding": "0 9"}, "encoding has 2 integers"),
])
def test_from_json_rejects_bad_content(obj, message):
  with pytest.raises(ArchitectureError, match=message):
    Architecture.from_json(obj)


def test_save_json_writes_readable_json(tmp_path):
  path = tmp_path / "arc.json"
  EXAMPLE.save_json(path)
  assert json.loads(path.read_text()) == EXAMPLE.to_json()


def test_load_json_errors_name_the_file(tmp_path):
  missing = tmp_path / "missing.json"
  with pytest.raises(FileNotFoundError, match="missing.json"):
    Architecture.load_json(missing)
  not_json = tmp_path / "not_json.json"
  not_json.write_text("0 3 1 {")
  with pytest.raises(ArchitectureError, match="not_json.json.*not valid JSON"):
    Architecture.load_json(not_json)
  wrong = tmp_path / "wrong.json"
  wrong.write_text(json.dumps({"ops": [9], "skips": [[]]}))
  with pytest.raises(ArchitectureError, match="wrong.json.*not a valid architecture.*op id of layer 0 is 9"):
    Architecture.load_json(wrong)


# ---------------------------------------------------------- space counting
def test_count_architectures_by_hand():
  assert count_architectures(1) == 4
  assert count_architectures(2) == 4 * 4 * 2
  assert count_architectures(3) == 4 ** 3 * 2 ** 3 == 512
  assert count_architectures(5) == 4 ** 5 * 2 ** 10
  assert count_architectures(3, num_ops=2) == 2 ** 3 * 2 ** 3
  with pytest.raises(ValueError, match="num_layers must be >= 1, got 0"):
    count_architectures(0)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_count_matches_brute_force_enumeration(num_layers):
  # Every integer list of the right length with entries 0..4 (4 is an invalid op id, 2..4 invalid bits).
  length = num_layers * (num_layers + 1) // 2
  valid = set()
  for ints in itertools.product(range(5), repeat=length):
    try:
      arc = Architecture.from_ints(ints)
    except ArchitectureError:
      continue
    assert arc.to_ints() == list(ints)
    valid.add(arc)
  assert len(valid) == count_architectures(num_layers)


def test_sample_uniform_covers_all_l2_architectures_uniformly():
  rng = np.random.default_rng(1234)
  draws = 6400
  counts = collections.Counter(sample_uniform(2, rng) for _ in range(draws))
  assert len(counts) == 32
  expected = draws / 32
  chi_square = sum((observed - expected) ** 2 / expected for observed in counts.values())
  # 31 degrees of freedom: mean 31, sd ~7.9; 70 is beyond the 99.99th percentile.
  assert chi_square < 70
  assert min(counts.values()) > 0.6 * expected and max(counts.values()) < 1.4 * expected


def test_sample_uniform_is_reproducible():
  first = [sample_uniform(5, np.random.default_rng(7)) for _ in range(3)]
  second = [sample_uniform(5, np.random.default_rng(7)) for _ in range(3)]
  assert first == second and first[0].num_layers == 5


def test_default_architecture():
  arc = default_architecture()
  assert arc.num_layers == 5
  assert arc.op_names == ("sep3x3", "sep5x5", "sep3x3", "sep5x5", "sep3x3")
  assert [arc.skip_inputs(i) for i in range(5)] == [(), (), (0,), (1,), (2,)]
  assert arc.to_ints() == [0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0]
  assert default_architecture(1) == Architecture((0,), ((),))
  assert default_architecture(12).num_skips == 10


# -------------------------------------------------------------- reductions
@pytest.mark.parametrize("num_layers, num_reductions, expected", [
    (5, 3, (0, 1, 2)),
    (12, 3, (2, 5, 8)),
    (6, 2, (1, 3)),
    (4, 3, (0, 1, 2)),
    (5, 0, ()),
    (2, 1, (0,)),
    (24, 3, (5, 11, 17)),
])
def test_reduction_layers(num_layers, num_reductions, expected):
  assert reduction_layers(num_layers, num_reductions) == expected


def test_reduction_layers_default_is_three():
  assert reduction_layers(5) == (0, 1, 2)


@pytest.mark.parametrize("num_layers, num_reductions", [(3, 4), (3, 3), (5, -1), (0, 0)])
def test_reduction_layers_rejects_bad_counts(num_layers, num_reductions):
  with pytest.raises(ValueError, match="num_reductions|num_layers"):
    reduction_layers(num_layers, num_reductions)


def test_reduction_layers_are_distinct_and_before_last_layer():
  for num_layers in range(1, 30):
    for num_reductions in range(num_layers):
      layers = reduction_layers(num_layers, num_reductions)
      assert len(set(layers)) == num_reductions
      assert all(0 <= layer <= num_layers - 2 for layer in layers)
      assert list(layers) == sorted(layers)


# ---------------------------------------------------------------- decisions
def test_decisions_order_for_three_layers():
  result = decisions(3)
  assert [(d.kind, d.group, d.layer, d.source, d.num_choices) for d in result] == [
      ("categorical", "op", 0, None, 4),
      ("categorical", "op", 1, None, 4), ("skip", "skip", 1, 0, 2),
      ("categorical", "op", 2, None, 4), ("skip", "skip", 2, 0, 2), ("skip", "skip", 2, 1, 2),
  ]
  assert [op_position(i) for i in range(3)] == [0, 1, 3]
  assert [skip_position(2, j) for j in range(2)] == [4, 5]
  assert len({d.name for d in result}) == len(result)
  assert all(isinstance(d, Decision) for d in result)


@pytest.mark.parametrize("num_layers", [1, 2, 5, 12])
def test_decisions_align_with_encoding(num_layers):
  result = decisions(num_layers)
  arc = sample_uniform(num_layers, np.random.default_rng(num_layers))
  assert len(result) == len(arc.to_ints()) == num_layers * (num_layers + 1) // 2
  for decision, value in zip(result, arc.to_ints()):
    assert 0 <= value < decision.num_choices
    if decision.kind == "skip":
      assert value == arc.skips[decision.layer][decision.source]
    else:
      assert value == arc.ops[decision.layer]


def test_decision_validation():
  with pytest.raises(ValueError, match="kind"):
    Decision("x", 4, "conv")
  with pytest.raises(ValueError, match="source"):
    Decision("x", 2, "skip", layer=1, source=1)
  with pytest.raises(ValueError, match="num_choices=2"):
    Decision("x", 3, "skip", layer=1, source=0)
  with pytest.raises(ValueError, match="takes no source"):
    Decision("x", 3, layer=1, source=0)


def test_module_has_no_framework_imports():
  source = pathlib.Path(enas_macro.__file__).read_text()
  for name in ("tensorflow", "keras", "absl"):
    assert f"import {name}" not in source and f"from {name}" not in source


# ---------------------------------------------------------------- module conditions
@pytest.mark.parametrize("num_layers,num_reductions", [(1, 0), (3, 1), (5, 2), (6, 3), (8, 3)])
def test_module_conditions_say_which_modules_an_architecture_runs(num_layers, num_reductions):
  """A module with a condition runs (is in `modules`) iff the encoding meets it; every
  module without one runs in every architecture."""
  from enas_face.config import ModelConfig
  config = ModelConfig(image_size=32, base_filters=4, embedding_dim=8, num_layers=num_layers,
                       num_reductions=num_reductions)
  conditions = enas_macro.module_conditions(num_layers, num_reductions)
  every = {m.key for m in enas_macro.every_module(config)}
  assert set(conditions) <= every
  rng = np.random.default_rng(num_layers)
  arcs = [sample_uniform(num_layers, rng) for _ in range(200)]
  arcs += [Architecture((0,) * num_layers, tuple((0,) * i for i in range(num_layers)))]
  for arc in arcs:
    encoding = arc.to_ints()
    ran = {m.key for m in enas_macro.modules(config, arc)}
    for key in every:
      expected = key not in conditions or any(encoding[p] == v for p, v in conditions[key])
      assert (key in ran) == expected, (arc.to_string(), key)
