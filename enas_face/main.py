"""Command-line entry point: flags -> frozen config -> mode.

    python -m enas_face.main --flagfile=flags/demo.cfg --mode=fixed --run_dir=runs/demo
    python -m enas_face.main --mode=eval --run_dir=runs/demo
    python -m enas_face.main --mode=export --run_dir=runs/demo

Bad input (a flag, a file) ends with one line `error: ...` and exit code 2.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

from enas_face import flags as enas_flags
from enas_face.config import ConfigError, RunConfig

FLAGS = flags.FLAGS
USAGE_ERROR = 2


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(USAGE_ERROR)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(str(e))


def _prepare_run_dir(config: RunConfig) -> None:
  """Creates the run folder, refuses one holding a different network, saves flags+config."""
  os.makedirs(config.run_dir, exist_ok=True)
  config_path = os.path.join(config.run_dir, "config.json")
  if os.path.exists(config_path):
    previous = RunConfig.load(config_path)
    if (previous.arc, previous.model) != (config.arc, config.model):
      raise ConfigError(f"--run_dir={config.run_dir} holds a run of another network "
                        f"({previous.arc.to_string()!r}, {previous.model}); use a new --run_dir")
  config.save(config_path)
  with open(os.path.join(config.run_dir, "flags.txt"), "w") as f:
    f.write(enas_flags.flags_as_flagfile(FLAGS))


def _saved_run_config(config: RunConfig) -> RunConfig:
  """The run folder's own config, with this invocation's mode, export dir and any
  evaluation flag given explicitly on this command line."""
  saved = RunConfig.load(os.path.join(config.run_dir, "config.json"))
  overrides = {field: getattr(config.eval, field)
               for field, flag in enas_flags.EVAL_FLAGS.items() if FLAGS[flag].present}
  return dataclasses.replace(saved, mode=config.mode, run_dir=config.run_dir,
                             export_dir=config.export_dir,
                             eval=dataclasses.replace(saved.eval, **overrides))


def format_results(metrics: dict) -> str:
  """A short human-readable results table."""
  rows = [
      ("architecture", metrics.get("architecture", "")),
      ("verification accuracy (10-fold)",
       f"{metrics['verification_accuracy']:.4f} +- {metrics['verification_std']:.4f}"),
      ("PCA baseline verification accuracy",
       f"{metrics['pca_baseline_verification_accuracy']:.4f} +- "
       f"{metrics['pca_baseline_verification_std']:.4f}"),
      ("TAR @ FAR=1e-3", f"{metrics['tar_at_far_1e-3']:.4f}"),
      ("ROC AUC", f"{metrics['roc_auc']:.4f}"),
      ("identification top-1", f"{metrics['identification_top1']:.4f}"),
      ("params (trainable)", f"{metrics['params']:,}"),
      ("FLOPs (batch 1)", f"{metrics['flops']:,}"),
  ]
  for key, label in (("train_images_per_second", "training throughput (img/s)"),
                     ("train_wall_seconds", "training wall time (s)")):
    if key in metrics:
      rows.append((label, f"{metrics[key]:.1f}"))
  width = max(len(r[0]) for r in rows)
  return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def _write_metrics(config: RunConfig, metrics: dict) -> None:
  with open(os.path.join(config.run_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2, sort_keys=True)
  print("results (" + os.path.join(config.run_dir, "metrics.json") + "):")
  print(format_results(metrics))


def run(config: RunConfig) -> None:
  # Validate everything that can be wrong before the slow TensorFlow import.
  if config.mode == "fixed":
    _prepare_run_dir(config)
  else:
    config = _saved_run_config(config)

  import time

  import numpy as np
  import tensorflow as tf

  from enas_face import export
  from enas_face import fixed
  from enas_face.data import load_dataset

  tf.get_logger().setLevel("ERROR")  # TF's own INFO/deprecation chatter; ours stays
  export_metadata = {"architecture": config.arc.to_json(), "image_size": config.model.image_size}
  if config.mode == "fixed":
    logging.info("resolved flags:\n%s", enas_flags.flags_as_flagfile(FLAGS))
    dataset = load_dataset(config.data)
    tic = time.perf_counter()
    state = fixed.train(config, dataset)
    wall = time.perf_counter() - tic
    metrics = fixed.evaluate(config, dataset, state.child, state.head)
    history = fixed.read_history(config.run_dir)
    if len(history) > 1:  # the first epoch includes tracing
      metrics["train_images_per_second"] = float(
          np.median([h["images_per_second"] for h in history[1:]]))
    metrics["train_wall_seconds"] = float(sum(h["seconds"] for h in history))
    metrics["epochs"] = len(history)
    metrics["run_wall_seconds_this_invocation"] = wall
    _write_metrics(config, metrics)
    export.export_saved_model(state.child, config.model.image_size, config.resolved_export_dir,
                              metadata=export_metadata)
    print(f"SavedModel: {config.resolved_export_dir}")
    return

  child = fixed.restore_child(config)
  if config.mode == "eval":
    metrics = fixed.evaluate(config, load_dataset(config.data), child)
    _write_metrics(config, {**_previous_metrics(config), **metrics})
  elif config.mode == "export":
    path = export.export_saved_model(child, config.model.image_size, config.resolved_export_dir,
                                     metadata=export_metadata)
    print(f"SavedModel: {path}")


def _previous_metrics(config: RunConfig) -> dict:
  path = os.path.join(config.run_dir, "metrics.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected positional arguments {argv[1:]}; every option is a --flag")
  try:
    config = enas_flags.config_from_flags(FLAGS)
    run(config)
  except ConfigError as e:
    _fail(str(e))


def entry_point() -> None:
  """Console script `enas-face`."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  entry_point()
