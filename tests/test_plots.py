import numpy as np

from enas_face import plots

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
