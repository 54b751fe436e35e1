"""TuNAS's warm-up of a one-shot search (Bender et al. 2020), in numpy.

Controller warm-up (--controller_warmup_fraction f; TuNAS: 0.25 of the steps): the first
W = floor(f E) of the E search epochs take no policy step, so the policy stays as it
started (uniform: every controller here starts uniform); the moving-average baseline still
follows the rewards (ReinforceTrainer.observe), as TuNAS's zero controller learning rate
leaves it.

Path dropout warm-up (--path_dropout_warmup p0; TuNAS: 1): at the shared model's training
step t of the warm-up's T = W * steps_per_epoch steps, each decision of the step's sample
is, independently, replaced by its widest choice with probability

    p(t) = p0 (1 - t / T)  for t < T,  else 0

so the training starts on the whole supernet and ends the warm-up on the sampled
architectures alone. TuNAS does this for its filter counts (the largest) and its ops (all
enabled). What a "path" is here is ours: a space whose choices nest (the mobilefacenet
space: a narrower width is the first channels of a wider one, a depth the first blocks of a
deeper one) names the choice holding every path of each decision
(SearchSpace.widest_choices); the dropped paths are the channels above the sampled width
and the blocks beyond the sampled depth. Only the shared model's training samples are
widened: the controller is rewarded and updated on what it sampled.

Draws are seeded by (seed, epoch), so a resumed search widens exactly as an uninterrupted one.
"""
from __future__ import annotations

import numpy as np


def controller_warmup_epochs(fraction: float, epochs: int) -> int:
  """W = floor(fraction * epochs)."""
  return int(np.floor(fraction * epochs + 1e-9))


def path_keep_probability(step: int, warmup_steps: int, p0: float) -> float:
  """p(t) = p0 (1 - t / T) for t < T, else 0."""
  if warmup_steps <= 0 or step >= warmup_steps:
    return 0.0
  return float(p0) * (1.0 - step / warmup_steps)


def widen(choices: np.ndarray, widest, epoch: int, steps_per_epoch: int, warmup_steps: int,
          p0: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """The training samples [S, D] of epoch `epoch` (step k is global step epoch * S' + k,
  S' = steps_per_epoch), each decision replaced by widest[d] with probability p(t); also
  returns p(t) per step [S]."""
  choices = np.array(choices, np.int32, copy=True)
  steps = epoch * steps_per_epoch + np.arange(len(choices))
  p = np.array([path_keep_probability(int(t), warmup_steps, p0) for t in steps])
  if not p.any():
    return choices, p
  draws = np.random.default_rng([seed, epoch, 104729]).uniform(size=choices.shape)
  replace = draws < p[:, None]
  widest = np.broadcast_to(np.asarray(widest, np.int32), choices.shape)
  choices[replace] = widest[replace]
  return choices, p
