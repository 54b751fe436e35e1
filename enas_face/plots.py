"""Figures of a search (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARKERS = ("o", "^", "s", "D", "v")


def plot_accuracy_vs_latency(points: list[dict], path: str, target_ms: float | None = None,
                             highlight: list[str] | None = None, title: str = "") -> str:
  """Scatter of sampled architectures: x = batch-1 latency (ms), y = validation accuracy.

  points: dicts with "arc", "latency_ms", "val_accuracy", optional "epoch" (colour,
  with a colour bar) and "sampler" (marker, with a legend when several). A dashed
  line marks the target latency; `highlight` arcs are circled and numbered 1..k.
  """
  fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
  if not points:
    ax.text(0.5, 0.5, "no architectures sampled", ha="center", va="center",
            transform=ax.transAxes)
  else:
    samplers = sorted({p.get("sampler", "") for p in points})
    with_epochs = all("epoch" in p for p in points)
    scatter = None
    for marker, sampler in zip(MARKERS * len(samplers), samplers):
      group = [p for p in points if p.get("sampler", "") == sampler]
      scatter = ax.scatter([p["latency_ms"] for p in group], [p["val_accuracy"] for p in group],
                           c=[p["epoch"] for p in group] if with_epochs else None,
                           cmap="viridis" if with_epochs else None, marker=marker, s=22,
                           alpha=0.75, label=sampler or None)
    if with_epochs and scatter is not None:
      fig.colorbar(scatter, ax=ax, label="epoch")
    if len(samplers) > 1:
      ax.legend(title="sampler")
    by_arc = {p["arc"]: p for p in points}
    for rank, arc in enumerate(highlight or [], 1):
      if arc in by_arc:
        p = by_arc[arc]
        ax.scatter([p["latency_ms"]], [p["val_accuracy"]], s=160, facecolors="none",
                   edgecolors="red", linewidths=1.5)
        ax.annotate(str(rank), (p["latency_ms"], p["val_accuracy"]), xytext=(6, 6),
                    textcoords="offset points", color="red", fontsize=9)
  if target_ms is not None:
    ax.axvline(target_ms, color="grey", linestyle="--", linewidth=1,
               label=f"target {target_ms:g} ms")
  ax.set_xlabel("latency, batch 1 (ms)")
  ax.set_ylabel("validation accuracy (shared weights)")
  ax.set_title(title or "sampled architectures")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return path
