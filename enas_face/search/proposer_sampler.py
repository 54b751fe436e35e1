"""The multi-trial proposers (proposers.py) as a sampler of the search loop.

    --controller=evolution | local_search   (and --controller=random with --cost_band_low > 0)

The loop's controller phase draws Q samples, scores them, then calls trainer.update(choices,
rewards); here `sample()` is the proposer's ask() and `update` its tell(encoding, R) for each
of the Q, so a proposer maximises the search's reward R (the score, or the score under the
cost reward). A batch of Q asks comes from the same history (batch-parallel evolution).

The band: with --cost_band_low = b > 0, every ask lies in [b T, T] of the run's cost model
(T = --cost_target; a cheap model: flops, params or lut): mutations outside it are redrawn,
random samples rejected (proposers.py).

Determinism and resume: the proposer's generator is reseeded at each search epoch from
(seed, epoch), so a resumed search rebuilds the proposer exactly by replaying the log
(sampled_arcs.jsonl, cut back to the last finished epoch): per epoch, reseed; per controller
step, the same Q asks, then the logged (choices, reward) told. Nothing of the proposer is
checkpointed; the log is its state.
"""
from __future__ import annotations

import itertools
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from enas_face.search import proposers
from enas_face.search.controller import ControllerSample

# --controller values served by a proposer (random: only with a cost band).
PROPOSER_CONTROLLERS = ("evolution", "local_search")


class ProposerSampler(tf.Module):
  """sample() -> ControllerSample of proposer.ask(); reseed(epoch); replay(records)."""

  def __init__(self, name: str, sizes: Sequence[int], seed: int,
               in_band: Callable[[tuple], bool] | None = None, **options):
    super().__init__(name="proposer_sampler")
    self.proposer_name, self.seed = name, int(seed)
    self.proposer = proposers.make_proposer(name, sizes, np.random.default_rng([self.seed, 0]),
                                            in_band, **options)
    self.log_prob_value = -float(np.sum(np.log(np.asarray(sizes, np.float64))))

  def reseed(self, epoch: int) -> None:
    """The generator of search epoch `epoch` (0-based)."""
    self.proposer.rng = np.random.default_rng([self.seed, int(epoch) + 1])

  def _as_sample(self, encoding) -> ControllerSample:
    return ControllerSample(tf.constant(encoding, tf.int32), tf.constant(self.log_prob_value),
                            tf.constant(-self.log_prob_value), tf.constant(0.0),
                            tf.constant(0.0))

  def sample(self) -> ControllerSample:
    """The proposer's next architecture (log_prob: the uniform distribution's, for the log)."""
    return self._as_sample(self.proposer.ask())

  def uniform_sample(self) -> ControllerSample:
    """A random architecture of the band, outside the proposer's history (one-shot training
    paths; the asks stay those of the controller phase)."""
    return self._as_sample(self.proposer.random())

  def evaluate(self, choices) -> ControllerSample:
    """A given architecture as a sample (the log_prob of the uniform distribution)."""
    return self._as_sample(np.asarray(choices, np.int32).tolist())

  def tell(self, choices, rewards) -> None:
    """Each (encoding, R); R rounded to float32 as the loop hands it over (so a replayed log
    tells exactly what the run told)."""
    for encoding, reward in zip(np.asarray(choices).tolist(),
                                np.asarray(rewards, np.float32).tolist()):
      self.proposer.tell(encoding, float(reward))

  def replay(self, records: list[dict]) -> int:
    """Rebuilds the proposer from a search log (records with epoch, step, choices, reward):
    the same asks per step, the logged choices and rewards told. Returns the records told.
    Raises ValueError when an ask differs from the log (another seed, space or proposer)."""
    told = 0
    for epoch, in_epoch in itertools.groupby(records, key=lambda r: r["epoch"]):
      self.reseed(epoch - 1)
      for _, in_step in itertools.groupby(in_epoch, key=lambda r: r["step"]):
        in_step = list(in_step)
        asked = [self.proposer.ask() for _ in in_step]
        logged = [tuple(r["choices"]) for r in in_step]
        if asked != logged:
          raise ValueError(f"the search log does not replay (epoch {epoch}): the proposer asks "
                           f"{asked[0]} where the log has {logged[0]}; was it written with "
                           "another --seed, --controller or space?")
        self.tell(logged, [r["reward"] for r in in_step])
        told += len(in_step)
    return told


class ProposerTrainer:
  """The loop's trainer seam: update(choices, rewards) tells the proposer; no gradient."""

  def __init__(self, sampler: ProposerSampler):
    self.sampler = sampler

  def update(self, choices, rewards) -> dict[str, float]:
    self.sampler.tell(choices, rewards)
    best = self.sampler.proposer.best()[1]
    return {"told": float(len(self.sampler.proposer.history)), "best_reward": float(best)}
