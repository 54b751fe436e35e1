"""Learning-rate schedules: linear warmup, then the sharpened cosine of Eq. 6.

Zhu 2019, Eq. 6, inside one cosine period of length T_i (t = steps into it):

    lr_t = lr_min + (lr_max - lr_min) * (2 ** (0.5 * (1 + cos(pi * t / T_i)) + 1) - 2) / 2

which is lr_max at t = 0, lr_min at t = T_i and
lr_min + (2^1.5 - 2) / 2 * (lr_max - lr_min) ~= lr_min + 0.414 (lr_max - lr_min)
at t = T_i / 2 (below plain cosine's 0.5: the decay is front-loaded).
"""
from __future__ import annotations

import math

import keras
from keras import ops as K


def sharpened_cosine(progress, lr_max: float, lr_min: float):
  """Eq. 6 at progress = t / T_i in [0, 1] (tensor or float)."""
  factor = (2.0 ** (0.5 * (1.0 + K.cos(math.pi * progress)) + 1.0) - 2.0) / 2.0
  return lr_min + (lr_max - lr_min) * factor


@keras.saving.register_keras_serializable("enas_face")
class WarmupSharpenedCosine(keras.optimizers.schedules.LearningRateSchedule):
  """lr = lr_max * step / warmup_steps during warmup, then Eq. 6 with warm restarts.

  After warmup, periods have lengths T_0, T_0 * mult, T_0 * mult^2, ...; with
  period_steps = 0 a single period spans all remaining steps. Past total_steps
  the rate stays at lr_min.
  """

  def __init__(self, lr_max: float, lr_min: float, warmup_steps: int, total_steps: int,
               period_steps: int = 0, period_mult: float = 1.0):
    if not 0 <= lr_min <= lr_max:
      raise ValueError(f"need 0 <= lr_min <= lr_max, got lr_min={lr_min}, lr_max={lr_max}")
    if warmup_steps < 0 or total_steps <= warmup_steps:
      raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps}, {total_steps}")
    if period_steps < 0 or period_mult < 1.0:
      raise ValueError(f"need period_steps >= 0 and period_mult >= 1, got {period_steps}, "
                       f"{period_mult}")
    self.lr_max, self.lr_min = float(lr_max), float(lr_min)
    self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)
    self.period_steps = int(period_steps) or (self.total_steps - self.warmup_steps)
    self.period_mult = float(period_mult)

  def _cosine_progress(self, t):
    """Fraction t_cur / T_i of the current period at t steps after warmup."""
    first = float(self.period_steps)
    if self.period_mult == 1.0:
      return K.mod(t, first) / first
    # Period k starts at first * (mult^k - 1) / (mult - 1).
    mult = self.period_mult
    k = K.floor(K.log(t * (mult - 1.0) / first + 1.0) / math.log(mult))
    start = first * (mult**k - 1.0) / (mult - 1.0)
    return (t - start) / (first * mult**k)

  def __call__(self, step):
    step = K.cast(step, "float32")
    warm = self.lr_max * step / max(self.warmup_steps, 1)
    t = step - self.warmup_steps
    decay_steps = float(self.total_steps - self.warmup_steps)
    cosine = sharpened_cosine(self._cosine_progress(K.maximum(t, 0.0)), self.lr_max, self.lr_min)
    # The very last step of the run ends exactly at lr_min (not a restart).
    cosine = K.where(t >= decay_steps, self.lr_min, cosine)
    return K.where(step < self.warmup_steps, warm, cosine)

  def get_config(self):
    return {"lr_max": self.lr_max, "lr_min": self.lr_min, "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps, "period_steps": self.period_steps,
            "period_mult": self.period_mult}
