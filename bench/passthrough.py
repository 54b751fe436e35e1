"""Command lines of the benchmarks that drive `python -m enas_face.main`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from enas_face import runlog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
  """(the benchmark's own arguments, the flags after `--` that go to every run)."""
  if "--" not in argv:
    return list(argv), []
  cut = argv.index("--")
  return list(argv[:cut]), list(argv[cut + 1:])


def main_command(*args: str) -> list[str]:
  return [sys.executable, "-m", "enas_face.main", *args]


def run_step(command: list[str], done: str | None, log: str) -> float:
  """Runs `command` unless `done` exists (None: always); returns its wall seconds (0 when
  reused)."""
  if done is not None and os.path.exists(done):
    return 0.0
  os.makedirs(os.path.dirname(log), exist_ok=True)
  print(" ".join(command), flush=True)
  tic = time.perf_counter()
  with open(log, "a") as handle:
    result = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
  if result.returncode:
    raise SystemExit(f"failed (exit {result.returncode}); see {log}")
  return time.perf_counter() - tic


def read_json(path: str, default=None):
  if not os.path.exists(path):
    return default
  with open(path) as handle:
    return json.load(handle)


def read_flagfile(path: str) -> dict:
  """--name=value lines of a flagfile (comments and blank lines skipped); a nested
  --flagfile=F line is read in its place (F relative to the repository root, where the
  benchmarks run enas_face.main), and later lines override earlier ones, as in absl."""
  values = {}
  with open(path) as handle:
    for line in handle:
      line = line.strip()
      if line.startswith("--flagfile="):
        nested = line.split("=", 1)[1]
        values.update(read_flagfile(nested if os.path.isabs(nested)
                                    else os.path.join(ROOT, nested)))
      elif line.startswith("--") and "=" in line:
        name, value = line[2:].split("=", 1)
        values[name] = value
  return values


def code_version() -> str:
  """The repository's HEAD commit ("" outside a git checkout): a result's provenance."""
  return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                        check=False).stdout.strip()


def run_key(command: list[str], roots: tuple[str, ...] = ()) -> str:
  """A run's identity across machines and clones: its arguments after the interpreter,
  without --run_dir, each path reduced to its part under the repository (the flagfile) or
  under one of `roots` (the benchmark's runs root: another step's output), else to its base
  name (a teacher file elsewhere; a dataset's "tfrecord:/path" keeps its scheme), and the
  flagfile's own lines appended (its contents, not its path, decide the run)."""
  parts = []
  for arg in command[1:]:
    if arg.startswith("--run_dir="):
      continue
    name, sep, value = arg.partition("=")
    scheme, path = "", value
    if sep and not os.path.isabs(value) and ":" in value:  # --dataset=tfrecord:/a/path
      head, _, tail = value.partition(":")
      if os.path.isabs(tail):
        scheme, path = head + ":", tail
    if sep and os.path.isabs(path):
      under = [r for r in (ROOT, *roots) if path.startswith(r.rstrip(os.sep) + os.sep)]
      value = scheme + (os.path.relpath(path, max(under, key=len)) if under
                        else os.path.basename(path.rstrip(os.sep)))
      if name == "--flagfile" and os.path.exists(path):
        value += "{" + ",".join(f"{k}={v}" for k, v in sorted(read_flagfile(path).items())) + "}"
    parts.append(f"{name}{sep}{value}")
  return " ".join(parts)


class RunRecords:
  """A benchmark's committed memory (bench/data/*.jsonl, one record per finished run, keyed
  by run_key): run folders are scratch that a new machine does not have; a run whose key is
  recorded is not run again, and its row is rebuilt from the record."""

  def __init__(self, path: str, roots: tuple[str, ...] = ()):
    self.path, self.roots, self._runlog = path, tuple(roots), runlog
    self.records = {r["key"]: r for r in runlog.read(path)}

  def get(self, command: list[str]) -> dict | None:
    return self.records.get(run_key(command, self.roots))

  def add(self, command: list[str], record: dict) -> dict:
    """Appends the run's record, with its key and the code version (HEAD) it ran with: a
    record is not invalidated by later code, so its provenance stays with it."""
    record = dict(record, key=run_key(command, self.roots), code_version=code_version())
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    self._runlog.append(self.path, [record])
    self.records[record["key"]] = record
    return record

  def summarised(self, command: list[str], done: str | None, log: str, summary,
                 name: str) -> dict:
    """The run's record: recorded, else made by running it (run_step: a finished folder, one
    with `done`, is only read; None: always run) and recorded as summary(the folder of
    `done`, or None), with its `name`."""
    record = self.get(command)
    if record is None:
      run_step(command, done, log)
      folder = os.path.dirname(done) if done is not None else None
      record = self.add(command, dict(summary(folder), name=name))
    return record

  def run(self, command: list[str], done: str, log: str, keep: tuple[str, ...] = ()) -> float:
    """run_step with a memory: a recorded run is not run again, and its `keep` files (small
    JSON or JSONL results in its run folder: metrics, config, a search's ranking) are written back
    into a folder that lacks them, so the benchmark reads them as from a finished run; a run
    that finishes is recorded with those files. Returns run_step's seconds (0 when reused)."""
    run_dir = os.path.dirname(done)
    record = self.get(command)
    if record is not None:
      os.makedirs(run_dir, exist_ok=True)
      for name, content in record["files"].items():
        path = os.path.join(run_dir, name)
        if not os.path.exists(path):
          if name.endswith(".jsonl"):
            self._runlog.append(path, content)
          else:
            self._runlog.write_json(path, content)
      return 0.0
    seconds = run_step(command, done, log)
    files = {}
    for name in keep:
      path = os.path.join(run_dir, name)
      if os.path.exists(path):
        files[name] = self._runlog.read(path) if name.endswith(".jsonl") else read_json(path)
    self.add(command, {"files": files})
    return seconds
