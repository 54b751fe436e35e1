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


def test_spaces_import_no_tensorflow():
  """Spaces are plain data: importing every registered space loads no deep-learning framework
  (a fresh interpreter, since this one has TensorFlow loaded already)."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  code = ("import sys, pkgutil, importlib, enas_face.spaces as s\n"
          "for m in pkgutil.walk_packages(s.__path__, 'enas_face.spaces.'):\n"
          "  importlib.import_module(m.name)\n"
          "print(sorted(s.names()))\n"
          "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
          "sys.exit(f'imported {bad}' if bad else 0)\n")
  root = pathlib.Path(__file__).resolve().parents[1]
  result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "enas_macro" in result.stdout and "mobilefacenet" in result.stdout


def test_every_space_has_the_builders_its_flags_promise():
  from enas_face.models import builders  # pylint: disable=import-outside-toplevel
  for name in spaces.names():
    space = spaces.get(name)
    found = builders._BUILDERS[space.architecture_space.name]  # pylint: disable=protected-access
    assert found.fixed is not None, name
    assert found.shared is not None or not space.supports_weight_sharing, name
    assert found.supernet is not None or not space.has_supernet, name
    if space.architecture_space is space:  # and no model it does not declare
      assert (found.shared is not None) == space.supports_weight_sharing, name
      assert (found.supernet is not None) == space.has_supernet, name
