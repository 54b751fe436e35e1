"""Where training runs: one device, several local devices, or several machines.

--distribution_strategy (alias --strategy; not --search_strategy, how a search scores):
    default       tf.distribute's default strategy (one device)
    mirrored      MirroredStrategy over all local GPUs (or --num_replicas of them);
                  without GPUs, over --num_replicas logical CPU devices (for testing
                  the machinery on a CPU)
    multi_worker  MultiWorkerMirroredStrategy; the cluster and this process's place
                  in it come from TF_CONFIG

Every replica gets global_batch / num_replicas images; each replica's loss is
sum(per-example loss) / global_batch, and the optimiser sums the replicas'
gradients, so the update equals one device's on the whole global batch.
BatchNorm is synchronised across replicas (Keras `synchronized=True`), so its
batch statistics are those of the global batch too, except in the shared child of
the search (see `per_replica_batch_norm`).

The chief (task "chief", else worker 0) alone samples architectures, trains
the controller, measures latency and writes logs; the other workers receive
the architectures by `broadcast_from_chief` and write their checkpoints to a
scratch folder (tf.distribute requires every worker to save) that is deleted.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
from typing import Callable

import numpy as np
from absl import logging

from enas_face.config import DISTRIBUTION_STRATEGIES, ConfigError
from enas_face import runlog

# TensorFlow and Keras are imported inside the functions that use them: main checks
# TF_CONFIG (`cluster_role`) before the slow import, so bad input fails in a blink.

@dataclasses.dataclass(frozen=True)
class Placement:
  """The strategy and this process's role in it."""
  strategy: tf.distribute.Strategy
  name: str
  is_chief: bool = True
  worker_index: int = 0
  num_workers: int = 1

  @property
  def num_replicas(self) -> int:
    return int(self.strategy.num_replicas_in_sync)

  def checkpoint_dir(self, run_dir: str) -> str:
    """Chief: RUN_DIR/checkpoints. Others: a scratch folder (see `cleanup`)."""
    if self.is_chief:
      return os.path.join(run_dir, runlog.CHECKPOINTS_DIR)
    return os.path.join(run_dir, runlog.WORKERS_DIR, f"worker-{self.worker_index}",
                        runlog.CHECKPOINTS_DIR)

  def cleanup(self, run_dir: str) -> None:
    """Deletes a non-chief worker's scratch checkpoints."""
    if not self.is_chief:
      workers = os.path.join(run_dir, runlog.WORKERS_DIR)
      shutil.rmtree(os.path.join(workers, f"worker-{self.worker_index}"), ignore_errors=True)
      try:
        os.rmdir(workers)  # the last worker out removes the (then empty) parent
      except OSError:
        pass


def split_cpu(num_devices: int) -> None:
  """Makes the CPU appear as `num_devices` logical devices (before TF initialises them)."""
  import tensorflow as tf
  cpu = tf.config.list_physical_devices("CPU")[0]
  current = tf.config.get_logical_device_configuration(cpu)
  if current and len(current) == num_devices:
    return
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])
  except RuntimeError as e:
    raise ConfigError(f"--num_replicas={num_devices}: TensorFlow's devices were initialised "
                      f"before the strategy was chosen ({e})") from e


def cluster_role() -> tuple[bool, int, int]:
  """(is_chief, worker index, number of workers) from TF_CONFIG."""
  raw = os.environ.get("TF_CONFIG", "")
  if not raw:
    raise ConfigError("--distribution_strategy=multi_worker needs the TF_CONFIG environment "
                      'variable (e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                      '"task": {"type": "worker", "index": 0}}); see BUILD.md')
  try:
    tf_config = json.loads(raw)
    cluster, task = tf_config["cluster"], tf_config["task"]
    task_type, index = task["type"], int(task["index"])
  except (ValueError, KeyError, TypeError) as e:
    raise ConfigError(f"TF_CONFIG is not valid ({e}): {raw!r}") from e
  if not isinstance(cluster, dict) or not all(
      isinstance(cluster.get(job, []), list) for job in ("chief", "worker")):
    raise ConfigError(f'TF_CONFIG "cluster" must map "worker" (and optionally "chief") to '
                      f'lists of "host:port": {raw!r}')
  if task_type not in ("chief", "worker") or not 0 <= index < len(cluster.get(task_type, [])):
    raise ConfigError(f'TF_CONFIG task {task_type!r} {index} is not in its "cluster" '
                      f"(this process must be one of the chief/worker entries listed): {raw!r}")
  workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
  if "chief" in cluster:
    is_chief = task_type == "chief"
    order = 0 if is_chief else index + 1
  else:
    is_chief = task_type == "worker" and index == 0
    order = index
  return is_chief, order, workers


def make_placement(name: str, num_replicas: int = 0) -> Placement:
  """The strategy named by --distribution_strategy; `num_replicas` 0 means all local GPUs (or
  1 CPU)."""
  import tensorflow as tf
  if name == "default":
    return Placement(tf.distribute.get_strategy(), name)
  if name == "mirrored":
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
      count = num_replicas or len(gpus)
      if count > len(gpus):
        raise ConfigError(f"--num_replicas={num_replicas} but this machine has {len(gpus)} GPUs")
      devices = [f"/gpu:{i}" for i in range(count)]
    else:
      count = num_replicas or 1
      split_cpu(count)
      devices = [f"/cpu:{i}" for i in range(count)]
    logging.info("MirroredStrategy over %s", devices)
    return Placement(tf.distribute.MirroredStrategy(devices), name)
  if name == "multi_worker":
    is_chief, index, workers = cluster_role()
    if num_replicas and not tf.config.list_physical_devices("GPU"):
      split_cpu(num_replicas)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    logging.info("MultiWorkerMirroredStrategy: worker %d of %d%s, %d replicas in sync", index,
                 workers, " (chief)" if is_chief else "", strategy.num_replicas_in_sync)
    return Placement(strategy, name, is_chief, index, workers)
  raise ConfigError(f"--distribution_strategy={name!r}; expected one of "
                    f"{', '.join(DISTRIBUTION_STRATEGIES)}")


def per_replica_batch_norm(model: keras.Model) -> int:
  """Switches `model`'s BatchNorm layers to per-replica batch statistics; returns how many.

  For the shared child under a distribution strategy. Its candidate ops run inside
  `tf.switch_case` / `tf.cond`, and a synchronised BatchNorm there cannot work in
  TF 2.21: its all-reduce is a `merge_call`, refused inside control flow ("`merge_call`
  called while defining a new graph"), and forcing the collective path instead
  (`extended._use_merge_call = lambda: False`) fails in the gradient of `tf.cond`
  ("Tensor.graph is undefined": it captures an eager tensor of the collective) or,
  without collective ordering tokens, deadlocks. So each replica normalises with its own images' statistics
  (what most multi-GPU training does; with 128 images per GPU as in the paper they
  are close to the global ones); gradients are still summed over the global batch.
  The fixed child keeps synchronised BatchNorm.
  """
  import keras
  count = 0
  for layer in model._flatten_layers():  # pylint: disable=protected-access
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.synchronized = False
      count += 1
  return count


def distribute_dataset(placement: Placement, dataset: tf.data.Dataset) -> tf.data.Dataset:
  """A dataset of global batches, split across the replicas (and workers)."""
  import tensorflow as tf
  if placement.name == "default":
    return dataset
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return placement.strategy.experimental_distribute_dataset(dataset.with_options(options))


def distribute_training_data(placement: Placement, make: Callable, per_pipeline: bool):
  """Training batches for the strategy. make(input_context) builds the dataset.

  In memory (per_pipeline False): make(None) gives global batches, split over the replicas
  (DATA auto-sharding). Streamed (True): each input pipeline builds its own stream of
  per-replica batches from its share of the files (`distribute_datasets_from_function`),
  so no worker reads what another trains on.
  """
  if placement.name == "default":
    return make(None)
  if not per_pipeline:
    return distribute_dataset(placement, make(None))
  return placement.strategy.distribute_datasets_from_function(make)


@functools.cache
def _sum_of_first_replica():
  """One tf.function for every broadcast (a new one per call would retrace each epoch)."""
  import tensorflow as tf

  @tf.function
  def pick(v):
    context = tf.distribute.get_replica_context()
    first = tf.cast(tf.equal(context.replica_id_in_sync_group, 0), v.dtype)
    return context.all_reduce(tf.distribute.ReduceOp.SUM, v * first)

  return pick


def broadcast_from_chief(placement: Placement, value: np.ndarray) -> np.ndarray:
  """The chief's `value` on every worker (others pass an array of the same shape).

  All-reduce of value * [replica id == 0]: replica 0 lives on the chief.
  """
  import tensorflow as tf
  if placement.num_workers == 1:
    return value
  strategy = placement.strategy
  result = strategy.run(_sum_of_first_replica(), args=(tf.constant(value),))
  return strategy.experimental_local_results(result)[0].numpy().astype(value.dtype)
