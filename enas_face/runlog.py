"""Run files: JSONL logs and atomic JSON, the one writer of a run folder's records.

Crash safety, shared by search and fixed training:
- JSONL logs are appended line by line; a reader stops at the first line that
  is not a complete JSON object (a write cut by a crash) and drops it and
  everything after.
- Records are written before the checkpoint of their epoch; on resume
  `truncate` keeps only the records of checkpointed epochs, so a log has no gap
  and no duplicate whatever moment a crash hit.
- JSON artefacts (metrics.json, comparison.json, summaries, config.json) are
  written to a temporary file and renamed over the old one: a reader sees the
  old or the new file, never half of one.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable

# The names in a run folder (RUN_DIR/...), spelled here only: every writer and reader of a
# run folder joins these (tools, benches and docs name the same files).
CONFIG = "config.json"  # the resolved RunConfig (spaces.save_config / load_config)
FLAGFILE = "flags.txt"  # the resolved flags, in flagfile syntax
DATA_REPORT = "data_report.json"  # what the data reader kept and rejected
METRICS = "metrics.json"  # fixed / eval results (also in QUALITY_DIR/<net>/)
TEACHER_METRICS = "teacher_metrics.json"  # --mode=evaluate_teacher: the teacher on --pairs
COMPARISON = "comparison.json"  # --top_k > 1: the trained architectures side by side
COMPARISON_TABLE = "comparison.md"
TRAIN_HISTORY = "train_history.jsonl"  # fixed training: one record per epoch
BEST = "best.json"  # in BEST_DIR: the best epoch's set, metric, value and checkpoint
CLEANING_MANIFEST = "cleaning_manifest.json"  # a comprehensive recipe's data cleaning
SAMPLED_ARCS = "sampled_arcs.jsonl"  # search: every rewarded sample
TRIALS = "trials.jsonl"  # multi_trial search: every finished trial
DISTRIBUTIONS = "distributions.jsonl"  # differentiable search: the distributions per epoch
ARCS_RANKED = "arcs_ranked.json"  # search: the ranked architectures (--arc_file)
SEARCH_SUMMARY = "search_summary.json"
FINAL_CONFIG = "final_config.json"  # comprehensive search: the best recipe (--arc_file)
ACCURACY_VS_COST_PLOT = "accuracy_vs_cost.png"
DISTRIBUTIONS_PLOT = "distributions.png"
LATENCY_CACHE = "latency_cache.jsonl"  # --cost_model=measured, unless --latency_cache
TFLITE_LATENCY_CACHE = "tflite_latency_cache.jsonl"  # --cost_model=tflite
SETS_REPORT = "sets_report.json"  # in QUALITY_DIR: the --sets read
QUALITY_SETTINGS = "settings.json"  # in QUALITY_DIR/<net>/: what a resume must share
QUALITY_HISTORY = "history.jsonl"  # in QUALITY_DIR/<net>/: one record per epoch
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
TENSORBOARD_DIR = "tensorboard"
SAVED_MODEL_DIR = "saved_model"  # the default --export_dir
THRESHOLDS = "thresholds.json"  # in the export folder: the calibrated cosine thresholds
DATA_CACHE_DIR = "data_cache"  # the default --cache_dir
WORKERS_DIR = "workers"  # non-chief workers' scratch checkpoints
TRIALS_DIR = "trials"  # multi_trial: one fixed run per trial
CLEANING_DIR = "cleaning"  # comprehensive search: the cleaning proxy and its embeddings
QUALITY_DIR = "quality"  # --mode=quality: one folder per quality network


def write_bytes(path: str, data: bytes) -> None:
  """Atomic write: tmp file, flush + fsync, rename (a reader sees the old or the new file);
  a failed write removes the tmp file and leaves the old file as it was."""
  tmp = f"{path}.tmp"
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text(path: str, text: str) -> None:
  """Atomic text write (write_bytes of the UTF-8 text)."""
  write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj: Any) -> None:
  """Atomic JSON write (write_text of the indented, key-sorted JSON)."""
  write_text(path, json.dumps(obj, indent=2, sort_keys=True))


def read_json(path: str, default: Any = None) -> Any:
  """The JSON at `path`, or `default` if there is no file."""
  if not os.path.exists(path):
    return default
  with open(path) as f:
    return json.load(f)


def append(path: str, records: Iterable[dict]) -> None:
  """Appends one JSON line per record (flushed before returning)."""
  lines = "".join(json.dumps(r) + "\n" for r in records)
  if not lines:
    return
  with open(path, "a") as f:
    f.write(lines)
    f.flush()


def read(path: str) -> list[dict]:
  """Every complete record of a JSONL log; a torn line and what follows it are dropped."""
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      if not line.endswith("\n"):
        break  # the last write was cut before its newline
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        break
      if not isinstance(record, dict):
        break  # not one of our records: treated as damage, like a torn line
      records.append(record)
  return records


def truncate(path: str, keep: Callable[[dict], bool]) -> list[dict]:
  """Rewrites the log (atomically) with the readable records that `keep` accepts; returns them."""
  records = [r for r in read(path) if keep(r)]
  if os.path.exists(path):
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))
  return records


def truncate_to_epoch(path: str, last_epoch: int) -> list[dict]:
  """Keeps the records of epochs <= last_epoch (the last checkpointed one)."""
  return truncate(path, lambda r: r.get("epoch", 0) <= last_epoch)
