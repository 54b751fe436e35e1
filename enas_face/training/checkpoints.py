"""A run's checkpoints: where they are and the one way every reader restores from them.

    checkpoint_dir(run_dir)          RUN_DIR/checkpoints (one per epoch, CheckpointManager)
    best_dir / read_best(run_dir)    RUN_DIR/best/ and its best.json (fixed training writes it)
    latest(directory)                the newest checkpoint path there, or None
    restore(path, **objects)         restores the named objects as they were saved: every
                                     object must find its weights; with partial=True the
                                     file may hold more (optimizer, head, ...)
    resume(checkpoint, directory)    a training's whole state from its latest checkpoint
    restore_child(config)            a run's trained child, latest or best/ (eval, export, tools)
    load_run(path, flag)             a run folder's config, child and head (a teacher)
    initialize_child(child, source)  warm start from another run's child (--init_checkpoint)
"""
from __future__ import annotations

import dataclasses
import os

import keras
import tensorflow as tf
from absl import logging

from enas_face.config import ConfigError, RunConfig
from enas_face.models import builders
from enas_face.models.heads import build_head
from enas_face import runlog
from enas_face import spaces

def checkpoint_dir(run_dir: str) -> str:
  return os.path.join(run_dir, runlog.CHECKPOINTS_DIR)


def best_dir(run_dir: str) -> str:
  return os.path.join(run_dir, runlog.BEST_DIR)


def read_best(run_dir: str) -> dict | None:
  """best/best.json ({epoch, set, metric, value, checkpoint}) or None."""
  return runlog.read_json(os.path.join(best_dir(run_dir), runlog.BEST))


def latest(directory: str) -> str | None:
  """The newest checkpoint of a CheckpointManager's `directory`, or None."""
  return tf.train.latest_checkpoint(directory)


def restore(path: str, *, partial: bool = True, written: bool = False, **objects) -> str:
  """Restores `objects` (name=trackable, the names they were saved under) from `path` and
  asserts that each of them found its weights. partial: the checkpoint may hold more than
  `objects`. written: the checkpoint was made by Checkpoint.write (best/: no save counter),
  so it is read. Returns `path`."""
  checkpoint = tf.train.Checkpoint(**objects)
  status = checkpoint.read(path) if written else checkpoint.restore(path)
  if partial:
    status = status.expect_partial()
  status.assert_existing_objects_matched()
  return path


def resume(checkpoint: tf.train.Checkpoint, directory: str) -> str | None:
  """Restores all of a training's `checkpoint` (every object it tracks) from the latest
  checkpoint of `directory`; the path, or None when there is none yet (a fresh start)."""
  path = latest(directory)
  if path:
    checkpoint.restore(path).assert_existing_objects_matched()
  return path


def restore_child(config: RunConfig) -> keras.Model:
  """The trained child of a run folder (its latest checkpoint, or best/ with
  --checkpoint=best), for eval and export."""
  best = config.eval.checkpoint == "best"
  if best:
    record = read_best(config.run_dir)
    if record is None:
      raise ConfigError(f"--checkpoint=best: no "
                        f"{os.path.join(best_dir(config.run_dir), runlog.BEST)} (a fixed run "
                        "writes it when it verifies its pairs)")
    path = os.path.join(best_dir(config.run_dir), record["checkpoint"])
  else:
    path = latest(checkpoint_dir(config.run_dir))
  if path is None:
    raise ConfigError(f"--run_dir={config.run_dir}: no checkpoint in "
                      f"{checkpoint_dir(config.run_dir)}; train it first with --mode=fixed")
  child = builders.build_child(config)
  restore(path, written=best, child=child)
  logging.info("restored %s", path)
  return child


@dataclasses.dataclass
class RestoredRun:
  """A run folder's trained networks: the head only where its checkpoint holds one."""
  config: RunConfig
  child: keras.Model
  head: keras.layers.Layer | None
  num_classes: int | None
  checkpoint: str


def load_run(path: str, flag: str) -> RestoredRun:
  """The latest child (and classification head, when saved) of the run folder `path`;
  ConfigError naming `flag` when it has no config.json or no checkpoint."""
  if not os.path.isfile(os.path.join(path, runlog.CONFIG)):
    raise ConfigError(f"{flag}={path}: not a run folder (no {runlog.CONFIG})")
  config = dataclasses.replace(spaces.load_config(os.path.join(path, runlog.CONFIG)),
                               run_dir=path)
  found = latest(checkpoint_dir(path))
  if found is None:
    raise ConfigError(f"{flag}={path}: the run has no checkpoint yet; train it first "
                      "(--mode=fixed)")
  child = builders.build_child(config)
  names = dict(tf.train.list_variables(found))
  head, num_classes = None, None
  shapes = [shape for name, shape in names.items()
            if name.startswith("head/") and "OPTIMIZER" not in name and len(shape) == 2]
  if shapes:
    num_classes = int(shapes[0][1])
    head = build_head(config.head, num_classes, config.model.embedding_dim)
    head(tf.zeros((1, config.model.embedding_dim)))
  restore(found, child=child, **({"head": head} if head is not None else {}))
  return RestoredRun(config, child, head, num_classes, found)


def initialize_child(child: keras.Model, source: str) -> str:
  """Loads the child weights of `source` (a run folder: its latest checkpoint; or a
  checkpoint prefix) into `child`, module by module key: modules the source lacks keep
  their initialisation. Returns the checkpoint path; ConfigError names --init_checkpoint."""
  path = latest(checkpoint_dir(source)) if os.path.isdir(source) else source
  if not path or not tf.io.gfile.exists(path + ".index"):
    raise ConfigError(f"--init_checkpoint={source}: no checkpoint there (a run folder with "
                      "checkpoints/, or a checkpoint prefix such as RUN/checkpoints/ckpt-3)")
  names = [name for name, _ in tf.train.list_variables(path)]
  if not any(name.startswith("child/") for name in names):
    raise ConfigError(f"--init_checkpoint={source}: {path} holds no child weights")
  try:
    tf.train.Checkpoint(child=child).restore(path).expect_partial()
  except (ValueError, tf.errors.InvalidArgumentError) as error:
    raise ConfigError(f"--init_checkpoint={source}: its weights do not fit this model (another "
                      f"--base_filters, --image_size or --embedding_dim?): {error}") from None
  logging.info("child initialised from %s", path)
  return path
