"""A model's decision thresholds on cosine scores, calibrated on labelled pairs.

    calibration = calibrate(scores, is_same, source={"pairs": "lfw:pairsDevTest.txt"})
    threshold = choose(calibration, "best_accuracy")   # or "far_1e-3", "far_1e-4", "0.42"

Decision rule everywhere (as `verification.accuracy_at_threshold`): "same person" iff
s > t, with s the cosine of two unit embeddings.

- best_accuracy: t* = argmax_t acc(t) over all pairs (`verification.best_threshold`): the
  operating point the k-fold accuracy reports, fitted on every pair at once.
- far_<f>: the smallest candidate t with FAR(t) = #{different: s > t} / #different <= f,
  and its TAR(t) = #{same: s > t} / #same. With N different pairs only FARs in
  {0, 1/N, ...} exist: when f < 1/N the entry says "resolvable": false and holds the
  strictest threshold the pairs allow (above every different pair, FAR 0): a user asking
  for FAR 1e-4 from 500 different pairs learns the estimate is not one.

The calibration is plain JSON (written beside an export as thresholds.json by export.py).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from enas_face.evaluation import verification

FORMAT = "enas_face_thresholds"
VERSION = 1
DEFAULT_FARS = (1e-3, 1e-4)
DEFAULT_CHOICE = "best_accuracy"


class ThresholdError(ValueError):
  """A thresholds file or a threshold choice that cannot be used; the message names it."""


def far_key(far: float) -> str:
  """'far_' + far in short scientific form: 1e-3 -> 'far_1e-3'."""
  mantissa, exponent = f"{float(far):e}".split("e")
  return f"far_{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def threshold_at_far(scores, is_same, far: float) -> dict:
  """{"threshold": t, "far": FAR(t), "tar": TAR(t), "resolvable": far >= 1/#different}
  for the smallest candidate threshold (`verification._candidate_thresholds`) whose FAR
  does not exceed `far` (decision s > t)."""
  scores, is_same = verification._scores_and_labels(scores, is_same, both_classes=True)
  if not 0.0 <= far <= 1.0:
    raise ValueError(f"far must lie in [0, 1], got {far}")
  candidates = verification._candidate_thresholds(scores)
  different = np.sort(scores[~is_same])
  same = np.sort(scores[is_same])
  false_accepts = different.size - np.searchsorted(different, candidates, side="right")
  admissible = np.flatnonzero(false_accepts <= far * different.size * (1 + 1e-9))
  t = float(candidates[admissible[0]])  # candidates ascend: the most permissive admissible
  return {"threshold": t,
          "far": float(np.mean(different > t)),
          "tar": float(np.mean(same > t)),
          "resolvable": bool(far * different.size >= 1.0 - 1e-9)}


def calibrate(scores, is_same, fars=DEFAULT_FARS, source: dict | None = None) -> dict:
  """The calibration of a model's cosine scores on labelled pairs (see the module doc):
  {"format", "version", "decision": "same iff cosine > threshold", "best_accuracy":
  {"threshold", "accuracy"}, far_<f>: {...} per f, "pairs": {"num_pairs", "num_same",
  "num_different", **source}}."""
  scores, is_same = verification._scores_and_labels(scores, is_same, both_classes=True)
  best = verification.best_threshold(scores, is_same)
  out: dict[str, Any] = {
      "format": FORMAT, "version": VERSION, "decision": "same iff cosine > threshold",
      "best_accuracy": {"threshold": best,
                        "accuracy": verification.accuracy_at_threshold(scores, is_same, best)}}
  for far in fars:
    out[far_key(far)] = threshold_at_far(scores, is_same, far)
  out["pairs"] = {"num_pairs": int(scores.size), "num_same": int(is_same.sum()),
                  "num_different": int((~is_same).sum()), **(source or {})}
  return out


def validate(calibration: Any, where: str) -> dict:
  """`calibration` when it is a calibration this version reads; ThresholdError naming
  `where` (the file) otherwise."""
  if not isinstance(calibration, dict) or calibration.get("format") != FORMAT:
    raise ThresholdError(f"{where}: not an enas_face thresholds file (format must be {FORMAT!r})")
  if calibration.get("version") != VERSION:
    raise ThresholdError(f"{where}: thresholds version {calibration.get('version')!r}; this "
                         f"enas_face reads version {VERSION}")
  for name in names(calibration):
    value = calibration[name].get("threshold") if isinstance(calibration[name], dict) else None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
      raise ThresholdError(f"{where}: {name} has no finite threshold ({calibration[name]!r})")
  if DEFAULT_CHOICE not in calibration:
    raise ThresholdError(f"{where}: no {DEFAULT_CHOICE} threshold")
  return calibration


def names(calibration: dict) -> list[str]:
  """The named thresholds of a calibration: best_accuracy and the far_<f> entries."""
  return [key for key in calibration if key == DEFAULT_CHOICE or key.startswith("far_")]


def choose(calibration: dict | None, choice: str = DEFAULT_CHOICE, flag: str = "--threshold"
           ) -> float:
  """The threshold named `choice` in `calibration`, or `choice` itself when it is a number
  (a user's override, in [-1, 1]); ThresholdError naming `flag` otherwise."""
  try:
    value = float(choice)
  except ValueError:
    value = None
  if value is not None:
    if not -1.0 <= value <= 1.0:
      raise ThresholdError(f"{flag}={choice}: a cosine threshold must lie in [-1, 1]")
    return value
  if calibration is None:
    raise ThresholdError(f"{flag}={choice}: the model has no thresholds.json (export it with "
                         "--mode=export to calibrate one), or pass a number")
  if choice not in names(calibration):
    raise ThresholdError(f"{flag}={choice}: not a threshold of this model; it has "
                         f"{', '.join(names(calibration))}, or pass a number")
  return float(calibration[choice]["threshold"])
