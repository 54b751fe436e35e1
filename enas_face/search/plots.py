"""Figures of the search, drawn with matplotlib's Agg backend (no display needed)."""
from __future__ import annotations

import logging
import math
import os
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.lines import Line2D  # noqa: E402

from enas_face.spaces import enas_macro  # noqa: E402

logger = logging.getLogger(__name__)

SAMPLER_MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*")
NO_EPOCH_COLOR = "0.55"


def _arc_key(arc: str) -> str:
  """Canonical encoding of an architecture string ("[0, 1, 1]" == "0 1 1"); raw text if unparsable."""
  try:
    return enas_macro.Architecture.from_string(arc).to_string()
  except enas_macro.ArchitectureError:
    return arc.strip()


def _checked_points(points: list[dict], cost_key: str = "latency_ms") -> list[dict[str, Any]]:
  """Validates the keys and numbers of every point; returns normalised copies (the cost
  under "cost")."""
  checked = []
  for index, point in enumerate(points):
    if not isinstance(point, dict):
      raise ValueError(f"point {index} must be a dict, got {type(point).__name__}: {point!r}")
    missing = [key for key in ("arc", cost_key, "val_accuracy") if key not in point]
    if missing:
      raise ValueError(f"point {index} lacks {missing}; got keys {sorted(point)}")
    cost, accuracy = float(point[cost_key]), float(point["val_accuracy"])
    if not (math.isfinite(cost) and math.isfinite(accuracy)):
      raise ValueError(f"point {index} has a non-finite {cost_key} or accuracy: {point!r}")
    epoch = point.get("epoch")
    checked.append({"arc": _arc_key(str(point["arc"])), "cost": cost,
                    "val_accuracy": accuracy, "epoch": None if epoch is None else float(epoch),
                    "sampler": point.get("sampler"),
                    "over_budget": bool(point.get("over_budget", False))})
  return checked


def _save(figure, path: str) -> str:
  directory = os.path.dirname(os.fspath(path))
  if directory:
    os.makedirs(directory, exist_ok=True)
  figure.savefig(path, format="png", dpi=120)
  return path


def plot_accuracy_vs_latency(points: list[dict], path: str, target_ms: float | None = None,
                             highlight: list[str] | None = None, title: str = "") -> str:
  """plot_accuracy_vs_cost with the cost under "latency_ms" (ms, batch 1)."""
  return plot_accuracy_vs_cost(points, path, target=target_ms, highlight=highlight, title=title)


def plot_accuracy_vs_cost(points: list[dict], path: str, target: float | None = None,
                          highlight: list[str] | None = None, title: str = "",
                          cost_key: str = "latency_ms", cost_label: str = "latency (ms, batch 1)",
                          unit: str = "ms") -> str:
  """Scatter of sampled architectures: x = cost (`cost_key` of each point), y = accuracy.

  points: dicts with "arc", `cost_key`, "val_accuracy", optional "epoch"
  (colour by epoch, with a colorbar; points without one are grey), optional
  "sampler" (one marker per value, with a legend when there are several) and optional
  "over_budget" (crossed out). `target` draws a dashed vertical line; `highlight` arcs
  are circled and numbered 1..k in list order (an arc sampled several times is marked
  at its last point). Writes a PNG to `path` and returns it.
  """
  checked = _checked_points(points, cost_key)
  figure, axes = plt.subplots(figsize=(7.5, 5.0))
  try:
    axes.set_xlabel(cost_label)
    axes.set_ylabel("validation accuracy")
    if title:
      axes.set_title(title)
    if not checked:
      axes.text(0.5, 0.5, "no architectures sampled", transform=axes.transAxes,
                ha="center", va="center", fontsize=14, color="0.3")
      axes.set_xticks([])
      axes.set_yticks([])
      return _save(figure, path)

    epochs = [p["epoch"] for p in checked if p["epoch"] is not None]
    norm = matplotlib.colors.Normalize(min(epochs), max(epochs) if max(epochs) > min(epochs)
                                       else min(epochs) + 1) if epochs else None
    samplers = list(dict.fromkeys(p["sampler"] for p in checked))
    legend_handles = []
    color_mappable = None
    for index, sampler in enumerate(samplers):
      marker = SAMPLER_MARKERS[index % len(SAMPLER_MARKERS)]
      group = [p for p in checked if p["sampler"] == sampler]
      with_epoch = [p for p in group if p["epoch"] is not None]
      without_epoch = [p for p in group if p["epoch"] is None]
      if with_epoch:
        color_mappable = axes.scatter(
            [p["cost"] for p in with_epoch], [p["val_accuracy"] for p in with_epoch],
            c=[p["epoch"] for p in with_epoch], cmap="viridis", norm=norm, marker=marker,
            s=28, alpha=0.8, edgecolors="none")
      if without_epoch:
        axes.scatter([p["cost"] for p in without_epoch],
                     [p["val_accuracy"] for p in without_epoch],
                     color=NO_EPOCH_COLOR if epochs else "tab:blue", marker=marker, s=28,
                     alpha=0.8, edgecolors="none")
      label = str(sampler) if sampler is not None else "unlabelled"
      legend_handles.append(Line2D([], [], linestyle="none", marker=marker, color="0.35",
                                   label=f"{label} ({len(group)})"))
    if len(samplers) < 2:
      legend_handles = []

    if color_mappable is not None:
      colorbar = figure.colorbar(color_mappable, ax=axes, label="epoch")
      if all(float(epoch).is_integer() for epoch in epochs):
        colorbar.locator = matplotlib.ticker.MaxNLocator(integer=True)
        colorbar.update_ticks()

    over = [p for p in checked if p["over_budget"]]
    if over:
      axes.scatter([p["cost"] for p in over], [p["val_accuracy"] for p in over], marker="x",
                   color="black", s=40, linewidths=1.0, zorder=2)
      legend_handles.append(Line2D([], [], linestyle="none", marker="x", color="black",
                                   label=f"over budget ({len(over)})"))
    if target is not None:
      axes.axvline(target, color="tab:red", linestyle="--", linewidth=1.2)
      legend_handles.append(Line2D([], [], color="tab:red", linestyle="--",
                                   label=f"target {target:g} {unit}"))

    last_point = {p["arc"]: p for p in checked}
    missing = []
    for rank, arc in enumerate(highlight or [], start=1):
      point = last_point.get(_arc_key(arc))
      if point is None:
        missing.append(arc)
        continue
      axes.scatter([point["cost"]], [point["val_accuracy"]], s=220, facecolors="none",
                   edgecolors="tab:red", linewidths=1.6, zorder=3)
      axes.annotate(str(rank), (point["cost"], point["val_accuracy"]),
                    xytext=(8, 8), textcoords="offset points", color="tab:red",
                    fontsize=10, fontweight="bold", zorder=4)
    if missing:
      logger.warning("highlighted architectures not among the points: %s", missing)
    if highlight and len(missing) < len(highlight):
      legend_handles.append(Line2D([], [], linestyle="none", marker="o", markersize=11,
                                   markerfacecolor="none", markeredgecolor="tab:red",
                                   label="top architectures (rank)"))
    if legend_handles:
      axes.legend(handles=legend_handles, loc="best", fontsize=8)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)
  finally:
    plt.close(figure)


def plot_distributions(records: list[dict], path: str, target: float | None = None,
                       choice_labels: dict[str, list[str]] | None = None) -> str | None:
  """The width/depth search over epochs (differentiable.py's distributions.jsonl): one panel
  per decision, p_k of each choice (rows, labelled by `choice_labels`) per epoch (columns),
  and a last panel with E[FLOPs] and the argmax network's FLOPs against the target. None
  without records."""
  if not records:
    return None
  names = list(records[0]["probabilities"])
  epochs = [r["epoch"] for r in records]
  columns = 4
  rows = (len(names) + 1 + columns - 1) // columns
  figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.7 * rows), squeeze=False,
                              constrained_layout=True)
  for axis, name in zip(axes.flat, names):
    grid = np.array([r["probabilities"][name] for r in records]).T  # [choices, epochs]
    image = axis.imshow(grid, aspect="auto", origin="lower", vmin=0.0, vmax=1.0, cmap="viridis",
                        extent=(epochs[0] - 0.5, epochs[-1] + 0.5, -0.5, grid.shape[0] - 0.5))
    axis.set_title(name, fontsize=9)
    axis.set_yticks(range(grid.shape[0]))
    labels = (choice_labels or {}).get(name)
    axis.set_yticklabels(labels if labels else range(grid.shape[0]), fontsize=7)
    axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.tick_params(labelsize=7)
  for axis in axes[-1]:
    axis.set_xlabel("epoch", fontsize=8)
  figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="probability")
  axis = axes.flat[len(names)]
  axis.plot(epochs, [r["expected_flops"] / 1e6 for r in records], label="E[FLOPs]")
  axis.plot(epochs, [r["argmax_flops"] / 1e6 for r in records], label="argmax", marker=".")
  if target:
    axis.axhline(target / 1e6, color="k", linestyle="--", label="target")
  axis.set_title("MFLOPs", fontsize=9)
  axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  axis.legend(fontsize=7)
  for extra in list(axes.flat)[len(names) + 1:]:
    extra.axis("off")
  try:
    return _save(figure, path)
  finally:
    plt.close(figure)
