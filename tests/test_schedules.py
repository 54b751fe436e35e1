import math

import numpy as np
import pytest

from enas_face.training import schedules


def lr_at(schedule, step):
  return float(schedule(step))


def test_eq6_at_known_points():
  # Eq. 6: factor(0) = (2^2 - 2)/2 = 1, factor(T/2) = (2^1.5 - 2)/2, factor(T) = (2^1 - 2)/2 = 0.
  lr_max, lr_min = 0.1, 1e-4
  assert float(schedules.sharpened_cosine(0.0, lr_max, lr_min)) == pytest.approx(lr_max)
  half = lr_min + (lr_max - lr_min) * (2**1.5 - 2) / 2
  assert float(schedules.sharpened_cosine(0.5, lr_max, lr_min)) == pytest.approx(half, rel=1e-6)
  assert float(schedules.sharpened_cosine(1.0, lr_max, lr_min)) == pytest.approx(lr_min, abs=1e-9)
  # Sharper than plain cosine at mid-period: 0.4142 < 0.5 of the range.
  assert (half - lr_min) / (lr_max - lr_min) == pytest.approx(0.41421356, rel=1e-6)


def test_warmup_then_eq6():
  s = schedules.WarmupSharpenedCosine(0.1, 1e-4, warmup_steps=10, total_steps=110)
  assert lr_at(s, 0) == 0.0
  assert lr_at(s, 5) == pytest.approx(0.05)
  assert lr_at(s, 10) == pytest.approx(0.1)
  assert lr_at(s, 60) == pytest.approx(1e-4 + (0.1 - 1e-4) * (2**1.5 - 2) / 2, rel=1e-5)
  assert lr_at(s, 110) == pytest.approx(1e-4, rel=1e-5)
  assert lr_at(s, 500) == pytest.approx(1e-4, rel=1e-5)
  values = [lr_at(s, t) for t in range(10, 111)]
  assert all(a >= b - 1e-9 for a, b in zip(values, values[1:])), "Eq. 6 must decay monotonically"


def test_warm_restarts():
  s = schedules.WarmupSharpenedCosine(1.0, 0.0, warmup_steps=0, total_steps=300, period_steps=100)
  assert lr_at(s, 100) == pytest.approx(1.0)  # restart
  assert lr_at(s, 150) == pytest.approx((2**1.5 - 2) / 2, rel=1e-5)
  grow = schedules.WarmupSharpenedCosine(1.0, 0.0, warmup_steps=0, total_steps=700,
                                         period_steps=100, period_mult=2.0)
  # Periods [0,100), [100,300), [300,700): restarts at 100 and 300, mid-points at 200 and 500.
  assert lr_at(grow, 100) == pytest.approx(1.0, rel=1e-5)
  assert lr_at(grow, 200) == pytest.approx((2**1.5 - 2) / 2, rel=1e-4)
  assert lr_at(grow, 300) == pytest.approx(1.0, rel=1e-4)
  assert lr_at(grow, 500) == pytest.approx((2**1.5 - 2) / 2, rel=1e-4)


@pytest.mark.parametrize("kwargs", [dict(lr_max=0.1, lr_min=0.2, warmup_steps=0, total_steps=10),
                                    dict(lr_max=0.1, lr_min=0.0, warmup_steps=10, total_steps=10),
                                    dict(lr_max=0.1, lr_min=0.0, warmup_steps=0, total_steps=10,
                                         period_mult=0.5)])
def test_rejects_bad_arguments(kwargs):
  with pytest.raises(ValueError):
    schedules.WarmupSharpenedCosine(**kwargs)


def test_config_round_trip():
  s = schedules.WarmupSharpenedCosine(0.1, 1e-4, 5, 50, 20, 2.0)
  t = schedules.WarmupSharpenedCosine(**s.get_config())
  assert all(math.isclose(lr_at(s, k), lr_at(t, k)) for k in np.arange(0, 60, 7))
