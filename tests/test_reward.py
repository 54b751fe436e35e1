"""Tests for the latency-aware rewards (hand-computed values)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from enas_face.search import rewards as reward_lib
from enas_face.search.rewards import (REWARDS, accuracy_reward, make_reward, mnasnet_reward,
                              paper_reward)

T = 10.0
Q = -0.07

# (reward name, accuracy, latency_ms, expected), all with T = 10 ms and q = -0.07.
REWARD_TABLE = [
    # paper: arcsin(clip(Acc * (Lat/T)^q, 0, 1))
    ("paper", 0.5, T, math.pi / 6),                          # arcsin(0.5)
    ("paper", 0.9, 2 * T, math.asin(0.9 * 2**-0.07)),        # over budget: penalised
    ("paper", 0.9, T / 2, math.asin(0.9 * 0.5**-0.07)),      # under budget: 0.9 * 1.0497 < 1
    ("paper", 1.0, T / 2, math.pi / 2),                      # 1.0 * 0.5^-0.07 > 1 -> clipped
    ("paper", 1.0, T, math.pi / 2),
    ("paper", 0.0, 3 * T, 0.0),
    ("paper", 0.0, T / 3, 0.0),
    # mnasnet soft: Acc * (Lat/T)^-0.07 on both sides
    ("mnasnet_soft", 0.8, T, 0.8),
    ("mnasnet_soft", 0.8, 2 * T, 0.8 * 2**-0.07),
    ("mnasnet_soft", 0.8, T / 2, 0.8 * 0.5**-0.07),
    ("mnasnet_soft", 1.0, T / 2, 0.5**-0.07),                # no clip: may exceed 1
    # mnasnet hard: Acc within the budget, Acc * T / Lat over it
    ("mnasnet_hard", 0.8, T, 0.8),
    ("mnasnet_hard", 0.8, T / 4, 0.8),
    ("mnasnet_hard", 0.8, 2 * T, 0.4),
    ("mnasnet_hard", 0.9, 3 * T, 0.3),
    # accuracy only
    ("accuracy", 0.7, 100 * T, 0.7),
    ("accuracy", 0.0, T, 0.0),
]


@pytest.mark.parametrize("name, accuracy, latency_ms, expected", REWARD_TABLE)
def test_reward_table(name, accuracy, latency_ms, expected):
  reward = make_reward(name, target=T, exponent=Q)
  value = reward(accuracy, latency_ms)
  assert isinstance(value, float)
  assert value == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_domain_edge_is_exactly_half_pi_not_nan():
  value = paper_reward(1.0, 1.0, 10.0, exponent=-0.07)
  assert not math.isnan(value)
  assert value == math.pi / 2


def test_paper_reward_with_positive_exponent_rewards_slowness_and_stays_finite():
  # q > 0 is unusual but legal: (Lat/T)^q > 1 over the target, still clipped to pi/2.
  assert paper_reward(0.99, 100.0, 1.0, exponent=0.5) == math.pi / 2


def test_zero_exponent_ignores_latency():
  assert paper_reward(0.5, 123.0, 1.0, exponent=0.0) == pytest.approx(math.pi / 6)


def test_mnasnet_defaults_are_the_soft_constraint():
  assert mnasnet_reward(0.6, 20.0, 10.0) == pytest.approx(0.6 * 2**-0.07)


def test_mnasnet_hard_direct_call():
  assert mnasnet_reward(0.8, 5.0, 10.0, alpha=0.0, beta=-1.0) == 0.8
  assert mnasnet_reward(0.8, 40.0, 10.0, alpha=0.0, beta=-1.0) == pytest.approx(0.2)


def test_accuracy_reward_needs_no_latency():
  assert accuracy_reward(0.42) == 0.42
  assert make_reward("accuracy", target=None)(0.42, 5.0) == 0.42


@pytest.mark.parametrize("name", ["paper", "mnasnet_soft", "mnasnet_hard", "budget", "two_sided"])
def test_reward_decreases_with_latency_over_target(name):
  reward = make_reward(name, target=T, exponent=Q)
  latencies = np.linspace(T, 10 * T, 25)
  values = [reward(0.8, latency) for latency in latencies]
  assert all(a > b for a, b in zip(values, values[1:]))


def test_paper_reward_is_non_increasing_in_latency_everywhere_for_negative_q():
  latencies = np.geomspace(T / 100, 100 * T, 60)
  for accuracy in (0.3, 0.9, 0.99):
    values = [paper_reward(accuracy, latency, T, Q) for latency in latencies]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[0] > values[-1]


def test_reward_increases_with_accuracy():
  for name in REWARDS:
    reward = make_reward(name, target=T, exponent=Q)
    values = [reward(a, 2 * T) for a in np.linspace(0.0, 1.0, 11)]
    assert all(a < b for a, b in zip(values, values[1:])), name


def test_numpy_scalars_accepted():
  assert paper_reward(np.float32(0.5), np.float64(10.0), np.int64(10), -0.07) == pytest.approx(
      math.pi / 6)


def test_registry_names():
  assert set(REWARDS) == {"paper", "mnasnet_soft", "mnasnet_hard", "budget", "two_sided",
                          "accuracy"}


# ------------------------------------------------------------------ errors
def test_unknown_reward_names_it_and_the_choices():
  with pytest.raises(ValueError,
                     match=r"'speed'.*accuracy.*budget.*mnasnet_hard.*mnasnet_soft.*paper.*two_sided"):
    make_reward("speed", target=T)


@pytest.mark.parametrize("accuracy", [-0.01, 1.01, float("nan"), float("inf")])
def test_bad_accuracy(accuracy):
  for function in (paper_reward, mnasnet_reward):
    with pytest.raises(ValueError, match="accuracy"):
      function(accuracy, 5.0, 10.0)
  with pytest.raises(ValueError, match="accuracy"):
    accuracy_reward(accuracy)


@pytest.mark.parametrize("latency", [0.0, -1.0, float("nan")])
def test_bad_latency(latency):
  with pytest.raises(ValueError, match="cost") as error:
    paper_reward(0.5, latency, 10.0)
  assert repr(latency) in str(error.value)  # says what was received
  with pytest.raises(ValueError, match="cost"):
    mnasnet_reward(0.5, latency, 10.0)
  with pytest.raises(ValueError, match="cost"):
    make_reward("accuracy", None)(0.5, latency)


@pytest.mark.parametrize("target", [0.0, -5.0, float("inf")])
def test_bad_target(target):
  with pytest.raises(ValueError, match="target"):
    make_reward("paper", target=target)
  with pytest.raises(ValueError, match="target"):
    paper_reward(0.5, 5.0, target)


def test_latency_rewards_need_a_target():
  for name in ("paper", "mnasnet_soft", "mnasnet_hard", "budget", "two_sided"):
    with pytest.raises(ValueError, match=f"{name}.*target"):
      make_reward(name, target=None)


def test_non_numbers_rejected():
  with pytest.raises(ValueError, match="accuracy must be a real number.*'0.5'"):
    paper_reward("0.5", 5.0, 10.0)
  with pytest.raises(ValueError, match="accuracy must be a real number"):
    paper_reward(True, 5.0, 10.0)
  with pytest.raises(ValueError, match="exponent"):
    make_reward("paper", target=10.0, exponent=float("nan"))


def test_two_sided_reward_penalises_both_sides_equally():
  """R = Acc - lambda |c/T - 1|: the comprehensive search's acc - |FLOPs_M - 350| / 7000."""
  reward = make_reward("two_sided", target=350e6, penalty=0.05)
  assert reward(0.9, 350e6) == 0.9
  assert reward(0.9, 700e6) == pytest.approx(0.85)
  assert reward(0.9, 175e6) == pytest.approx(0.875)
  for flops_m in (100.0, 300.0, 420.0, 1000.0):
    assert reward(0.8, flops_m * 1e6) == pytest.approx(0.8 - abs(flops_m - 350.0) / 7000.0)
  with pytest.raises(ValueError, match="penalty"):
    reward_lib.two_sided_reward(0.5, 1.0, 1.0, penalty=-0.1)


def test_budget_reward_is_accuracy_within_budget_and_penalised_over_it():
  reward = make_reward("budget", target=100.0)
  assert reward(0.7, 100.0) == 0.7 and reward(0.7, 10.0) == 0.7
  assert reward(0.8, 200.0) == pytest.approx(0.4)
  assert reward_lib.within_budget("budget", 100.0, 100.0)
  assert not reward_lib.within_budget("budget", 100.5, 100.0)
  assert reward_lib.within_budget("paper", 1e9, 100.0)  # only the budget reward excludes


def test_module_has_no_tensorflow_dependency():
  import sys
  source = open(reward_lib.__file__, encoding="utf-8").read()
  assert "tensorflow" not in source and "keras" not in source
  assert "enas_face.search.rewards" in sys.modules
