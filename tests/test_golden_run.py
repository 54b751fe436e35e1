"""The golden run: a fixed-seed tiny search and the top-1 fixed run of its ranking give the
numbers recorded before the package was reorganised into rooms (issue 24). Any change of
behaviour in the search, its reward, the controller, fixed training or evaluation moves them;
a change that is meant to move them records the run again (the JSON says how)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "data", "golden_run.json")


def _main(*args):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  result = subprocess.run([sys.executable, "-m", "enas_face.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-4000:]


def _read_jsonl(path):
  with open(path) as handle:
    return [json.loads(line) for line in handle if line.strip()]


@pytest.mark.slow
def test_tiny_search_and_top1_training_give_the_golden_numbers(tmp_path):
  with open(GOLDEN) as handle:
    golden = json.load(handle)
  flagfile = tmp_path / "golden.cfg"
  flagfile.write_text("\n".join(golden["flags"]) + "\n")
  search_dir, fixed_dir = tmp_path / "search", tmp_path / "fixed"
  _main(f"--flagfile={flagfile}", "--mode=search", f"--run_dir={search_dir}")
  _main(f"--flagfile={flagfile}", "--mode=fixed", f"--run_dir={fixed_dir}",
        f"--arc_file={search_dir / 'arcs_ranked.json'}", "--top_k=1")
  with open(search_dir / "arcs_ranked.json") as handle:
    ranking = json.load(handle)["architectures"]
  with open(fixed_dir / "metrics.json") as handle:
    metrics = json.load(handle)
  # Same encodings; rewards, counts and accuracies to 1e-6 (op determinism is on: runs on
  # this machine agree to the last bit, the tolerance only spares another CPU's kernels).
  assert_records(ranking, golden["ranking"])
  assert_records(_read_jsonl(search_dir / "sampled_arcs.jsonl"), golden["sampled"])
  assert_records([metrics], [golden["fixed"]])


def assert_records(found, expected):
  assert len(found) == len(expected)
  for record, want in zip(found, expected):
    for key, value in want.items():
      if isinstance(value, str):
        assert record[key] == value, key
      else:
        assert record[key] == pytest.approx(value, rel=1e-6), key
