"""Command-line entry point: flags -> frozen config -> mode.

    python -m enas_face.main --flagfile=flags/demo.cfg --mode=search --run_dir=runs/search
    python -m enas_face.main --flagfile=flags/demo.cfg --mode=fixed \\
        --arc_file=runs/search/arcs_ranked.json --top_k=3 --run_dir=runs/top3
    python -m enas_face.main --flagfile=flags/demo.cfg --mode=fixed --run_dir=runs/demo
    python -m enas_face.main --mode=eval --run_dir=runs/demo
    python -m enas_face.main --mode=export --run_dir=runs/demo

Bad input (a flag, a file) ends with one line `error: ...` and exit code 2.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from absl import app
from absl import flags
from absl import logging

from enas_face import cli
from enas_face import runlog
from enas_face import flags as enas_flags
from enas_face.config import (DIFFERENTIABLE, PHOTO_MODES, ConfigError, DistillConfig,
                              EvalConfig, RunConfig, SearchConfig, flag_of)
from enas_face.evaluation import sets as set_ops
from enas_face import spaces

FLAGS = flags.FLAGS
NAN_LOSS_EXIT = 3


def _prepare_run_dir(config: RunConfig, chief: bool = True) -> None:
  """Creates the run folder, refuses one holding a different network, saves flags+config
  (the chief only, under a multi-worker strategy)."""
  os.makedirs(config.run_dir, exist_ok=True)
  config_path = os.path.join(config.run_dir, runlog.CONFIG)
  if os.path.exists(config_path):
    previous = spaces.load_config(config_path)
    if previous.mode in ("fixed", "search") and previous.mode != config.mode:
      raise ConfigError(f"--run_dir={config.run_dir} holds a --mode={previous.mode} run; use a "
                        "new --run_dir")
    if (previous.arc, previous.model) != (config.arc, config.model):
      raise ConfigError(f"--run_dir={config.run_dir} holds a run of another network "
                        f"({spaces.of(previous.model).to_string(previous.arc)!r}, {previous.model}); "
                        "use a new --run_dir")
    if previous.data != config.data:
      raise ConfigError(f"--run_dir={config.run_dir} was trained on other data "
                        f"({previous.data}); use a new --run_dir")
    changed = config.head.changed_flags(previous.head)
    if changed:
      raise ConfigError(
          f"--run_dir={config.run_dir} was trained with another head or loss: "
          + ", ".join(f"--{name}={getattr(previous.head, name)!r} there, "
                      f"{getattr(config.head, name)!r} now" for name in changed)
          + "; use a new --run_dir (or the run's own settings to resume it)")
    if config.mode in ("fixed", "search") and previous.distill != config.distill:
      raise ConfigError(f"--run_dir={config.run_dir} was trained with other distillation "
                        "settings (" + ", ".join(
                            f"--{flag_of(DistillConfig, field.name)}="
                            f"{getattr(previous.distill, field.name)!r}"
                            for field in dataclasses.fields(DistillConfig)
                            if getattr(previous.distill, field.name)
                            != getattr(config.distill, field.name))
                        + " there); use a new --run_dir (or the run's own settings to resume "
                        "it)")
    same_search = dataclasses.replace(previous.search, latency_cache=config.search.latency_cache)
    if config.mode == "search" and same_search != config.search:
      changed = [f"--{flag_of(SearchConfig, field.name)}={getattr(previous.search, field.name)!r}"
                 f" there, {getattr(config.search, field.name)!r} now"
                 for field in dataclasses.fields(config.search)
                 if getattr(same_search, field.name) != getattr(config.search, field.name)]
      raise ConfigError(f"--run_dir={config.run_dir} holds a search with other settings ("
                        + "; ".join(changed) + "); use a new --run_dir")
  if not chief:
    return
  spaces.save_config(config, config_path)
  runlog.write_text(os.path.join(config.run_dir, runlog.FLAGFILE),
                    enas_flags.flags_as_flagfile(FLAGS))


def _saved_run_config(config: RunConfig) -> RunConfig:
  """The run folder's own config, with this invocation's mode, export dir and formats, any
  evaluation flag given explicitly on this command line, and --pairs when given (a trained
  run verified on other pair sets: `--mode=eval --pairs=...`)."""
  saved = spaces.load_config(os.path.join(config.run_dir, runlog.CONFIG))
  overrides = {field: getattr(config.eval, field) for field in enas_flags.EVAL_OVERRIDES
               if FLAGS[flag_of(EvalConfig, field)].present}
  data = saved.data
  if FLAGS["pairs"].present:
    data = dataclasses.replace(saved.data, pairs=config.data.pairs)
  return dataclasses.replace(saved, mode=config.mode, run_dir=config.run_dir,
                             export_dir=config.export_dir, export_format=config.export_format,
                             eval=dataclasses.replace(saved.eval, **overrides), sets=config.sets,
                             data=data)


# How this invocation reads --sets frames (not the run's training data).
SET_READING_FIELDS = ("align", "face_policy", "min_face_confidence", "detect_padding",
                      "detect_retries", "on_no_face", "max_image_pixels", "cache_dir")


def _load_sets(config: RunConfig, invocation: RunConfig):
  """The --sets of this invocation at the run's image size, split into (training, held-out)
  identities; what was excluded goes to RUN_DIR/quality/sets_report.json."""
  from enas_face.data import frame_sets
  reading = dataclasses.replace(config.data, **{name: getattr(invocation.data, name)
                                                for name in SET_READING_FIELDS})
  seed = config.sets.resolved_seed(config.data.seed)
  sets = frame_sets.load_sets(config.sets, reading, seed)
  train, heldout = frame_sets.split_sets(sets, config.sets, seed)
  report = dict(sets.report, sets=config.sets.sets, num_sets=sets.num_sets,
                training_sets=train.num_sets, training_identities=train.num_identities,
                heldout_sets=heldout.num_sets, heldout_identities=heldout.num_identities)
  report_path = os.path.join(config.run_dir, runlog.QUALITY_DIR, runlog.SETS_REPORT)
  os.makedirs(os.path.dirname(report_path), exist_ok=True)
  runlog.write_json(report_path, report)
  excluded = report.get("excluded_frames", 0)
  print(f"sets: {sets.num_sets} sets of {sets.num_identities} identities ({len(sets.frames)} "
        f"frames, {excluded} excluded); training {train.num_sets} sets of "
        f"{train.num_identities} identities, held out {heldout.num_sets} sets of "
        f"{heldout.num_identities} ({report_path})")
  return train, heldout


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
  rows += pair_set_rows(metrics)
  if "teacher" in metrics:
    rows += teacher_rows(metrics["teacher"])
  for key, label in (("train_images_per_second", "training throughput (img/s)"),
                     ("train_wall_seconds", "training wall time (s)")):
    if key in metrics:
      rows.append((label, f"{metrics[key]:.1f}"))
  width = max(len(r[0]) for r in rows)
  return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


PROTOCOL_KEYS = (("exact", "verification_accuracy", "verification_std"),
                 ("insightface", "insightface_verification_accuracy",
                  "insightface_verification_std"))


def pair_set_rows(metrics: dict) -> list[tuple[str, str]]:
  """One row per pair set and protocol: accuracy +- std (10-fold), and VAL@FAR for insightface."""
  rows, sets = [], metrics.get("pair_sets", {})
  for name in metrics.get("pair_set_names", list(sets)):
    if name not in sets:
      continue
    report = sets[name]
    for protocol, key, std in PROTOCOL_KEYS:
      if key not in report:
        continue
      value = f"{report[key]:.4f} +- {report[std]:.4f}"
      val = [k for k in report if k.startswith("insightface_val_at_far_")]
      if protocol == "insightface" and val:
        value += f"  (VAL@FAR={val[0][len('insightface_val_at_far_'):]} {report[val[0]]:.4f})"
      rows.append((f"pairs {name} [{report['num_pairs']}] {protocol}", value))
  return rows


def _write_metrics(config: RunConfig, metrics: dict) -> None:
  path = os.path.join(config.run_dir, runlog.METRICS)
  runlog.write_json(path, metrics)
  print(f"results ({path}):")
  print(format_results(metrics))
  if "set_verification" in metrics:
    print(set_ops.format_set_report(metrics["set_verification"]))


def run(config: RunConfig) -> None:
  # Validate everything that can be wrong before the slow TensorFlow import.
  chief = True
  if config.distill.teacher and config.mode in ("fixed", "search", "evaluate_teacher"):
    from enas_face.data import teacher_files
    if teacher_files.teacher_kind(config.distill.teacher) == "dlib":
      raise teacher_files.dlib_needs_the_tool(config.distill.teacher)
  if config.mode == "evaluate_teacher":
    os.makedirs(config.run_dir, exist_ok=True)
  elif config.mode in ("fixed", "search"):
    if config.distribution_strategy == "multi_worker":
      from enas_face import distribute  # TF_CONFIG is checked before the slow start
      chief = distribute.cluster_role()[0]
    _prepare_run_dir(config, chief)
  else:
    invocation, config = config, _saved_run_config(config)

  import keras
  import tensorflow as tf

  from enas_face import distribute
  from enas_face.training import fixed
  from enas_face.training import checkpoints

  tf.get_logger().setLevel("ERROR")  # TF's own INFO/deprecation chatter; ours stays
  logging.info("resolved flags:\n%s", enas_flags.flags_as_flagfile(FLAGS))
  keras.utils.set_random_seed(config.train.seed)  # weight init, dropout, DropBlock
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  if config.mode == "evaluate_teacher":
    _evaluate_teacher(config)
    return
  placement = (distribute.make_placement(config.distribution_strategy, config.num_replicas)
               if config.mode in ("fixed", "search") else distribute.make_placement("default"))
  if config.mode == "search":
    from enas_face.search import loop as search
    summary = search.search(config, _load_dataset(config, placement.is_chief), placement)
    if not placement.is_chief:
      return
    print(f"search results ({config.run_dir}):")
    print(format_search_summary(summary, config.run_dir))
    return
  if config.mode == "fixed":
    dataset = _load_dataset(config, placement.is_chief)
    if not config.candidate_arcs:
      _train_fixed(config, dataset, placement)
      return
    rows = []
    for rank, arc in enumerate(config.candidate_arcs, 1):
      sub = dataclasses.replace(config, arc=arc, run_dir=os.path.join(config.run_dir, f"top{rank}"),
                                candidate_arcs=(), top_k=1, export_dir="")
      _prepare_run_dir(sub, placement.is_chief)
      encoding = spaces.of(config.model).to_string(arc)
      print(f"== top {rank} of {len(config.candidate_arcs)}: {encoding}")
      rows.append({"rank": rank, "arc": encoding,
                   **_train_fixed(sub, dataset, placement)})
    if placement.is_chief:
      _write_comparison(config, rows)
    return

  child = checkpoints.restore_child(config)
  if config.mode == "quality":
    _train_quality(config, invocation, child)
  elif config.mode == "eval":
    metrics = fixed.evaluate(config, _load_dataset(config), child)
    if config.sets.aggregation:
      from enas_face.training import set_quality as quality
      _, heldout = _load_sets(config, invocation)
      metrics["set_verification"] = quality.evaluate(config, child, heldout,
                                                     config.sets.aggregation)
    _write_metrics(config, {**_previous_metrics(config), **metrics})
  elif config.mode == "export":
    _export(config, child)
    if config.sets.aggregation:
      _export_set_model(config, child, config.sets.aggregation[0])


def _evaluate_teacher(config: RunConfig) -> None:
  """--mode=evaluate_teacher: --distill_from's verification of every --pairs set through the
  student's evaluator (teachers.pair_report) -> RUN_DIR/teacher_metrics.json."""
  from enas_face.training import teachers
  dataset = _load_dataset(config)
  teacher = teachers.load_teacher(config.distill.teacher, "--distill_from",
                                  config.distill.input_mean, config.distill.input_std)
  report = teachers.pair_report(teacher, dataset.pair_sets, config.eval)
  path = os.path.join(config.run_dir, runlog.TEACHER_METRICS)
  runlog.write_json(path, report)
  print(f"teacher {report['teacher']} ({report['teacher_kind']}) on the pairs ({path}):")
  print("\n".join(f"  {name}  {value}" for name, value in teacher_rows(report)))


def teacher_rows(report: dict) -> list[tuple[str, str]]:
  """pair_set_rows of a teacher report, and the sets it could not verify (missing images)."""
  rows = pair_set_rows({"pair_sets": {name: r for name, r in report["pair_sets"].items()
                                      if "missing_images" not in r},
                        "pair_set_names": report["pair_set_names"]})
  rows += [(f"pairs {name}", f"not verified: {r['missing_images']} of {r['num_images']} "
                             "images have no teacher embedding")
           for name, r in report["pair_sets"].items() if "missing_images" in r]
  return [(f"teacher {name}", value) for name, value in rows]


def _train_quality(config: RunConfig, invocation: RunConfig, child) -> None:
  """--mode=quality: trains --quality_net on the frozen embedder, then verifies the held-out
  sets with mean, best and that network's pooling (RUN_DIR/quality/<net>/metrics.json)."""
  from enas_face.training import set_quality as quality
  train_sets, heldout = _load_sets(config, invocation)
  net = config.sets.quality_net
  model = quality.train(config, child, train_sets)
  report = quality.evaluate(config, child, heldout, ("mean", "best", net), {net: model})
  path = os.path.join(quality.quality_dir(config.run_dir, net), runlog.METRICS)
  runlog.write_json(path, report)
  print(f"set verification ({path}):")
  print(set_ops.format_set_report(report))


def _export_set_model(config: RunConfig, child, method: str) -> None:
  """EXPORT_DIR/set_<method>/: frames uint8 [N, S, S, 3] -> one unit set embedding."""
  from enas_face.training import set_quality as quality
  net_name = quality.scoring_net(method, quality.trained_nets(config.run_dir))
  net = None if net_name is None else quality.restore_net(
      config, net_name, child.embed_with_features(
          np.zeros((1,) + (config.model.image_size,) * 2 + (3,), np.float32))[1].shape[-1])
  out = os.path.join(config.resolved_export_dir, f"set_{method}")
  quality.export_set_model(child, method, net, out, dict(
      _export_metadata(config), aggregation=method, quality_net=net_name,
      signature={"input": "frames uint8 [N, S, S, 3] (one set)",
                 "outputs": "set_embedding [D] (unit), frame_scores [N], frame_weights [N]"}))
  print(f"set SavedModel ({method}): {out}")


def _load_dataset(config: RunConfig, chief: bool = True):
  """The run's dataset; what the reader kept and rejected goes to RUN_DIR/data_report.json."""
  from enas_face.data import load_dataset
  dataset = load_dataset(config.data)
  if dataset.report and chief:
    runlog.write_json(os.path.join(config.run_dir, runlog.DATA_REPORT), dataset.report)
    flipped = dataset.report.get("label_noise")
    if flipped:
      print(f"data: --label_noise: {len(flipped['label_noise_indices'])} of {len(dataset.train)} "
            "training labels flipped (the truth in RUN_DIR/data_report.json: label_noise)")
    extra = dataset.report.get("unlabelled")
    if extra:
      print(f"data: --unlabelled: {extra['images']} images for the distillation terms ("
            + "; ".join(f"{s['source']}: {s['kept']} of {s['read']}" for s in extra["sources"])
            + "; what was left out and why in RUN_DIR/data_report.json: unlabelled)")
    noise = dataset.report.get("synthetic_noise")
    if noise:
      print(f"data: injected noise: {len(noise['label_noise_indices'])} training images with a "
            f"wrong identity, {len(noise['outlier_indices'])} outliers, "
            f"{noise['near_duplicates']} near-duplicate identities (RUN_DIR/data_report.json)")
      return dataset
    rejects = dataset.report.get("num_rejects", 0)
    print(f"data: {dataset.num_classes} training identities, {len(dataset.train)} training "
          f"images, pairs: " + ", ".join(f"{name} {len(p)}" for name, p in
                                         dataset.pair_sets.items())
          + f"; {rejects} rejected images "
          f"(RUN_DIR/data_report.json)")
  return dataset


def _export_metadata(config: RunConfig) -> dict:
  return {"search_space": config.model.search_space,
          "architecture": spaces.of(config.model).to_json(config.arc),
          "image_size": config.model.image_size}


REPRESENTATIVE_IMAGES = 100  # int8 calibration: training images of the run
CHECK_IMAGES = 64  # parity of each TFLite/ONNX file against the SavedModel: the run's pair images


def _export(config: RunConfig, child, dataset=None) -> None:
  """Writes each --export_format into the export folder: the SavedModel (replacing the folder),
  the thresholds calibrated on the run's primary pairs (thresholds.json), then the TFLite and
  ONNX files, each checked against the SavedModel's function
  (export.export_tflite, export_onnx) on CHECK_IMAGES pair images and on the run's pairs; int8
  is calibrated on REPRESENTATIVE_IMAGES training images (both drawn with the data seed)."""
  import numpy as np

  from enas_face import export

  out, size = config.resolved_export_dir, config.model.image_size
  metadata = _export_metadata(config)
  if "saved_model" in config.export_format:
    export.export_saved_model(child, size, out, metadata=metadata)
    print(f"SavedModel: {out}")
  dataset = dataset or _load_dataset(config)
  pair_set = next(iter(dataset.pair_sets))
  calibration = export.export_thresholds(child, size, out, dataset.pairs, pair_set)
  print(f"thresholds: {os.path.join(out, runlog.THRESHOLDS)} (on the {pair_set} pairs: "
        f"best accuracy {calibration['best_accuracy']['accuracy']:.4f} at cosine > "
        f"{calibration['best_accuracy']['threshold']:.4f}; FAR 1e-3 at > "
        f"{calibration['far_1e-3']['threshold']:.4f})")
  formats = [f for f in config.export_format if f in export.EXPORT_FILES]
  if not formats:
    return
  rng = np.random.default_rng(config.data.seed)

  def draw(images, count):
    return images[np.sort(rng.choice(len(images), min(count, len(images)), replace=False))]

  representative = draw(dataset.train_sample.images, REPRESENTATIVE_IMAGES)
  check = draw(dataset.pairs.images, CHECK_IMAGES)
  os.makedirs(out, exist_ok=True)
  for name in formats:
    path = os.path.join(out, export.EXPORT_FILES[name])
    if name == "onnx":
      report = export.export_onnx(child, size, path, check_images=check, pairs=dataset.pairs,
                                  metadata={**metadata, "format": name})
    else:
      quantization = export.TFLITE_FORMATS[name]
      report = export.export_tflite(
          child, size, path, quantization,
          representative_images=representative if quantization == "int8" else None,
          check_images=check, pairs=dataset.pairs, metadata={**metadata, "format": name})
    parity, accuracy = report["parity"], report["verification"]
    line = (f"{name}: {path} ({report['bytes']:,} bytes); against the SavedModel on "
            f"{parity['num_images']} pair images: max |diff| {parity['max_abs_diff']:.2e}, "
            f"cosine mean {parity['mean_cosine']:.6f} min {parity['min_cosine']:.6f}; "
            f"verification accuracy on {accuracy['num_pairs']} pairs "
            f"{accuracy['accuracy_float']:.4f} -> {accuracy['accuracy_converted']:.4f} "
            f"({accuracy['accuracy_change']:+.4f}); {export.report_path(path)}")
    print(line)


def _train_fixed(config: RunConfig, dataset, placement) -> dict:
  """Trains (or resumes), evaluates and exports one architecture; returns its metrics
  (the chief; other workers only train and return {})."""
  import time

  import numpy as np

  from enas_face.costs import factory as cost_factory
  from enas_face.training import fixed
  from enas_face.costs import latency

  tic = time.perf_counter()
  state = fixed.train(config, dataset, placement)
  wall = time.perf_counter() - tic
  if not placement.is_chief:
    return {}
  # The trained data and head: a comprehensive recipe's cleaned split and its loss.
  metrics = fixed.evaluate(state.config, state.dataset, state.child, state.head)
  if state.distillation is not None:  # the teacher on the same pairs, the same evaluator
    from enas_face.training import teachers
    metrics["teacher"] = teachers.pair_report(state.distillation.teacher,
                                              state.dataset.pair_sets, config.eval)
  if "cleaning" in state.dataset.report:
    metrics["cleaning"] = state.dataset.report["cleaning"]
  history = fixed.read_history(config.run_dir)
  if len(history) > 1:  # the first epoch includes tracing
    metrics["train_images_per_second"] = float(
        np.median([h["images_per_second"] for h in history[1:]]))
  metrics["train_wall_seconds"] = float(sum(h["seconds"] for h in history))
  metrics["epochs"] = len(history)
  metrics["run_wall_seconds_this_invocation"] = wall
  stats = latency.LatencyMeter(config.model)(config.arc)  # built through the run's space
  metrics["latency_ms"], metrics["latency_cv"] = stats.median_ms, stats.cv
  if config.search.cost_model != "measured":  # the run's own cost model too
    cost_model = cost_factory.from_config(config)
    metrics.update(cost=cost_model(config.arc), cost_unit=cost_model.unit,
                   cost_model=cost_model.name)
  _write_metrics(config, metrics)
  _export(config, state.child, dataset)
  return metrics


COMPARISON_COLUMNS = (("rank", "rank", "{}"), ("arc", "architecture", "{}"),
                      ("val_classification_accuracy", "val acc", "{:.4f}"),
                      ("verification_accuracy", "verification acc", "{:.4f}"),
                      ("verification_std", "+-", "{:.4f}"),
                      ("latency_ms", "latency ms", "{:.2f}"), ("params", "params", "{:,}"),
                      ("flops", "FLOPs", "{:,}"))


def _write_comparison(config: RunConfig, rows: list[dict]) -> None:
  """comparison.json and comparison.md: the top-k architectures trained from scratch."""
  runlog.write_json(os.path.join(config.run_dir, runlog.COMPARISON), rows)
  columns = COMPARISON_COLUMNS
  sets = rows[0].get("pair_sets", {}) if rows else {}
  for name in rows[0].get("pair_set_names", list(sets)) if rows else ():
    for protocol, key, _ in PROTOCOL_KEYS:
      if key in sets[name]:
        columns += ((("pair_sets", name, key), f"{name} {protocol}", "{:.4f}"),)
  if rows and "cost" in rows[0]:  # a cost model other than measured latency
    columns += (("cost", f"{rows[0]['cost_model']} cost ({rows[0]['cost_unit']})", "{:.4g}"),)
  header = "| " + " | ".join(label for _, label, _ in columns) + " |"
  lines = [header, "|" + "---|" * len(columns)]
  for row in rows:
    values = [_lookup(row, key) for key, _, _ in columns]
    lines.append("| " + " | ".join("n/a" if value is None else fmt.format(value)
                                   for value, (_, _, fmt) in zip(values, columns)) + " |")
  table = "\n".join(lines) + "\n"
  path = os.path.join(config.run_dir, runlog.COMPARISON_TABLE)
  runlog.write_text(path, table)
  print(f"top-{len(rows)} architectures trained from scratch ({path}):")
  print(table)


def _lookup(row: dict, key):
  """row[key], or row[k0][k1]... for a tuple key; None when missing."""
  for part in key if isinstance(key, tuple) else (key,):
    if not isinstance(row, dict) or part not in row:
      return None
    row = row[part]
  return row


def _number(value, form: str = "{:.4g}") -> str:
  return "n/a" if value is None else form.format(value)


def format_search_summary(summary: dict, run_dir: str) -> str:
  if summary.get("strategy") == DIFFERENTIABLE:
    best = summary["best"]
    rows = [("space / strategy", f"{summary['space']} / differentiable (TAS-style)"),
            ("epochs", summary["epochs"]),
            ("teacher", summary["teacher"] or "none"),
            ("argmax architecture", best["description"]),
            ("FLOPs / target", f"{best['flops']:,} / {summary['cost_target']:,.0f}"),
            ("parameters", f"{best['params']:,}"),
            ("supernet FLOPs", f"{summary['supernet_flops']:,}"),
            ("distributions", summary["plot"]),
            ("ranked architecture", os.path.join(run_dir, runlog.ARCS_RANKED))]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)
  rows = [("space / strategy / sampler", f"{summary['search_space']} / {summary['strategy']} / "
                                          f"{summary['controller']}"),
          ("epochs", summary["epochs"]),
          ("rewarded samples / distinct", f"{summary['rewarded_samples']} / "
                                          f"{summary['distinct_samples']}"),
          (f"final samples: mean / best {summary['reward_metric']}",
           f"{_number(summary['final_score_mean'], '{:.4f}')} / "
           f"{_number(summary['final_score_best'], '{:.4f}')}"),
          ("final samples over the budget (not ranked)", summary["final_over_budget"]),
          (f"final samples: mean cost ({summary['cost_unit']})",
           _number(summary["final_cost_mean"])),
          ("final samples: mean reward", _number(summary["final_reward_mean"], "{:.4f}")),
          ("cost", summary["cost_description"]),
          ("ranked architectures", os.path.join(run_dir, runlog.ARCS_RANKED))]
  width = max(len(r[0]) for r in rows)
  return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def _previous_metrics(config: RunConfig) -> dict:
  return runlog.read_json(os.path.join(config.run_dir, runlog.METRICS), default={})


def _run_photos() -> None:
  """--mode=embed|verify|identify (recognition/commands.py); its errors name the file."""
  config = enas_flags.photo_config_from_flags(FLAGS)
  from enas_face.recognition import commands
  try:
    commands.run(config)
  except commands.ERRORS as e:
    raise ConfigError(str(e)) from e


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected positional arguments {argv[1:]}; every option is a --flag")
  try:
    if FLAGS.mode in PHOTO_MODES:
      _run_photos()
    else:
      run(enas_flags.config_from_flags(FLAGS))
  except ConfigError as e:
    cli.fail(str(e))
  except FloatingPointError as e:  # NaN/inf loss: the last good checkpoint is kept
    cli.fail(str(e), NAN_LOSS_EXIT)


def entry_point() -> None:
  """Console script `enas-face`."""
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  entry_point()
