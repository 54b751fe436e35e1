"""Command lines of the benchmarks that drive `python -m enas_face.main`."""
from __future__ import annotations


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
  """(the benchmark's own arguments, the flags after `--` that go to every run)."""
  if "--" not in argv:
    return list(argv), []
  cut = argv.index("--")
  return list(argv[:cut]), list(argv[cut + 1:])
