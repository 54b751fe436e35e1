"""The teacher benchmark's equal-FLOPs baselines (bench/bench_teacher.py): the scaled teacher
and the scaled MobileFaceNet land on the budget."""
import dataclasses
import os
import sys

import pytest

from enas_face import spaces
from enas_face.config import ModelConfig, RunConfig

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


@pytest.fixture(scope="module")
def bench():
  sys.path.insert(0, BENCH)
  try:
    import bench_teacher  # pylint: disable=import-outside-toplevel
    yield bench_teacher
  finally:
    sys.path.remove(BENCH)


def teacher_config(base_filters=48):
  model = ModelConfig(image_size=32, base_filters=base_filters, embedding_dim=128)
  return RunConfig(mode="fixed", run_dir="/tmp/unused", arc=spaces.of(model).default(model),
                   model=model, data=None, train=None, eval=None)


def test_scaled_teacher_is_the_closest_even_width(bench):
  teacher = teacher_config()
  space = spaces.of(teacher.model)
  target = space.flops(teacher.model, teacher.arc) / 4
  chosen = bench.closest_base_filters(teacher, target)
  assert chosen % 2 == 0 and chosen < 48

  def error(bf):
    return abs(space.flops(dataclasses.replace(teacher.model, base_filters=bf), teacher.arc)
               - target)

  assert error(chosen) <= min(error(chosen - 2), error(chosen + 2))


def test_scaled_mobilefacenet_lands_on_the_budget(bench):
  model = teacher_config().model
  space = spaces.get("mobilefacenet")
  for target in (5e6, 20e6):
    width = bench.closest_width(model, target)
    scaled = dataclasses.replace(model, search_space="mobilefacenet", width_multiplier=width)
    assert space.flops(scaled, space.default(scaled)) == pytest.approx(target, rel=0.03)


def test_an_external_teachers_row_is_its_own_pair_accuracy(bench, tmp_path):
  """--teacher: the teacher row reads --mode=evaluate_teacher's report; no FLOPs, parameters
  or latency (n/a in the table)."""
  from enas_face import runlog
  runlog.write_json(str(tmp_path / runlog.TEACHER_METRICS), {
      "teacher": "/t/lfw_dlib.jsonl", "teacher_kind": "embeddings",
      "pair_set_names": ["pairsDevTest"],
      "pair_sets": {"pairsDevTest": {"verification_accuracy": 0.98, "verification_std": 0.01,
                                     "tar_at_far_1e-3": 0.9, "num_pairs": 1000}}})
  row = bench.teacher_row(str(tmp_path))
  assert row["accuracy_mean"] == 0.98 and row["flops"] is None
  assert row["label"] == "teacher (embeddings: lfw_dlib.jsonl)"
  line = bench.table([row], 20e6).splitlines()[4]
  assert line == ("| teacher (embeddings: lfw_dlib.jsonl) | 0.9800 +- 0.0000 (1 seed) | 0.0100 | "
                  "0.9000 | n/a | n/a | n/a |")
