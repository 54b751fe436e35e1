"""Multi-trial searches on Ray: the trials of one controller step trained side by side.

Ray (https://docs.ray.io, the `ray` extra) runs each trial as a task on a worker process, on
this machine (--trial_workers workers) or on a cluster (--ray_address). The search loop does
not change: the controller samples a batch, the new samples of the batch become Ray tasks,
and each finished trial comes back to the chief, which appends it to trials.jsonl as it
arrives (a killed search keeps every trial that finished). A trial's files (its run folder
under RUN_DIR/trials/) are written by the worker, so on a cluster RUN_DIR must be on a file
system every node sees.
"""
from __future__ import annotations

from typing import Callable, Sequence

from enas_face.config import ConfigError


def _run_trial_task(work: Callable, trial, dataset, reward, cpu_threads: int):
  """work(trial, dataset, reward) on a Ray worker (TensorFlow limited to `cpu_threads`
  threads when > 0)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if cpu_threads:
    try:
      tf.config.threading.set_intra_op_parallelism_threads(cpu_threads)
      tf.config.threading.set_inter_op_parallelism_threads(cpu_threads)
    except RuntimeError:
      pass  # a reused worker: TensorFlow is initialised with these settings already
  return work(trial, dataset, reward)


class RayTrialRunner:
  """Runs trials as Ray tasks (one CPU each, or `gpus` GPUs each on a GPU cluster): each task
  calls `work(trial, dataset, reward)` (the search's run_trial, passed in: this module knows
  no strategy); `run` reports each result as it finishes."""

  def __init__(self, work: Callable, workers: int, address: str = "", gpus: float = 0.0):
    try:
      import ray  # pylint: disable=import-outside-toplevel
    except ImportError:
      raise ConfigError(f"--trial_workers={workers} / --ray_address need Ray: pip install -e "
                        "'.[ray]' (or leave --trial_workers=1 to train trials one after "
                        "another)") from None
    self.ray, self.work = ray, work
    if not ray.is_initialized():
      if address:
        ray.init(address=address, log_to_driver=False)
      else:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    self.task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=1)(_run_trial_task)
    self.cpu_threads = 0 if gpus else 1  # CPU trials: one thread each, side by side
    self._shared = {}  # id(object) -> (object, its reference in Ray's object store)

  def _put(self, value):
    key = id(value)
    if key not in self._shared:
      self._shared[key] = (value, self.ray.put(value))
    return self._shared[key][1]

  def run(self, trials: Sequence, dataset, reward, finished: Callable[[dict | None], None]) -> None:
    """Trains `trials` (RunConfigs) side by side; `finished(record)` for each, in the order
    they finish."""
    if not trials:
      return
    dataset_ref, reward_ref = self._put(dataset), self._put(reward)
    pending = [self.task.remote(self.work, trial, dataset_ref, reward_ref, self.cpu_threads)
               for trial in trials]
    while pending:
      done, pending = self.ray.wait(pending, num_returns=1)
      finished(self.ray.get(done[0]))
