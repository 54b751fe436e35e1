"""Tests for the search figures (PNG written with the Agg backend)."""
from __future__ import annotations

import numpy as np
import pytest

from enas_face.search import plots
from enas_face.spaces import enas_macro

PNG = b"\x89PNG\r\n\x1a\n"


def points(n=30, samplers=("controller",)):
  rng = np.random.default_rng(0)
  return [{"arc": f"arc{i}", "latency_ms": float(rng.uniform(2, 9)),
           "val_accuracy": float(rng.uniform(0, 1)), "epoch": 1 + i % 5,
           "sampler": samplers[i % len(samplers)]} for i in range(n)]


def is_png(path):
  with open(path, "rb") as f:
    data = f.read()
  return data[:8] == PNG and len(data) > 1000


def test_scatter_with_target_and_highlights(tmp_path):
  path = plots.plot_accuracy_vs_latency(points(), str(tmp_path / "a.png"), target_ms=5.0,
                                        highlight=["arc3", "arc7", "missing"], title="t")
  assert is_png(path)


def test_two_samplers_and_no_epochs(tmp_path):
  pts = [{k: v for k, v in p.items() if k != "epoch"}
         for p in points(samplers=("controller", "random"))]
  assert is_png(plots.plot_accuracy_vs_latency(pts, str(tmp_path / "b.png")))


def test_empty(tmp_path):
  assert is_png(plots.plot_accuracy_vs_latency([], str(tmp_path / "c.png"), target_ms=3.0))


def real_points():
  rng = np.random.default_rng(1)
  out = []
  for epoch in range(1, 4):
    for sampler in ("controller", "random"):
      for _ in range(6):
        arc = enas_macro.sample_uniform(5, rng)
        out.append({"arc": arc.to_string(), "latency_ms": float(rng.uniform(2, 9)),
                    "val_accuracy": float(rng.uniform(0.3, 0.9)), "epoch": epoch,
                    "sampler": sampler, "reward": 0.5})  # extra keys are ignored
  return out


def test_all_variants_with_real_encodings(tmp_path):
  pts = real_points()
  # Highlights match whatever spelling of the encoding is used.
  best = sorted(pts, key=lambda p: -p["val_accuracy"])[:3]
  highlight = ["[" + ", ".join(p["arc"].split()) + "]" for p in best]
  path = plots.plot_accuracy_vs_latency(pts, str(tmp_path / "new" / "dir" / "d.png"),
                                        target_ms=5.5, highlight=highlight, title="variants")
  assert path.endswith("d.png") and is_png(path)


def test_epochs_without_sampler_and_mixed_missing_epochs(tmp_path):
  pts = [{k: v for k, v in p.items() if k != "sampler"} for p in points()]
  assert is_png(plots.plot_accuracy_vs_latency(pts, str(tmp_path / "e.png"), target_ms=4.0))
  pts[0].pop("epoch")
  pts[1]["epoch"] = None
  assert is_png(plots.plot_accuracy_vs_latency(pts, str(tmp_path / "f.png")))


def test_single_point_and_single_epoch(tmp_path):
  pts = [{"arc": "0 1 1", "latency_ms": 3.0, "val_accuracy": 0.5, "epoch": 7}]
  assert is_png(plots.plot_accuracy_vs_latency(pts, str(tmp_path / "g.png"),
                                               highlight=["0 1 1"]))


def test_empty_with_highlight_and_title(tmp_path):
  assert is_png(plots.plot_accuracy_vs_latency([], str(tmp_path / "h.png"), target_ms=3.0,
                                               highlight=["0 1 1"], title="nothing yet"))


def test_bad_points_name_the_problem(tmp_path):
  with pytest.raises(ValueError, match=r"point 0 lacks \['val_accuracy'\]"):
    plots.plot_accuracy_vs_latency([{"arc": "0", "latency_ms": 1.0}], str(tmp_path / "x.png"))
  with pytest.raises(ValueError, match="non-finite"):
    plots.plot_accuracy_vs_latency([{"arc": "0", "latency_ms": float("nan"),
                                     "val_accuracy": 0.5}], str(tmp_path / "y.png"))


def test_figures_are_closed(tmp_path):
  from matplotlib import pyplot as plt
  before = len(plt.get_fignums())
  for i in range(3):
    plots.plot_accuracy_vs_latency(points(), str(tmp_path / f"{i}.png"))
  plots.plot_accuracy_vs_latency([], str(tmp_path / "empty.png"))
  assert len(plt.get_fignums()) == before


def test_cost_plot_takes_any_cost_key_and_crosses_out_over_budget_points(tmp_path):
  pts = [{"arc": f"a{i}", "flops": 1e6 * (i + 1), "val_accuracy": 0.5 + 0.01 * i,
          "over_budget": i >= 5} for i in range(8)]
  path = plots.plot_accuracy_vs_cost(pts, str(tmp_path / "cost.png"), target=5e6,
                                     cost_key="flops", cost_label="FLOPs", unit="FLOPs",
                                     highlight=["a4"])
  assert is_png(path)
  with pytest.raises(ValueError, match="flops"):
    plots.plot_accuracy_vs_cost([{"arc": "a", "val_accuracy": 0.5}], str(tmp_path / "x.png"),
                                cost_key="flops")
