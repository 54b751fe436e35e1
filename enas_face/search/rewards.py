"""Cost-aware rewards of the architecture search (plain Python floats, no TF).

The controller is trained with REINFORCE on R(m), a function of the sample's score
Acc(m) in [0, 1] and its cost c(m) (milliseconds, FLOPs or parameters: whatever the
cost model gives) against a target T in the same unit:

  paper:        R = arcsin(clip(Acc * (c/T)^q, 0, 1))          (Zhu 2019, after MnasNet)
  mnasnet_soft: R = Acc * (c/T)^w, w = alpha if c <= T else beta, alpha = beta = q
  mnasnet_hard: R = Acc * (c/T)^w, alpha = 0, beta = -1        (MnasNet, Tan et al. 2019)
  budget:       R = Acc if c <= T else Acc * T/c, and an over-budget sample never enters
                the ranking (T is a hard budget: Efficient PolyFace's FLOPs bound, whose
                search method is not published; this form is our choice, METHODS.md §2)
  two_sided:    R = Acc - lambda * |c/T - 1|                    (the comprehensive search,
                Zhang et al. 2022: lambda = 0.05 fits their released logs, T = 350 MFLOPs)
  accuracy:     R = Acc (the cost is ignored)

With q < 0 a costlier network earns less (q = -0.07 as in MnasNet: twice the target
costs a factor 2^-0.07 ~ 0.953); a cheaper one earns slightly more.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

DEFAULT_EXPONENT = -0.07
DEFAULT_PENALTY = 0.05


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


def _cost_ratio(cost, target) -> float:
  """c / T, both validated to be positive."""
  return _check_positive(cost, "cost") / _check_positive(target, "target")


def paper_reward(accuracy: float, cost: float, target: float,
                 exponent: float = DEFAULT_EXPONENT) -> float:
  """R = arcsin(clip(Acc * (c/T)^q, 0, 1)) (Zhu 2019, with c the latency).

  q < 0 penalises cost over T. With q < 0 and c < T the product can exceed 1; the
  clip keeps it in arcsin's domain, so R <= pi/2.
  """
  accuracy = _check_accuracy(accuracy)
  ratio = _cost_ratio(cost, target)
  exponent = _finite_float(exponent, "exponent")
  return math.asin(min(max(accuracy * ratio**exponent, 0.0), 1.0))


def mnasnet_reward(accuracy: float, cost: float, target: float,
                   alpha: float = DEFAULT_EXPONENT, beta: float = DEFAULT_EXPONENT) -> float:
  """R = Acc * (c/T)^w, w = alpha if c <= T else beta (MnasNet).

  Soft constraint: alpha = beta = -0.07; hard constraint: alpha = 0, beta = -1
  (R = Acc within the budget, Acc * T / c over it).
  """
  accuracy = _check_accuracy(accuracy)
  ratio = _cost_ratio(cost, target)
  alpha = _finite_float(alpha, "alpha")
  beta = _finite_float(beta, "beta")
  return accuracy * ratio**(alpha if ratio <= 1.0 else beta)


def two_sided_reward(accuracy: float, cost: float, target: float,
                     penalty: float = DEFAULT_PENALTY) -> float:
  """R = Acc - lambda |c/T - 1| (Zhang et al. 2022): a cost below the target is penalised
  like one above it, lambda per 100 % deviation."""
  accuracy = _check_accuracy(accuracy)
  ratio = _cost_ratio(cost, target)
  penalty = _finite_float(penalty, "penalty")
  if penalty < 0:
    raise ValueError(f"penalty must be >= 0, got {penalty!r}")
  return accuracy - penalty * abs(ratio - 1.0)


def accuracy_reward(accuracy: float, cost: float | None = None,
                    target: float | None = None) -> float:
  """R = Acc; cost and target are ignored (validated when given)."""
  accuracy = _check_accuracy(accuracy)
  if cost is not None:
    _check_positive(cost, "cost")
  if target is not None:
    _check_positive(target, "target")
  return accuracy


def within_budget(name: str, cost: float | None, target: float | None) -> bool:
  """False only for a `budget` reward's sample that costs more than T (c > T)."""
  return name != "budget" or cost is None or target is None or cost <= target


# Every entry: (accuracy, cost, target, exponent, penalty) -> float.
REWARDS: dict[str, Callable[[float, float, float | None, float, float], float]] = {
    "paper": lambda a, c, t, q, lam: paper_reward(a, c, t, q),
    "mnasnet_soft": lambda a, c, t, q, lam: mnasnet_reward(a, c, t, alpha=q, beta=q),
    "mnasnet_hard": lambda a, c, t, q, lam: mnasnet_reward(a, c, t, alpha=0.0, beta=-1.0),
    "budget": lambda a, c, t, q, lam: mnasnet_reward(a, c, t, alpha=0.0, beta=-1.0),
    "two_sided": lambda a, c, t, q, lam: two_sided_reward(a, c, t, lam),
    "accuracy": lambda a, c, t, q, lam: accuracy_reward(a, c, t),
}


def make_reward(name: str, target: float | None, exponent: float = DEFAULT_EXPONENT,
                penalty: float = DEFAULT_PENALTY) -> Callable[[float, float], float]:
  """The reward `name` of REWARDS with T, q and lambda bound: (accuracy, cost) -> R.

  target may be None only for "accuracy".
  """
  if name not in REWARDS:
    raise ValueError(f"unknown reward {name!r}; choices: {', '.join(sorted(REWARDS))}")
  if target is not None:
    target = _check_positive(target, "target")
  elif name != "accuracy":
    raise ValueError(f"reward {name!r} needs a cost target > 0, got None")
  exponent = _finite_float(exponent, "exponent")
  penalty = _finite_float(penalty, "penalty")
  function = REWARDS[name]

  def reward(accuracy: float, cost: float) -> float:
    return float(function(accuracy, cost, target, exponent, penalty))

  reward.__name__ = f"{name}_reward"
  reward.__doc__ = f"The {name} reward, T = {target}, q = {exponent}, lambda = {penalty}."
  return reward
