"""Tests for the run files (runlog.py): JSONL logs that survive a torn write, atomic JSON."""
from __future__ import annotations

import json
import os

import pytest

from enas_face import runlog

RECORDS = [
    {"epoch": 1, "loss": 2.5, "arc": [0, 1, 2], "note": "line\nbreak and \u00e9"},
    {"epoch": 2, "loss": 1.25, "nested": {"acc": 0.5, "ok": True, "none": None}},
    {"epoch": 3, "loss": 0.75},
]


def leftovers(directory):
  """Temporary files left in `directory` by an atomic write."""
  return [name for name in os.listdir(directory) if name.endswith(".tmp")]


def test_append_read_round_trip(tmp_path):
  """Records appended in several calls read back in order, equal to what was written."""
  path = str(tmp_path / "log.jsonl")
  runlog.append(path, RECORDS[:2])
  runlog.append(path, [])
  runlog.append(path, RECORDS[2:])
  assert runlog.read(path) == RECORDS
  with open(path) as f:
    lines = f.read().split("\n")
  assert lines[-1] == "" and len(lines) == len(RECORDS) + 1  # one line each, newline-terminated


def test_read_missing_and_empty_append(tmp_path):
  """A missing log reads as []; appending no records creates no file."""
  path = str(tmp_path / "log.jsonl")
  assert runlog.read(path) == []
  runlog.append(path, [])
  assert not os.path.exists(path)


def test_read_drops_a_line_cut_mid_json(tmp_path):
  """A last line cut inside its JSON (no newline) is dropped."""
  path = str(tmp_path / "log.jsonl")
  runlog.append(path, RECORDS)
  with open(path, "a") as f:
    f.write(json.dumps({"epoch": 4, "loss": 0.5})[:9])
  assert runlog.read(path) == RECORDS


def test_read_drops_a_complete_looking_line_without_newline(tmp_path):
  """A last line that is valid JSON but lacks its newline was cut just before it: dropped."""
  path = str(tmp_path / "log.jsonl")
  runlog.append(path, RECORDS)
  with open(path, "a") as f:
    f.write(json.dumps({"epoch": 4, "loss": 0.5}))
  assert runlog.read(path) == RECORDS


def test_read_stops_at_an_invalid_line(tmp_path):
  """An invalid line and every line after it are dropped."""
  path = str(tmp_path / "log.jsonl")
  runlog.append(path, RECORDS[:1])
  with open(path, "a") as f:
    f.write('{"epoch": 2, "lo\n')
  runlog.append(path, RECORDS[1:])
  assert runlog.read(path) == RECORDS[:1]


def test_truncate_to_epoch_keeps_epochs_up_to_n(tmp_path):
  """truncate_to_epoch(N) rewrites the log with the records of epochs <= N, atomically."""
  path = str(tmp_path / "log.jsonl")
  records = [{"epoch": e, "sample": i} for e in range(1, 6) for i in range(2)]
  runlog.append(path, records)
  kept = runlog.truncate_to_epoch(path, 3)
  want = [r for r in records if r["epoch"] <= 3]
  assert kept == want
  assert runlog.read(path) == want
  assert leftovers(tmp_path) == []
  assert runlog.truncate_to_epoch(path, 0) == []
  assert runlog.read(path) == [] and os.path.exists(path)


def test_truncate_then_append_after_a_torn_line(tmp_path):
  """Resume: truncation drops the torn tail, so records appended next are readable."""
  path = str(tmp_path / "log.jsonl")
  runlog.append(path, RECORDS[:2])
  with open(path, "a") as f:
    f.write('{"epoch": 3, "lo')
  assert runlog.truncate_to_epoch(path, 2) == RECORDS[:2]
  runlog.append(path, RECORDS[2:])
  assert runlog.read(path) == RECORDS
  assert leftovers(tmp_path) == []


def test_truncate_missing_log_creates_nothing(tmp_path):
  """Truncating a log that does not exist returns [] and leaves no file."""
  path = str(tmp_path / "log.jsonl")
  assert runlog.truncate_to_epoch(path, 5) == []
  assert os.listdir(tmp_path) == []


def test_write_json_atomic_round_trip_and_overwrite(tmp_path):
  """write_json leaves no .tmp, reads back equal, and replaces an older file whole."""
  path = str(tmp_path / "metrics.json")
  first = {"acc": 0.5, "names": ["a", "b"], "nested": {"x": 1}}
  runlog.write_json(path, first)
  assert os.listdir(tmp_path) == ["metrics.json"]
  assert runlog.read_json(path) == first
  second = {"acc": 0.75}
  runlog.write_json(path, second)
  assert os.listdir(tmp_path) == ["metrics.json"]
  assert runlog.read_json(path) == second
  with open(path) as f:
    assert json.load(f) == second


def test_write_json_failure_keeps_the_old_file(tmp_path):
  """A write that fails while serialising leaves the previous content in place."""
  path = str(tmp_path / "metrics.json")
  runlog.write_json(path, {"acc": 0.5})
  with pytest.raises(TypeError):
    runlog.write_json(path, {"acc": object()})
  assert runlog.read_json(path) == {"acc": 0.5}


def test_write_text_atomic(tmp_path):
  """write_text writes the text, overwrites, and leaves no .tmp."""
  path = str(tmp_path / "table.md")
  runlog.write_text(path, "| a |\n")
  runlog.write_text(path, "| b |\n")
  with open(path) as f:
    assert f.read() == "| b |\n"
  assert leftovers(tmp_path) == []


def test_read_json_default(tmp_path):
  """read_json of a missing file gives the default (None unless given)."""
  path = str(tmp_path / "missing.json")
  assert runlog.read_json(path) is None
  assert runlog.read_json(path, default={}) == {}
  assert runlog.read_json(path, default=[1]) == [1]


@pytest.mark.parametrize("module,reader,filename", [
    ("search.loop", "read_log", "sampled_arcs.jsonl"),
    ("training.fixed", "read_history", "train_history.jsonl"),
])
def test_run_readers_survive_a_torn_last_line(tmp_path, module, reader, filename):
  """search.loop.read_log and training.fixed.read_history read RUN_DIR's log (under the name
  it has always had) and drop a torn last line."""
  import importlib
  read = getattr(importlib.import_module(f"enas_face.{module}"), reader)
  path = str(tmp_path / filename)
  runlog.append(path, RECORDS)
  with open(path, "a") as f:
    f.write('{"epoch": 4, "reward": 0.')
  assert read(str(tmp_path)) == RECORDS
  with open(path, "a") as f:
    f.write('5}')  # now complete-looking, still without its newline
  assert read(str(tmp_path)) == RECORDS


def run_file_names() -> dict[str, str]:
  """runlog's run-folder file names (constants whose value has an extension): value -> name."""
  return {value: name for name, value in vars(runlog).items()
          if name.isupper() and isinstance(value, str) and "." in value}


def test_run_file_names_are_spelled_in_runlog_only():
  """No module of the package, tool or bench spells a run file's name as a literal of its own:
  they join runlog's constants (a docstring naming the file is prose, not a literal)."""
  import ast  # pylint: disable=import-outside-toplevel
  import glob  # pylint: disable=import-outside-toplevel
  names = run_file_names()
  assert {"config.json", "metrics.json", "arcs_ranked.json", "search_summary.json",
          "sampled_arcs.jsonl", "trials.jsonl", "train_history.jsonl"} <= set(names)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  # Files of the same name that are not run files: an aligned dataset's settings.
  elsewhere = {("tools/align_dataset.py", "settings.json")}
  found = []
  for path in sorted(glob.glob(os.path.join(root, "enas_face", "**", "*.py"), recursive=True)
                     + glob.glob(os.path.join(root, "tools", "*.py"))
                     + glob.glob(os.path.join(root, "bench", "*.py"))):
    if path == runlog.__file__:
      continue
    with open(path, encoding="utf-8") as handle:
      tree = ast.parse(handle.read())
    found += [f"{os.path.relpath(path, root)}:{node.lineno}: {node.value!r} "
              f"(runlog.{names[node.value]})" for node in ast.walk(tree)
              if isinstance(node, ast.Constant) and node.value in names
              and (os.path.relpath(path, root), node.value) not in elsewhere]
  assert not found, "\n".join(found)
