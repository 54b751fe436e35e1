"""Command-line conventions shared by `enas_face.main` and the tools: bad input ends
with one line `error: ...` on stderr and exit code 2 (no traceback)."""
from __future__ import annotations

import sys

from absl import flags

USAGE_ERROR = 2


def fail(message: str, code: int = USAGE_ERROR) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing whose errors (unknown flag, bad value, missing flagfile) `fail`."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))
