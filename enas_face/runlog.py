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
