"""Tests for the latency meter (tiny configs; a measurement takes well under a second)."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest

from enas_face.spaces import enas_macro
from enas_face.config import ModelConfig
from enas_face.costs.latency import LatencyMeter, LatencyStats

TINY = ModelConfig(image_size=16, base_filters=4, embedding_dim=8)
L = TINY.num_layers
ARC_A = enas_macro.default_architecture(L)
ARC_B = enas_macro.Architecture((3,) * L, tuple((0,) * i for i in range(L)))  # maxpool, no skips
ARC_BIG = enas_macro.Architecture((1,) * L, tuple((1,) * i for i in range(L)))  # sep5x5, all skips


def _record(arc, config=TINY, median=1.0):
  stats = LatencyStats(median, median, 0.1, median - 0.2, median + 0.5, 3)
  return json.dumps({"arc": arc.to_string(), "stats": stats.to_json(),
                     "model": dataclasses.asdict(config)}) + "\n"


def test_stats_fields_are_consistent():
  meter = LatencyMeter(TINY, warmup=1, repeats=3)
  stats = meter(ARC_A)
  assert stats.repeats == 3
  assert 0 < stats.min_ms <= stats.median_ms <= stats.max_ms
  assert stats.min_ms <= stats.mean_ms <= stats.max_ms
  assert stats.std_ms >= 0 and math.isfinite(stats.cv)
  assert meter.measured == 1 and meter.cached_hits == 0
  assert set(meter.last_timing) == {"build_s", "trace_s", "warmup_s", "timed_s", "total_s"}
  assert meter.measure_seconds >= meter.last_timing["timed_s"] > 0


def test_second_call_is_cached():
  meter = LatencyMeter(TINY, warmup=1, repeats=3)
  first = meter(ARC_A)
  again = meter(enas_macro.Architecture.from_string(ARC_A.to_string()))
  assert again == first
  assert meter.measured == 1 and meter.cached_hits == 1
  assert ARC_A in meter and ARC_B not in meter and len(meter) == 1
  line = meter.describe()
  assert "batch-1 tf.function enas_macro model" in line and "warm-up 1" in line
  assert "median of 3 repeats" in line and "median CV" in line and "1 measured" in line


def test_jsonl_cache_persists_across_meters(tmp_path):
  path = tmp_path / "sub" / "latency.jsonl"
  first = LatencyMeter(TINY, warmup=1, repeats=3, cache_path=str(path))
  stats = first(ARC_A)
  assert first.measured == 1
  records = [json.loads(line) for line in path.read_text().splitlines()]
  assert len(records) == 1 and records[0]["arc"] == ARC_A.to_string()

  second = LatencyMeter(TINY, warmup=1, repeats=3, cache_path=str(path))
  assert second.loaded == 1
  assert second(ARC_A) == stats
  assert second.measured == 0 and second.cached_hits == 1
  assert "loaded from" in second.describe()


def test_cache_ignores_records_of_another_model_config(tmp_path):
  path = tmp_path / "latency.jsonl"
  other = dataclasses.replace(TINY, base_filters=8)
  path.write_text(_record(ARC_A, config=other))
  meter = LatencyMeter(TINY, warmup=0, repeats=1, cache_path=str(path))
  assert meter.loaded == 0 and ARC_A not in meter


def test_truncated_last_line_is_skipped_and_repaired(tmp_path):
  path = tmp_path / "latency.jsonl"
  path.write_text(_record(ARC_A, median=2.5) + _record(ARC_BIG)[:40])  # interrupted write
  meter = LatencyMeter(TINY, warmup=1, repeats=3, cache_path=str(path))
  assert meter.loaded == 1
  assert meter(ARC_A).median_ms == 2.5 and meter.measured == 0
  meter(ARC_B)  # appends after dropping the partial line
  assert meter.measured == 1
  lines = path.read_text().splitlines()
  assert len(lines) == 2 and all(json.loads(line) for line in lines)
  resumed = LatencyMeter(TINY, warmup=1, repeats=3, cache_path=str(path))
  assert resumed.loaded == 2


def test_complete_last_line_without_newline_is_kept(tmp_path):
  path = tmp_path / "latency.jsonl"
  path.write_text(_record(ARC_A).rstrip("\n"))
  meter = LatencyMeter(TINY, warmup=0, repeats=1, cache_path=str(path))
  assert meter.loaded == 1
  meter(ARC_B)
  assert len(path.read_text().splitlines()) == 2
  assert LatencyMeter(TINY, cache_path=str(path)).loaded == 2


def test_corrupt_middle_line_is_an_error(tmp_path):
  path = tmp_path / "latency.jsonl"
  path.write_text(_record(ARC_A) + "not json\n" + _record(ARC_B))
  with pytest.raises(ValueError, match="line 2"):
    LatencyMeter(TINY, cache_path=str(path))


def test_bigger_architecture_is_slower():
  # ~40x the FLOPs, so that the fastest repeat orders them even on a loaded machine (the
  # suite runs next to benchmarks); the meter's precision itself is a benchmark's matter.
  big = LatencyMeter(dataclasses.replace(TINY, base_filters=32, image_size=32), warmup=2,
                     repeats=7)(ARC_BIG)
  tiny = LatencyMeter(TINY, warmup=2, repeats=7)(ARC_B)
  assert big.min_ms > tiny.min_ms


def test_wrong_number_of_layers_and_bad_arguments():
  meter = LatencyMeter(TINY, repeats=1)
  with pytest.raises(ValueError, match="num_layers=5"):
    meter(enas_macro.default_architecture(3))
  with pytest.raises(ValueError, match="repeats"):
    LatencyMeter(TINY, repeats=0)
  with pytest.raises(ValueError, match="warmup"):
    LatencyMeter(TINY, warmup=-1)


def test_stats_json_round_trip_and_cv():
  stats = LatencyStats.from_samples([3.0, 1.0, 2.0, 10.0])
  assert (stats.median_ms, stats.min_ms, stats.max_ms, stats.repeats) == (2.5, 1.0, 10.0, 4)
  assert stats.mean_ms == 4.0
  assert stats.cv == pytest.approx(stats.std_ms / 4.0)
  assert LatencyStats.from_json(json.loads(json.dumps(stats.to_json()))) == stats
  with pytest.raises(ValueError, match="lack"):
    LatencyStats.from_json({"median_ms": 1.0})
  with pytest.raises(ValueError, match="non-empty"):
    LatencyStats.from_samples([])
