"""Unlabelled images for the distillation terms (--unlabelled, data/unlabelled.py): which
images are taken and which never (people of the --pairs sets, pair and labelled pixels), the
stream that mixes a batch of them into each step (resume-safe), the loss over labelled u
unlabelled rows against numpy, the flag errors before TensorFlow, and tiny runs with an
on-the-fly teacher and with an embeddings file (the tool embeds the unlabelled images too)."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest
from absl import flags

from conftest import TINY_FIXED_RUN
from enas_face import flags as enas_flags
from enas_face import runlog
from enas_face.config import ConfigError, DataConfig
from enas_face.data import keys
from test_search_core import lose_last_checkpoint, read_jsonl
from test_teachers import ONE_EPOCH, relational_reference, tool


def write_image(path, value: int, rng=None) -> None:
  """A 24x24 colour image; `value` makes it differ from the others."""
  rng = rng or np.random.default_rng(value)
  image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
  image[0, 0] = value % 256
  os.makedirs(os.path.dirname(path), exist_ok=True)
  assert cv2.imwrite(str(path), image)


@pytest.fixture
def faces(tmp_path):
  """A folder: dataset of LFW-named files: t0..t5 with 5 images (trained), s0, s1 with 2
  (small), pA with 2 (small, named by the pairs), pB with 5 (named by the pairs); the pairs
  file names pA and pB; an unlabelled folder holding new faces and what must be left out."""
  root = tmp_path / "faces"
  counts = {**{f"t{k}": 5 for k in range(6)}, "s0": 2, "s1": 2, "pA": 2, "pB": 5}
  value = 0
  for name, count in counts.items():
    for i in range(1, count + 1):
      value += 1
      write_image(root / name / f"{name}_{i:04d}.png", value)
  pairs = tmp_path / "pairs.txt"
  # the resolver names files Name/Name_NNNN.jpg: give the pair people .jpg copies too
  for name, count in (("pA", 2), ("pB", 5)):
    for i in range(1, count + 1):
      shutil.copy(root / name / f"{name}_{i:04d}.png", root / name / f"{name}_{i:04d}.jpg")
      os.remove(root / name / f"{name}_{i:04d}.png")
  pairs.write_text("2\npA\t1\t2\npB\t1\t2\npA\t1\tpB\t3\npA\t2\tpB\t4\n")
  extra = tmp_path / "extra"
  write_image(extra / "new_1.png", 901)
  write_image(extra / "new_2.png", 902)
  os.makedirs(extra / "again")
  shutil.copy(extra / "new_2.png", extra / "again" / "copy_of_new_2.png")
  shutil.copy(root / "pA" / "pA_0001.jpg", extra / "a_pair_image.jpg")
  shutil.copy(root / "t0" / "t0_0001.png", extra / "a_labelled_image.png")
  write_image(extra / "pB" / "unseen_photo_of_pB.png", 903)
  return {"root": str(root), "pairs": f"lfw:{pairs},{root}", "extra": str(extra)}


def load(faces, unlabelled, **overrides):
  from enas_face.data import load_dataset
  return load_dataset(DataConfig(**{**dict(
      dataset=f"folder:{faces['root']}", pairs=faces["pairs"], image_size=16, num_folds=2,
      min_images_per_identity=3, unlabelled=unlabelled), **overrides}))


def test_small_identities_never_take_a_pair_person(faces):
  dataset = load(faces, "small_identities")
  extra = dataset.unlabelled
  assert sorted(extra.paths) == ["s0/s0_0001.png", "s0/s0_0002.png", "s1/s1_0001.png",
                                 "s1/s1_0002.png"]
  assert extra.sources == ("small_identities",) and set(extra.origins) == {0}
  [report] = dataset.report["unlabelled"]["sources"]
  assert report["identities"] == 2 and report["identities_named_by_pairs_left_out"] == 1
  assert report["images_named_by_pairs_left_out"] == 2 and report["kept"] == 4
  # training on the pair people (--exclude_pair_identities=false) still leaves pA out
  trained = load(faces, "small_identities", exclude_pair_identities=False)
  assert "pB" in trained.report["class_names"]
  assert sorted(trained.unlabelled.paths) == sorted(extra.paths)
  # the images are the folder's, at the run's size, keyed by their paths
  by_key = dict(zip(keys.image_keys(extra.images, extra.paths), extra.images))
  assert by_key["s0/s0_0001.png"].shape == (16, 16, 3)


def test_a_folder_leaves_out_pair_people_pair_pixels_labelled_pixels_and_repeats(faces):
  dataset = load(faces, f"small_identities,folder:{faces['extra']}")
  extra = dataset.unlabelled
  folder = [p for p, o in zip(extra.paths, extra.origins) if o == 1]
  # files in sorted order: again/copy_of_new_2.png comes first, new_2.png repeats it
  assert folder == ["again/copy_of_new_2.png", "new_1.png"]
  report = dataset.report["unlabelled"]["sources"][1]
  assert report["source"] == f"folder:{faces['extra']}"
  assert report["left_out"] == {"named_by_pairs": 1, "heldout_for_pairs": 0,
                                "same_pixels_as_a_pair_image": 1,
                                "same_pixels_as_a_labelled_image": 1, "repeated_pixels": 1}
  assert report["read"] == 6 and report["kept"] == 2
  assert dataset.report["unlabelled"]["images"] == 6


def test_flag_errors_name_the_flag(tmp_path):
  values = flags.FLAGS

  def parse(*argv):
    values.unparse_flags()
    try:
      values(["prog", "--run_dir=/tmp/unused", *argv])
      return enas_flags.config_from_flags(values)
    finally:
      values.unparse_flags()

  teacher = tmp_path / "t.jsonl"
  teacher.write_text("")
  with pytest.raises(ConfigError, match="--unlabelled=small_identities: .*--distill_from"):
    parse("--unlabelled=small_identities")
  with pytest.raises(ConfigError, match="--unlabelled=small_identities: .*needs a real "
                                        "--dataset"):
    parse("--unlabelled=small_identities", f"--distill_from={teacher}")
  with pytest.raises(ConfigError, match="--unlabelled=faces: unknown source 'faces'"):
    parse("--unlabelled=faces", f"--distill_from={teacher}")
  with pytest.raises(ConfigError, match="--unlabelled=folder:/nowhere: /nowhere is not a folder"):
    parse("--unlabelled=folder:/nowhere", f"--distill_from={teacher}")
  with pytest.raises(ConfigError, match="--unlabelled=.*teach --mode=fixed"):
    parse(f"--unlabelled=folder:{tmp_path}", f"--distill_from={teacher}", "--mode=search",
          "--search_space=mobilefacenet", "--search_strategy=differentiable",
          "--cost_model=flops", "--cost_target=1e6")
  config = parse(f"--unlabelled=folder:{tmp_path}", f"--distill_from={teacher}",
                 "--unlabelled_batch_size=4")
  assert config.data.unlabelled == f"folder:{tmp_path}" and config.data.unlabelled_batch_size == 4


def test_without_a_teacher_the_run_exits_2_before_tensorflow(tmp_path, main_in_process):
  result = main_in_process("--mode=fixed", f"--run_dir={tmp_path / 'run'}",
                           f"--unlabelled=folder:{tmp_path}")
  assert result.returncode == 2
  assert f"error: --unlabelled=folder:{tmp_path}: unlabelled images are seen by the " \
         "distillation terms only" in result.stderr
  assert not os.path.exists(tmp_path / "run")


# ------------------------------------------------------------------ the stream and the loss

def test_the_unlabelled_stream_covers_each_image_once_a_pass_and_resumes():
  from enas_face.data import pipeline
  rows = pipeline.unlabelled_rows(7, seed=3, start=0, size=21)
  for p in range(3):
    assert sorted(rows[7 * p:7 * (p + 1)]) == list(range(7))
  # any window is the same slice of the one stream: epoch e's rows do not depend on the past
  np.testing.assert_array_equal(pipeline.unlabelled_rows(7, 3, 5, 12), rows[5:17])
  images = (np.arange(7, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8))
  targets = np.arange(7, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
  batches = list(pipeline.unlabelled_dataset(images, 3, np.zeros(3, np.float32), seed=3,
                                             epoch=1, steps=2, augment=False,
                                             targets=targets).as_numpy_iterator())
  assert len(batches) == 2
  seen = np.concatenate([b["images"][:, 0, 0, 0] for b in batches])
  np.testing.assert_array_equal(seen, rows[6:12])  # epoch 1: positions 6..11
  for batch in batches:  # each target beside its image
    np.testing.assert_array_equal(batch["targets"][:, 0], batch["images"][:, 0, 0, 0])


def test_the_loss_over_labelled_and_unlabelled_rows_against_numpy():
  """L = CE over the B labelled rows / B + (1/(B + B_u)) sum over the B + B_u rows of
  w_e (1 - cos(e_s, t)) + w_r L_rel (the relational matrices span both batches)."""
  import tensorflow as tf
  from enas_face.config import DistillConfig, HeadConfig
  from enas_face.models.heads import build_head
  from enas_face.training import distill, step, teachers
  rng = np.random.default_rng(0)
  b, u, dim = 4, 3, 5
  embeddings = rng.normal(size=(b + u, dim)).astype(np.float32)
  targets = rng.normal(size=(b + u, dim)).astype(np.float32)
  labels = tf.constant([0, 1, 2, 0])
  head = build_head(HeadConfig(), 3, dim)
  head(tf.zeros((1, dim)))
  config = DistillConfig(teacher="file", embedding_weight=0.7, relational_weight=2.0)
  teacher = teachers.Teacher(None, None, 0, dim, None, "file", "embeddings", object())
  distillation = distill.Distillation(config, teacher, distill.Projection(dim, dim))
  images = tf.zeros((b + u, 2, 2, 3))
  rows = step.UnlabelledRows(images[b:], tf.constant(embeddings[b:]), tf.constant(targets[b:]))
  plain = step.TaskLoss(head, 3, 0.0, b)
  mixed = step.TaskLoss(head, 3, 0.0, b, [distillation.term()], unlabelled_batch_size=u)
  base, _ = plain(images[:b], labels, tf.constant(embeddings[:b]), 0)
  total, _ = mixed(images[:b], labels, tf.constant(embeddings[:b]), 0,
                   tf.constant(targets[:b]), rows)
  s = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
  t = targets / np.linalg.norm(targets, axis=1, keepdims=True)
  per_row = 0.7 * (1 - (s * t).sum(1)) + 2.0 * relational_reference(embeddings, targets,
                                                                     np.ones(b + u))
  assert float(total - base) == pytest.approx(per_row.sum() / (b + u), rel=1e-5)
  # each component on its own (what the history logs as loss/distill/embedding, ...)
  _, _, terms = mixed.with_terms(images[:b], labels, tf.constant(embeddings[:b]), 0,
                                 tf.constant(targets[:b]), rows)
  assert sorted(terms) == ["cross_entropy", "distill/embedding", "distill/relational"]
  assert float(terms["cross_entropy"]) == pytest.approx(float(base), rel=1e-6)
  assert float(terms["distill/embedding"]) == pytest.approx(
      0.7 * (1 - (s * t).sum(1)).sum() / (b + u), rel=1e-5)
  # without unlabelled rows the same term is over the B labelled ones
  alone, _ = mixed(images[:b], labels, tf.constant(embeddings[:b]), 0, tf.constant(targets[:b]))
  per_row = 0.7 * (1 - (s[:b] * t[:b]).sum(1)) + 2.0 * relational_reference(
      embeddings[:b], targets[:b], np.ones(b))
  assert float(alone - base) == pytest.approx(per_row.mean(), rel=1e-5)


# ------------------------------------------------------------------ tiny runs

@pytest.fixture(scope="module")
def unlabelled_folder(tmp_path_factory):
  """12 new 16x16 faces (random pixels) in a flat folder."""
  folder = tmp_path_factory.mktemp("unlabelled")
  rng = np.random.default_rng(7)
  for i in range(12):
    write_image(folder / f"face_{i:02d}.png", 1000 + i, rng)
  return str(folder)


@pytest.mark.slow
def test_an_on_the_fly_teacher_distils_unlabelled_images_and_resumes(
    tiny_fixed_run, unlabelled_folder, tmp_path, main_in_process):
  """A SavedModel teacher embeds the mixed batches; 2 epochs, then a kill after epoch 2's
  log record and before its checkpoint: the rerun redoes epoch 2 the same way."""
  teacher = os.path.join(tiny_fixed_run.run_dir, runlog.SAVED_MODEL_DIR)
  run_dir = str(tmp_path / "student")
  args = ["--mode=fixed", f"--run_dir={run_dir}",
          *[a for a in ONE_EPOCH if not a.startswith("--epochs")], "--epochs=2",
          f"--distill_from={teacher}", "--distill_relational_weight=0.5",
          f"--unlabelled=folder:{unlabelled_folder}", "--unlabelled_batch_size=4",
          "--export_format=saved_model", "--eval_every=0"]
  result = main_in_process(*args)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  report = runlog.read_json(os.path.join(run_dir, runlog.DATA_REPORT))
  assert report["unlabelled"]["images"] == 12
  assert "data: --unlabelled: 12 images for the distillation terms" in result.stdout
  assert "train step traced: 8 labelled + 4 unlabelled images a step" in result.stderr
  history = read_jsonl(os.path.join(run_dir, "train_history.jsonl"))
  assert [h["epoch"] for h in history] == [1, 2]
  terms = {k: v for k, v in history[0].items() if k.startswith("loss/")}
  assert sorted(terms) == ["loss/cross_entropy", "loss/distill/embedding",
                           "loss/distill/relational"]
  assert sum(terms.values()) == pytest.approx(history[0]["loss"], rel=1e-4)
  lose_last_checkpoint(run_dir, 2)
  result = main_in_process(*args)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  again = read_jsonl(os.path.join(run_dir, "train_history.jsonl"))
  assert [h["epoch"] for h in again] == [1, 2] and again[0] == history[0]
  assert again[1]["loss"] == pytest.approx(history[1]["loss"], rel=1e-4)


@pytest.mark.slow
def test_an_embeddings_file_teaches_unlabelled_images_the_tool_embedded(
    tiny_fixed_run, unlabelled_folder, tmp_path, main_in_process):
  """The tool with --teacher_splits=train,pairs,unlabelled keys the unlabelled images by
  their paths in the folder; a run distils from the file; a file without them is refused
  naming the split to add (or --distill_missing=skip)."""
  from enas_face.data import teacher_files
  values = flags.FLAGS
  values.unparse_flags()
  try:
    values(["prog", *ONE_EPOCH, f"--run_dir={tmp_path / 'x'}",
            f"--distill_from={os.path.join(tiny_fixed_run.run_dir, runlog.SAVED_MODEL_DIR)}",
            f"--unlabelled=folder:{unlabelled_folder}"])
    config = enas_flags.config_from_flags(values)
  finally:
    values.unparse_flags()
  table = str(tmp_path / "teacher.jsonl")
  without = str(tmp_path / "without.jsonl")
  tool.write_embeddings(config, without, progress=False)
  summary = tool.write_embeddings(config, table, ("train", "pairs", "unlabelled"),
                                  progress=False)
  assert summary["statuses"] == {"crop": 32 + 20 + 12}
  loaded = teacher_files.TeacherEmbeddings.load(table)
  assert {f"face_{i:02d}.png" for i in range(12)} <= set(loaded.keys)
  args = ["--mode=fixed", *ONE_EPOCH, f"--unlabelled=folder:{unlabelled_folder}",
          "--distill_relational_weight=0.5", "--export_format=saved_model"]
  result = main_in_process(*args, f"--run_dir={tmp_path / 'student'}",
                           f"--distill_from={table}")
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  result = main_in_process(*args, f"--run_dir={tmp_path / 'refused'}",
                           f"--distill_from={without}")
  assert result.returncode == 2
  assert "12 of 12 unlabelled images have no teacher embedding" in result.stderr
  assert "--teacher_splits=unlabelled" in result.stderr


def test_keys_that_two_images_share_are_found(faces, tmp_path):
  """folder:A/x.png and folder:B/x.png (other pixels) share a key, as does an unlabelled file
  named like a labelled one: an embeddings file could hold only one embedding for them."""
  from enas_face.data import unlabelled
  for name, value in (("a", 951), ("b", 952)):
    write_image(tmp_path / name / "x.png", value)
  write_image(tmp_path / "b" / "t0" / "t0_0001.png", 953)  # a labelled image's path
  dataset = load(faces, f"folder:{tmp_path / 'a'},folder:{tmp_path / 'b'}")
  assert unlabelled.key_clashes(dataset) == ["t0/t0_0001.png", "x.png"]
  assert unlabelled.key_clashes(load(faces, "small_identities")) == []
