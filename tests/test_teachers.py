"""Strong teachers: the kinds --distill_from names (and the extras they need), the teacher
embeddings file and its tool (keys, resume after a kill, no-face counts), the relational
term against numpy, ONNX inputs read from the model, tiny teachers of every kind distilled
for one epoch with their own accuracy on the pairs, and dlib's real model (in CI)."""
import importlib.util
import json
import os
import shutil
import sys

import numpy as np
import pytest

from conftest import SHARED_DATA, TINY_FIXED_RUN, in_ci
from enas_face import runlog
from enas_face import runtimes
from enas_face.config import ConfigError
from enas_face.data import keys as image_keys
from enas_face.data import teacher_files

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tools"))
import teacher_embeddings as tool  # noqa: E402  pylint: disable=wrong-import-position

DLIB_MODELS = os.path.join(SHARED_DATA, "models", "dlib")
# The tiny fixed run's data (TINY_FIXED_RUN) for 1 epoch: its images, so its keys.
ONE_EPOCH = [a for a in TINY_FIXED_RUN if not a.startswith(("--epochs", "--warmup_epochs"))] + [
    "--epochs=1", "--warmup_epochs=0"]


def fake_dlib_folder(path) -> str:
  os.makedirs(path, exist_ok=True)
  for name in runtimes.DLIB_FILES:
    open(os.path.join(path, name), "wb").close()
  return str(path)


def hide_module(monkeypatch, name: str):
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda module, *a: None if module == name else real(module, *a))


# ------------------------------------------------------------------ kinds and extras (no TF)

def test_teacher_kinds(tmp_path):
  run = tmp_path / "run"
  run.mkdir()
  (run / runlog.CONFIG).write_text("{}")
  saved = tmp_path / "sm"
  saved.mkdir()
  (saved / "saved_model.pb").write_bytes(b"")
  onnx = tmp_path / "t.onnx"
  onnx.write_bytes(b"")
  table = tmp_path / "t.jsonl"
  table.write_text("")
  found = [teacher_files.teacher_kind(str(p)) for p in (run, saved, onnx, table)]
  assert found == ["run", "saved_model", "onnx", "embeddings"]
  with pytest.raises(ConfigError, match="--distill_from=.*no such file or folder"):
    teacher_files.teacher_kind(str(tmp_path / "missing"))
  with pytest.raises(ConfigError, match="neither a run folder.*nor dlib's model"):
    teacher_files.teacher_kind(str(tmp_path))
  with pytest.raises(ConfigError, match="neither an .onnx model nor a teacher embeddings"):
    teacher_files.teacher_kind(str(run / runlog.CONFIG))


def test_missing_extras_are_named(tmp_path, monkeypatch):
  folder = fake_dlib_folder(tmp_path / "dlib")
  onnx = tmp_path / "t.onnx"
  onnx.write_bytes(b"")
  hide_module(monkeypatch, "dlib")
  with pytest.raises(ConfigError, match=r"dlib's face model, which needs the dlib extra "
                                        r"\(pip install 'enas_face\[dlib\]'"):
    teacher_files.teacher_kind(folder)
  hide_module(monkeypatch, "onnxruntime")
  with pytest.raises(ConfigError, match=r"an ONNX model, which needs the onnx extra"):
    teacher_files.teacher_kind(str(onnx))


def test_the_missing_dlib_extra_exits_2_before_tensorflow(tmp_path, monkeypatch,
                                                          main_in_process):
  folder = fake_dlib_folder(tmp_path / "dlib")
  hide_module(monkeypatch, "dlib")
  result = main_in_process("--mode=fixed", f"--run_dir={tmp_path / 'run'}",
                           f"--distill_from={folder}")
  assert result.returncode == 2
  assert "error: --distill_from=" in result.stderr
  assert "pip install 'enas_face[dlib]'" in result.stderr
  assert not os.path.exists(tmp_path / "run")  # refused before the run folder


def test_dlib_in_training_names_the_tool(tmp_path, monkeypatch, main_in_process):
  folder = fake_dlib_folder(tmp_path / "dlib")
  monkeypatch.setattr(importlib.util, "find_spec", lambda *a: object())  # "installed"
  result = main_in_process("--mode=fixed", f"--run_dir={tmp_path / 'run'}",
                           f"--distill_from={folder}")
  assert result.returncode == 2
  assert "cannot run on the training crops" in result.stderr
  assert "tools/teacher_embeddings.py" in result.stderr


# ------------------------------------------------------------------ the embeddings file

def test_embeddings_file_lookup_resume_and_refusals(tmp_path):
  path = str(tmp_path / "t.jsonl")
  head = teacher_files.header("/models/x", "dlib", 3, {"upsample": 1})
  writer = teacher_files.EmbeddingsWriter(path, head)
  writer.append([teacher_files.record("a/1.jpg", "detected", [3.0, 0.0, 4.0]),
                 teacher_files.record("a/2.jpg", "no_face")])
  writer.append([teacher_files.record("b/1.jpg", "whole_image", [0.0, 1.0, 0.0])])
  loaded = teacher_files.TeacherEmbeddings.load(path)
  assert loaded.keys == ("a/1.jpg", "b/1.jpg") and loaded.embedding_dim == 3
  assert loaded.statuses == {"a/1.jpg": "detected", "a/2.jpg": "no_face",
                             "b/1.jpg": "whole_image"}
  embeddings, found = loaded.lookup(["b/1.jpg", "a/2.jpg", "zz"])
  np.testing.assert_array_equal(found, [True, False, False])
  np.testing.assert_allclose(embeddings, [[0, 1, 0], [0, 0, 0], [0, 0, 0]])
  images = np.zeros((3, 4, 4, 3), np.uint8)
  with pytest.raises(ConfigError, match=r"t.jsonl: 2 of 3 training images have no teacher "
                                        r"embedding there \(first: a/2.jpg \(no_face\), zz "
                                        r"\(not in the file\)\).*--distill_missing=skip"):
    loaded.targets(images, np.array(["a/1.jpg", "a/2.jpg", "zz"]), "training images")
  targets, found = loaded.targets(images, np.array(["a/1.jpg", "a/2.jpg", "zz"]),
                                  "training images", missing="skip")
  assert found.tolist() == [True, False, False] and targets[0].tolist() == [3, 0, 4]
  # a kill inside a chunk: a torn last line is dropped on reading and cut on resuming
  with open(path, "a") as f:
    f.write('{"key": "c/1.jpg", "status": "detec')
  assert teacher_files.TeacherEmbeddings.load(path).keys == ("a/1.jpg", "b/1.jpg")
  resumed = teacher_files.EmbeddingsWriter(path, head)
  assert set(resumed.done) == {"a/1.jpg", "a/2.jpg", "b/1.jpg"}
  resumed.append([teacher_files.record("c/1.jpg", "detected", [1.0, 1.0, 1.0])])
  assert teacher_files.TeacherEmbeddings.load(path).keys == ("a/1.jpg", "b/1.jpg", "c/1.jpg")
  with pytest.raises(ConfigError, match=r"--teacher_file=.*another teacher or settings \(settings: "
                                        r"\{'upsample': 1\} there, \{'upsample': 2\} now\)"):
    teacher_files.EmbeddingsWriter(path, teacher_files.header("/models/x", "dlib", 3,
                                                              {"upsample": 2}))
  (tmp_path / "other.jsonl").write_text('{"epoch": 1}\n')
  with pytest.raises(ConfigError, match="not a teacher embeddings file"):
    teacher_files.TeacherEmbeddings.load(str(tmp_path / "other.jsonl"))


def test_keys_are_source_paths_else_a_hash_of_the_pixels():
  images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
  assert image_keys.image_keys(images, np.array(["x/1.jpg", "y/2.png"])) == ["x/1.jpg",
                                                                                 "y/2.png"]
  keys = image_keys.image_keys(images)
  assert keys[0].startswith("sha1:") and len(set(keys)) == 2
  assert keys[1] == image_keys.content_key(images[1])


def test_aligned_records_keep_their_source_paths(tmp_path):
  """A tfrecord: dataset's splits and lfw: pairs carry each image's path (the key)."""
  from enas_face.data import tfrecord
  from enas_face.data import load_dataset
  from enas_face.config import DataConfig
  rng = np.random.default_rng(0)
  names = [f"person{k}" for k in range(6)]
  labels = np.repeat(np.arange(6), 5)
  paths = [f"{names[label]}/{names[label]}_{i:04d}.jpg" for label, i in
           zip(labels, np.tile(np.arange(1, 6), 6))]
  images = rng.integers(0, 255, (30, 16, 16, 3), dtype=np.uint8)
  folder = str(tmp_path / "aligned")
  tfrecord.write_arrays(folder, images, labels, paths, names, source="/photos")
  pairs_txt = tmp_path / "pairs.txt"
  pairs_txt.write_text("1\nperson0\t1\t2\nperson1\t1\tperson2\t3\n")
  dataset = load_dataset(DataConfig(dataset=f"tfrecord:{folder}", image_size=16,
                                    pairs=f"lfw:{pairs_txt},{folder}", num_folds=2,
                                    exclude_pair_identities=False, stream="never"))
  by_path = dict(zip(paths, images))
  for split in (dataset.train, dataset.val, dataset.test):
    assert len(split.paths) == len(split)
    for path, image in zip(split.paths, split.images):
      np.testing.assert_array_equal(by_path[path], image)
  assert sorted(dataset.pairs.paths) == ["person0/person0_0001.jpg", "person0/person0_0002.jpg",
                                         "person1/person1_0001.jpg", "person2/person2_0003.jpg"]
  train_root, pair_roots = tool.photo_roots(
      type("C", (), {"data": DataConfig(dataset=f"tfrecord:{folder}",
                                        pairs=f"lfw:{pairs_txt},{folder}")})(), "")
  assert train_root == "/photos" and pair_roots == {"pairs": "/photos"}


# ------------------------------------------------------------------ losses and runtimes

def relational_reference(s, t, m):
  """numpy: L_rel,i = m_i sum_{j != i} m_j (S_ij - T_ij)^2 / sum_{j != i} m_j."""
  s = s / np.linalg.norm(s, axis=1, keepdims=True)
  t = t / np.linalg.norm(t, axis=1, keepdims=True)
  out = np.zeros(len(s))
  for i in range(len(s)):
    terms = [m[j] * (s[i] @ s[j] - t[i] @ t[j]) ** 2 for j in range(len(s)) if j != i]
    weight = sum(m[j] for j in range(len(s)) if j != i)
    out[i] = m[i] * sum(terms) / max(weight, 1.0)
  return out


def test_relational_term_against_numpy():
  import tensorflow as tf
  from enas_face.training import distill
  rng = np.random.default_rng(3)
  student, teacher = rng.normal(size=(6, 5)), rng.normal(size=(6, 9))
  full = distill.relational_loss(tf.constant(student), tf.constant(teacher)).numpy()
  np.testing.assert_allclose(full, relational_reference(student, teacher, np.ones(6)),
                             rtol=1e-5, atol=1e-7)
  # its batch mean is the mean over ordered pairs i != j
  s = student / np.linalg.norm(student, axis=1, keepdims=True)
  t = teacher / np.linalg.norm(teacher, axis=1, keepdims=True)
  squared = (s @ s.T - t @ t.T) ** 2
  assert full.mean() == pytest.approx(squared[~np.eye(6, dtype=bool)].mean(), rel=1e-5)
  mask = np.array([1, 0, 1, 1, 0, 1], np.float32)
  masked = distill.relational_loss(tf.constant(student), tf.constant(teacher), mask).numpy()
  np.testing.assert_allclose(masked, relational_reference(student, teacher, mask), rtol=1e-5,
                             atol=1e-7)
  # the same geometry (a rotation and scale of the teacher's space): no loss
  rotation = np.linalg.qr(rng.normal(size=(5, 5)))[0]
  same = distill.relational_loss(tf.constant(student), tf.constant(3 * student @ rotation))
  np.testing.assert_allclose(same.numpy(), 0.0, atol=1e-6)


def test_distillation_with_targets_masks_missing_rows():
  """Precomputed targets: zero rows drop out of the embedding and relational terms."""
  import tensorflow as tf
  from enas_face.config import DistillConfig
  from enas_face.training import distill, teachers
  rng = np.random.default_rng(4)
  student = rng.normal(size=(4, 3)).astype(np.float32)
  targets = student.copy()
  targets[2] = 0.0  # no target
  teacher = teachers.Teacher(None, None, 0, 3, None, "file", "embeddings", object())
  projection = distill.Projection(3, 3)
  config = DistillConfig(teacher="file", embedding_weight=1.0, relational_weight=2.0)
  loss = distill.distillation_loss(config, teacher, projection, tf.constant(student), None,
                                   None, tf.constant(targets)).numpy()
  np.testing.assert_allclose(loss, 0.0, atol=1e-6)  # the student is the teacher where known
  other = rng.normal(size=(4, 3)).astype(np.float32)
  loss = distill.distillation_loss(config, teacher, projection, tf.constant(other), None, None,
                                   tf.constant(targets)).numpy()
  unit = other / np.linalg.norm(other, axis=1, keepdims=True)
  t = student / np.linalg.norm(student, axis=1, keepdims=True)
  m = np.array([1, 1, 0, 1.0])
  expected = m * (1 - (unit * t).sum(1)) + 2.0 * relational_reference(other, targets + (1 - m)[
      :, None], m)
  np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)


def test_onnx_runner_reads_the_input_signature(tmp_path):
  """A float NCHW input fed (x - mean) / std, and a uint8 NHWC one, against numpy."""
  pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
  import onnx
  from onnx import TensorProto, helper, numpy_helper
  rng = np.random.default_rng(5)
  weights = rng.normal(size=(3 * 4 * 4, 6)).astype(np.float32)

  def model(dtype, shape, path):
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("Flatten", ["xf"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", dtype, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                             ["N", 6])],
                              [numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                ir_version=8), path)
    return path

  images = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
  nchw = runtimes.OnnxRunner(model(TensorProto.FLOAT, ["N", 3, 4, 4], str(tmp_path / "a.onnx")),
                             mean=127.5, std=127.5, batch_size=2)
  assert (nchw.layout, nchw.image_size, nchw.embedding_dim) == ("NCHW", 4, 6)
  expected = ((images.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2).reshape(5, -1)
  np.testing.assert_allclose(nchw(images), expected @ weights, rtol=1e-5, atol=1e-5)
  nhwc = runtimes.OnnxRunner(model(TensorProto.UINT8, [2, 4, 4, 3], str(tmp_path / "b.onnx")))
  assert (nhwc.layout, nhwc.batch) == ("NHWC", 2)  # a fixed batch of 2: 5 images padded
  np.testing.assert_allclose(nhwc(images), images.reshape(5, -1).astype(np.float32) @ weights,
                             rtol=1e-5, atol=1e-3)
  with pytest.raises(runtimes.ModelInputError, match="no axis of 3 colour channels"):
    runtimes.OnnxRunner(model(TensorProto.FLOAT, ["N", 4, 12, 1], str(tmp_path / "c.onnx")))


# ------------------------------------------------------------------ tiny teachers, one epoch

@pytest.fixture(scope="module")
def tiny_onnx(tiny_fixed_run, tmp_path_factory):
  """The tiny run's network exported to ONNX (export.to_onnx: uint8 NHWC in)."""
  pytest.importorskip("tf2onnx", reason="the onnx extra is not installed")
  from enas_face import export
  from enas_face.training import checkpoints
  run = checkpoints.load_run(tiny_fixed_run.run_dir, "--distill_from")
  path = str(tmp_path_factory.mktemp("onnx_teacher") / "teacher.onnx")
  runlog.write_bytes(path, export.to_onnx(run.child, 16))
  return path


@pytest.fixture(scope="module")
def tiny_teachers(tiny_fixed_run, tmp_path_factory):
  """The tiny run's SavedModel and an embeddings file of it on the tiny run's own training
  and pair images (the tool, in process)."""
  from absl import flags
  from enas_face import flags as enas_flags
  folder = tmp_path_factory.mktemp("teachers")
  saved = os.path.join(tiny_fixed_run.run_dir, runlog.SAVED_MODEL_DIR)
  values = flags.FLAGS
  values.unparse_flags()
  try:
    values(["prog", *ONE_EPOCH, f"--distill_from={saved}", f"--run_dir={folder / 'x'}"])
    config = enas_flags.config_from_flags(values)
  finally:
    values.unparse_flags()
  table = str(folder / "teacher.jsonl")
  summary = tool.write_embeddings(config, table, chunk_size=16, progress=False)
  return {"saved_model": saved, "file": table, "config": config, "summary": summary}


def test_the_tool_embeds_the_runs_images_and_reports_the_pairs(tiny_teachers):
  summary = tiny_teachers["summary"]
  config = tiny_teachers["config"]
  # 8 identities x 6 images: 80 % train = 32 (4 + 1 + 1 per identity); 4 x 5 held-out images
  assert summary["statuses"] == {"crop": 32 + 20} and summary["without_embedding"] == 0
  file_report = summary["pairs_report"]
  assert file_report["teacher_kind"] == "embeddings" and not file_report["flip_test"]
  # the same evaluator: the file's report equals the SavedModel's own, without the flip
  import dataclasses
  from enas_face.data import load_dataset
  from enas_face.training import teachers
  dataset = load_dataset(config.data)
  crop = teachers.pair_report(teachers.load_teacher(tiny_teachers["saved_model"]),
                              dataset.pair_sets, dataclasses.replace(config.eval,
                                                                     flip_test=False))
  for key in ("verification_accuracy", "roc_auc"):
    assert file_report["pair_sets"]["heldout"][key] == pytest.approx(
        crop["pair_sets"]["heldout"][key], abs=1e-6)
  assert os.path.isfile(tool.summary_path(tiny_teachers["file"]))


def test_the_tool_resumes_after_a_kill(tiny_teachers, tmp_path, monkeypatch):
  """A kill inside a chunk (complete lines, then a torn one): the rerun embeds only the
  images whose lines are missing and ends with the same file."""
  table = str(tmp_path / "t.jsonl")
  shutil.copy(tiny_teachers["file"], table)
  with open(table) as f:
    lines = f.readlines()
  assert len(lines) == 1 + 52
  kept = lines[:1 + 40]  # the header, 2.5 chunks of 16
  with open(table, "w") as f:
    f.writelines(kept + [lines[41][:30]])  # the 41st image's line cut mid-way
  embedded = []
  real_call = tool.CropTeacher.__call__
  monkeypatch.setattr(tool.CropTeacher, "__call__",
                      lambda self, items: embedded.extend(i.key for i in items)
                      or real_call(self, items))
  summary = tool.write_embeddings(tiny_teachers["config"], table, chunk_size=16,
                                  progress=False)
  assert len(embedded) == 12 and summary["embedded_now"] == 12
  assert set(embedded) == {json.loads(line)["key"] for line in lines[41:]}
  before = teacher_files.TeacherEmbeddings.load(tiny_teachers["file"])
  after = teacher_files.TeacherEmbeddings.load(table)
  assert sorted(after.keys) == sorted(before.keys)
  order = [after.keys.index(k) for k in before.keys]
  np.testing.assert_allclose(after.embeddings[order], before.embeddings, atol=1e-6)
  embedded.clear()
  tool.write_embeddings(tiny_teachers["config"], table, chunk_size=16, progress=False)
  assert embedded == []  # done: nothing recomputed


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["saved_model", "onnx", "file"])
def test_tiny_teachers_distil_one_epoch(kind, tiny_teachers, tmp_path, main_in_process,
                                        request):
  """Each kind teaches a 1-epoch run (embedding + relational terms); metrics.json holds the
  teacher's own accuracy on the run's pairs."""
  teacher = request.getfixturevalue("tiny_onnx") if kind == "onnx" else tiny_teachers[kind]
  run_dir = tmp_path / "student"
  result = main_in_process("--mode=fixed", f"--run_dir={run_dir}", *ONE_EPOCH,
                           f"--distill_from={teacher}",
                           "--distill_relational_weight=0.5", "--export_format=saved_model")
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  metrics = runlog.read_json(str(run_dir / runlog.METRICS))
  teacher = metrics["teacher"]
  assert teacher["teacher_kind"] == {"file": "embeddings"}.get(kind, kind)
  report = teacher["pair_sets"]["heldout"]
  assert 0.0 <= report["verification_accuracy"] <= 1.0 and report["num_pairs"] == 20
  assert "teacher pairs heldout [20] exact" in result.stdout


def test_missing_training_images_are_an_error_naming_the_file(tiny_teachers, tmp_path,
                                                              main_in_process):
  """A file made for other images: exit 2 naming it and the count; skip trains anyway."""
  table = str(tmp_path / "partial.jsonl")
  with open(tiny_teachers["file"]) as f:
    lines = f.readlines()
  with open(table, "w") as f:
    f.writelines(lines[:1 + 20])
  result = main_in_process("--mode=fixed", f"--run_dir={tmp_path / 'run'}", *ONE_EPOCH,
                           f"--distill_from={table}")
  assert result.returncode == 2
  assert f"--distill_from={table}: " in result.stderr
  assert "of 32 training images have no teacher embedding there" in result.stderr


def test_evaluate_teacher_mode(tiny_teachers, tmp_path, main_in_process):
  result = main_in_process("--mode=evaluate_teacher", f"--run_dir={tmp_path / 'eval'}",
                           *ONE_EPOCH, f"--distill_from={tiny_teachers['file']}")
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  report = runlog.read_json(str(tmp_path / "eval" / runlog.TEACHER_METRICS))
  assert report["pair_sets"]["heldout"]["verification_accuracy"] == pytest.approx(
      tiny_teachers["summary"]["pairs_report"]["pair_sets"]["heldout"]["verification_accuracy"])
  assert "teacher pairs heldout [20] exact" in result.stdout


# ------------------------------------------------------------------ dlib's real model (CI)

def dlib_or_skip():
  """dlib's model on real faces runs in CI (the test extra installs dlib-bin, CI has the
  shared data); elsewhere it is skipped, saying why."""
  if not in_ci():
    pytest.skip("dlib's real model on ORL faces runs in CI only (set CI=1 to run it here: "
                "needs dlib-bin and ../shared/data/models/dlib)")
  assert importlib.util.find_spec("dlib") is not None, "CI installs the test extra's dlib-bin"
  assert runtimes.is_dlib_folder(DLIB_MODELS), f"no dlib model in {DLIB_MODELS}"


def orl(subject: int, image: int) -> np.ndarray:
  from enas_face.data import images as image_io
  return image_io.read_image(os.path.join(SHARED_DATA, "orl_faces", f"s{subject}",
                                          f"{image}.pgm"))


def test_dlib_same_person_is_closer_than_another_person():
  dlib_or_skip()
  model = runtimes.DlibFaceEmbedder(DLIB_MODELS)
  embedded = {}
  for subject, image in [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1)]:
    descriptor, status = model.embed(orl(subject, image))
    assert descriptor.shape == (128,) and status in ("detected", "whole_image")
    embedded[subject, image] = descriptor / np.linalg.norm(descriptor)
  same = [embedded[1, 1] @ embedded[1, 2], embedded[2, 1] @ embedded[2, 2]]
  different = [embedded[1, 1] @ embedded[2, 1], embedded[1, 2] @ embedded[3, 1],
               embedded[2, 2] @ embedded[3, 1]]
  assert min(same) > max(different), (same, different)
  skipping = runtimes.DlibFaceEmbedder(DLIB_MODELS, on_no_face="skip")
  assert skipping.embed(np.full((60, 60, 3), 128, np.uint8)) == (None, "no_face")
  blank, status = model.embed(np.full((60, 60, 3), 128, np.uint8))
  assert status == "whole_image" and blank.shape == (128,)


@pytest.mark.slow
def test_dlib_tool_on_orl_photos_then_its_pair_accuracy(tmp_path):
  """The tool runs dlib on ORL photos (6 people x 4: 3 trained on, 2 training images each,
  and 3 held out, 12 images in 20 pairs) and reports the teacher's accuracy on the pairs."""
  dlib_or_skip()
  from absl import flags
  from enas_face import flags as enas_flags
  source = tmp_path / "orl"
  for subject in range(1, 7):
    os.makedirs(source / f"s{subject}")
    for image in range(1, 5):
      shutil.copy(os.path.join(SHARED_DATA, "orl_faces", f"s{subject}", f"{image}.pgm"),
                  source / f"s{subject}" / f"{image}.pgm")
  values = flags.FLAGS
  values.unparse_flags()
  try:
    values(["prog", f"--dataset=folder:{source}", "--image_size=32", "--num_pairs=20",
            "--num_folds=2", "--heldout_fraction=0.5", f"--distill_from={DLIB_MODELS}",
            f"--run_dir={tmp_path / 'x'}"])
    config = enas_flags.config_from_flags(values)
  finally:
    values.unparse_flags()
  table = str(tmp_path / "orl_dlib.jsonl")
  summary = tool.write_embeddings(config, table, chunk_size=5, progress=False)
  assert summary["images"] == 3 * 2 + 12 and summary["without_embedding"] == 0
  assert set(summary["statuses"]) <= {"detected", "whole_image"}
  loaded = teacher_files.TeacherEmbeddings.load(table)
  assert all(k.startswith("s") and k.endswith(".pgm") for k in loaded.keys)  # source paths
  assert loaded.header["teacher_kind"] == "dlib" and loaded.embedding_dim == 128
  report = summary["pairs_report"]["pair_sets"]["heldout"]
  print("dlib on ORL:", summary["statuses"], report["verification_accuracy"], report["roc_auc"])
  assert report["verification_accuracy"] >= 0.8, report
