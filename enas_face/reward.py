"""Latency-aware rewards of the architecture search (plain Python floats, no TF).

The controller is trained with REINFORCE on R(m), a function of the child's
validation accuracy Acc(m) in [0, 1] and its measured latency Lat(m) in ms
against a target T (Zhu 2019, following MnasNet, Tan et al. 2019):

  paper:        R = arcsin(clip(Acc * (Lat/T)^q, 0, 1))
  mnasnet_soft: R = Acc * (Lat/T)^w, w = alpha if Lat <= T else beta, alpha = beta = q
  mnasnet_hard: R = Acc * (Lat/T)^w, alpha = 0, beta = -1
  accuracy:     R = Acc (latency ignored)

With q < 0 a slower network earns less (e.g. q = -0.07 as in MnasNet: twice the
target costs a factor 2^-0.07 ~ 0.953); a faster one earns slightly more.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

DEFAULT_EXPONENT = -0.07


def _finite_float(value, what: str) -> float:
  """`value` as a finite Python float (numpy scalars accepted), else ValueError."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ValueError(f"{what} must be a real number, got {value!r} of type {type(value).__name__}")
  result = float(value)
  if not math.isfinite(result):
    raise ValueError(f"{what} must be finite, got {value!r}")
  return result


def _check_accuracy(accuracy) -> float:
  accuracy = _finite_float(accuracy, "accuracy")
  if not 0.0 <= accuracy <= 1.0:
    raise ValueError(f"accuracy must be in [0, 1], got {accuracy!r}")
  return accuracy


def _check_positive(value, what: str) -> float:
  value = _finite_float(value, what)
  if value <= 0.0:
    raise ValueError(f"{what} must be > 0, got {value!r}")
  return value


def _latency_ratio(latency_ms, target_ms) -> float:
  """Lat / T, both validated to be positive."""
  return _check_positive(latency_ms, "latency_ms") / _check_positive(target_ms, "target_ms")


def paper_reward(accuracy: float, latency_ms: float, target_ms: float,
                 exponent: float = DEFAULT_EXPONENT) -> float:
  """R = arcsin(clip(Acc * (Lat/T)^q, 0, 1)) (Zhu 2019).

  q < 0 penalises latency over T (e.g. q = -0.07 as MnasNet). With q < 0 and
  Lat < T the product can exceed 1; the clip keeps it in arcsin's domain, so
  R <= pi/2.
  """
  accuracy = _check_accuracy(accuracy)
  ratio = _latency_ratio(latency_ms, target_ms)
  exponent = _finite_float(exponent, "exponent")
  return math.asin(min(max(accuracy * ratio**exponent, 0.0), 1.0))


def mnasnet_reward(accuracy: float, latency_ms: float, target_ms: float,
                   alpha: float = DEFAULT_EXPONENT, beta: float = DEFAULT_EXPONENT) -> float:
  """R = Acc * (Lat/T)^w, w = alpha if Lat <= T else beta (MnasNet).

  Soft constraint: alpha = beta = -0.07; hard constraint: alpha = 0, beta = -1
  (R = Acc within the budget, Acc * T / Lat over it).
  """
  accuracy = _check_accuracy(accuracy)
  ratio = _latency_ratio(latency_ms, target_ms)
  alpha = _finite_float(alpha, "alpha")
  beta = _finite_float(beta, "beta")
  return accuracy * ratio**(alpha if ratio <= 1.0 else beta)


def accuracy_reward(accuracy: float, latency_ms: float | None = None,
                    target_ms: float | None = None) -> float:
  """R = Acc; latency and target are ignored (validated when given)."""
  accuracy = _check_accuracy(accuracy)
  if latency_ms is not None:
    _check_positive(latency_ms, "latency_ms")
  if target_ms is not None:
    _check_positive(target_ms, "target_ms")
  return accuracy


# Every entry has the signature (accuracy, latency_ms, target_ms, exponent) -> float.
def _paper(accuracy, latency_ms, target_ms, exponent):
  """paper_reward with q = exponent."""
  return paper_reward(accuracy, latency_ms, target_ms, exponent)


def _mnasnet_soft(accuracy, latency_ms, target_ms, exponent):
  """mnasnet_reward with alpha = beta = exponent."""
  return mnasnet_reward(accuracy, latency_ms, target_ms, alpha=exponent, beta=exponent)


def _mnasnet_hard(accuracy, latency_ms, target_ms, exponent):
  """mnasnet_reward with alpha = 0, beta = -1 (exponent ignored)."""
  return mnasnet_reward(accuracy, latency_ms, target_ms, alpha=0.0, beta=-1.0)


def _accuracy(accuracy, latency_ms, target_ms, exponent):
  """accuracy_reward (latency, target and exponent ignored)."""
  return accuracy_reward(accuracy, latency_ms, target_ms)


REWARDS: dict[str, Callable[[float, float, float | None, float], float]] = {
    "paper": _paper,
    "mnasnet_soft": _mnasnet_soft,
    "mnasnet_hard": _mnasnet_hard,
    "accuracy": _accuracy,
}


def make_reward(name: str, target_ms: float | None,
                exponent: float = DEFAULT_EXPONENT) -> Callable[[float, float], float]:
  """The reward `name` of REWARDS with T and q bound: (accuracy, latency_ms) -> R.

  target_ms may be None only for "accuracy".
  """
  if name not in REWARDS:
    raise ValueError(f"unknown reward {name!r}; choices: {', '.join(sorted(REWARDS))}")
  if target_ms is not None:
    target_ms = _check_positive(target_ms, "target_ms")
  elif name != "accuracy":
    raise ValueError(f"reward {name!r} needs a target latency target_ms > 0, got None")
  exponent = _finite_float(exponent, "exponent")
  function = REWARDS[name]

  def reward(accuracy: float, latency_ms: float) -> float:
    return float(function(accuracy, latency_ms, target_ms, exponent))

  reward.__name__ = f"{name}_reward"
  reward.__doc__ = f"{function.__doc__} T = {target_ms} ms, q = {exponent}."
  return reward
