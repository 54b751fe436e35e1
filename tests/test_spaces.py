"""The search-space registry, the ENAS macro space as a SearchSpace, and sample files."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from enas_face import spaces
from enas_face.config import ModelConfig
from enas_face.spaces import enas_macro
from enas_face.spaces.base import SampleError

MODEL = ModelConfig(image_size=16, num_layers=3, num_reductions=1, base_filters=8,
                    embedding_dim=8)


def test_registry_names_and_unknown_space():
  assert "enas_macro" in spaces.names()
  assert isinstance(spaces.get("enas_macro"), enas_macro.EnasMacroSpace)
  with pytest.raises(ValueError, match="unknown search space 'nope'; registered: .*enas_macro"):
    spaces.get("nope")


def test_enas_macro_space_round_trips_every_form():
  space = spaces.get("enas_macro")
  rng = np.random.default_rng(0)
  for _ in range(20):
    arc = space.sample_uniform(MODEL, rng)
    choices = space.encode(arc)
    assert len(choices) == len(space.decisions(MODEL)) == 6
    space.check_choices(choices, MODEL)
    assert space.decode(choices, MODEL) == arc
    assert space.from_json(json.loads(json.dumps(space.to_json(arc))), MODEL) == arc
    assert space.from_string(space.to_string(arc), MODEL) == arc
  assert space.default(MODEL) == enas_macro.default_architecture(3)
  assert space.supports_weight_sharing


def test_enas_macro_space_names_the_layer_count_mismatch():
  space = spaces.get("enas_macro")
  with pytest.raises(SampleError, match="has 1 layers but --num_layers=3"):
    space.from_string("0", MODEL)
  with pytest.raises(SampleError, match="expected 0..3"):
    space.check_choices([4, 0, 0, 0, 0, 0], MODEL)


def _write(path: pathlib.Path, obj) -> str:
  path.write_text(json.dumps(obj))
  return str(path)


def test_load_samples_reads_rankings_old_and_new_lists_and_single(tmp_path):
  space = spaces.get("enas_macro")
  arcs = [space.sample_uniform(MODEL, np.random.default_rng(s)) for s in range(3)]
  ranked = {"space": "enas_macro", "architectures": [spaces.sample_record(space, a) for a in arcs]}
  assert spaces.load_samples(_write(tmp_path / "r.json", ranked), space, MODEL) == arcs
  old = {"architectures": [{"arc": a.to_json()} for a in arcs]}  # before spaces had names
  assert spaces.load_samples(_write(tmp_path / "o.json", old), space, MODEL) == arcs
  assert spaces.load_samples(_write(tmp_path / "l.json", [a.to_json() for a in arcs]), space,
                             MODEL) == arcs
  assert spaces.load_samples(_write(tmp_path / "s.json", arcs[0].to_json()), space, MODEL) == arcs[:1]


def test_load_samples_errors_name_the_file_and_the_entry(tmp_path):
  space = spaces.get("enas_macro")
  other = {"architectures": [{"space": "loss_only", "sample": {"head": "arcface"}}]}
  with pytest.raises(SampleError, match=r"o\.json' entry 0 is a sample of the 'loss_only' space"):
    spaces.load_samples(_write(tmp_path / "o.json", other), space, MODEL)
  with pytest.raises(SampleError, match=r"b\.json' entry 1 is not a valid enas_macro sample"):
    spaces.load_samples(_write(tmp_path / "b.json", [{"encoding": "0 0 0 0 0 0"}, {"encoding": "0"}]),
                        space, MODEL)
  (tmp_path / "x.json").write_text("{")
  with pytest.raises(SampleError, match=r"x\.json' is not valid JSON"):
    spaces.load_samples(str(tmp_path / "x.json"), space, MODEL)
  with pytest.raises(FileNotFoundError, match="missing.json"):
    spaces.load_samples(str(tmp_path / "missing.json"), space, MODEL)


def test_base_module_has_no_framework_imports():
  source = pathlib.Path(spaces.base.__file__).read_text()
  for name in ("tensorflow", "keras", "absl"):
    assert f"import {name}" not in source and f"from {name}" not in source
