"""Command lines of the benchmarks that drive `python -m enas_face.main`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
  """(the benchmark's own arguments, the flags after `--` that go to every run)."""
  if "--" not in argv:
    return list(argv), []
  cut = argv.index("--")
  return list(argv[:cut]), list(argv[cut + 1:])


def main_command(*args: str) -> list[str]:
  return [sys.executable, "-m", "enas_face.main", *args]


def run_step(command: list[str], done: str, log: str) -> float:
  """Runs `command` unless `done` exists; returns its wall seconds (0 when reused)."""
  if os.path.exists(done):
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
