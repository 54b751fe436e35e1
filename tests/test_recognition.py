"""Photos to names (enas_face/recognition): one embedding from the run folder, the SavedModel
and the TFLite file; thresholds from the export; faces found in real photos; a resumable
gallery bound to its model; the --mode=embed|verify|identify commands."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from enas_face.data import align
from enas_face.evaluation import thresholds
from enas_face.recognition import Embedder, Gallery, GalleryError, NoFaceInPhoto
from enas_face.recognition import embedder as embedder_module

KNN = os.path.join("photos", "face_recognition", "knn_examples")


@pytest.fixture(scope="module")
def mtcnn_detector():
  import mtcnn
  return mtcnn.MTCNN()


@pytest.fixture(scope="module")
def models(tiny_fixed_run):
  """The tiny run's three forms: run folder, SavedModel folder, TFLite file."""
  run_dir = tiny_fixed_run.run_dir
  saved_model = os.path.join(run_dir, "saved_model")
  return {"run": run_dir, "saved_model": saved_model,
          "tflite": os.path.join(saved_model, "model.tflite")}


def _load(path, detector, **options):
  """The model at `path` (16x16 input) with the module's MTCNN."""
  return Embedder.load(path, aligner=align.FaceAligner(size=16, detector=detector, **options))


def test_export_writes_thresholds_the_embedder_reads(models):
  path = os.path.join(models["saved_model"], "thresholds.json")
  with open(path) as f:
    calibration = thresholds.validate(json.load(f), path)
  assert calibration["pairs"]["num_pairs"] == 20 and calibration["pairs"]["pair_set"]
  assert not calibration["far_1e-3"]["resolvable"]  # 10 different pairs cannot resolve 1e-3
  for kind, model_path in models.items():
    embedder = Embedder.load(model_path)
    assert embedder.kind == kind and embedder.calibration == calibration
    assert embedder.threshold == calibration["best_accuracy"]["threshold"]
  assert Embedder.load(models["tflite"], threshold="far_1e-3").threshold == \
      calibration["far_1e-3"]["threshold"]
  assert Embedder.load(models["tflite"], threshold="0.5").threshold == 0.5


def test_run_folder_savedmodel_and_tflite_give_one_embedding(models):
  rng = np.random.default_rng(0)
  crops = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
  embeddings = {kind: Embedder.load(path).embed_crops(crops) for kind, path in models.items()}
  for kind, values in embeddings.items():
    assert values.shape == (12, 8)
    np.testing.assert_allclose(np.linalg.norm(values, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(values * embeddings["saved_model"], axis=1)
    assert cosine.min() >= 0.999, (kind, cosine)


def test_tflite_embedder_runs_without_tensorflow(models):
  code = ("import sys, numpy as np; from enas_face.recognition.embedder import Embedder; "
          f"e = Embedder.load({models['tflite']!r}); "
          "x = e.embed_crops(np.zeros((2, 16, 16, 3), np.uint8)); "
          "print(x.shape, 'tensorflow' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "(2, 8) False"


def test_a_model_path_that_is_no_model_is_named(tmp_path):
  with pytest.raises(embedder_module.EmbedderError, match="no such model file"):
    Embedder.load(str(tmp_path / "missing.tflite"))
  (tmp_path / "notes.txt").write_text("x")
  with pytest.raises(embedder_module.EmbedderError, match="notes.txt: not a model"):
    Embedder.load(str(tmp_path / "notes.txt"))
  with pytest.raises(embedder_module.EmbedderError, match="neither a run folder"):
    Embedder.load(str(tmp_path))


def test_no_thresholds_file_means_verify_asks_for_a_number(models, tmp_path):
  bare = str(tmp_path / "model.tflite")
  shutil.copy(models["tflite"], bare)
  embedder = Embedder.load(bare)
  assert embedder.calibration is None
  with pytest.raises(thresholds.ThresholdError, match="has no thresholds.json.*pass a number"):
    embedder.threshold  # pylint: disable=pointless-statement
  assert Embedder.load(bare, threshold="0.2").threshold == 0.2


# ----------------------------------------------------------------- real photos
def test_every_face_of_a_group_photo_left_to_right(shared_data, models, mtcnn_detector):
  embedder = _load(models["tflite"], mtcnn_detector)
  faces = embedder.embed(os.path.join(shared_data, KNN, "test", "obama_and_biden.jpg"))
  assert len(faces) >= 2
  assert [f.box[0] for f in faces] == sorted(f.box[0] for f in faces)
  for face in faces:
    assert face.status == "aligned" and face.landmarks.shape == (5, 2)
    assert abs(np.linalg.norm(face.embedding) - 1) < 1e-5
  record = faces[0].to_json()
  assert len(record["embedding"]) == 8 and record["photo"].endswith("obama_and_biden.jpg")


def test_a_photo_without_a_face(shared_data, models, mtcnn_detector, tmp_path):
  blank = np.full((200, 300, 3), 180, np.uint8)
  cv2.rectangle(blank, (50, 50), (250, 150), (20, 60, 200), -1)
  path = str(tmp_path / "no_face.png")
  cv2.imwrite(path, blank)
  embedder = _load(models["tflite"], mtcnn_detector)
  assert embedder.embed(path) == []
  with pytest.raises(NoFaceInPhoto, match="no_face.png: no face found"):
    embedder.embed_face(path)
  centred = _load(models["tflite"], mtcnn_detector, on_no_face="center")
  (face,) = centred.embed(path)
  assert face.status == "fallback" and face.landmarks is None and face.box == (50, 0, 200, 200)


def test_a_grayscale_photo_is_read_as_training_reads_it(shared_data, models, mtcnn_detector):
  """ORL's 8-bit grayscale PGM goes through data.images.read_image (three equal channels)
  and the same aligner: a face is found and embedded."""
  embedder = _load(models["saved_model"], mtcnn_detector)
  (face,) = embedder.embed(os.path.join(shared_data, "orl_faces", "s1", "1.pgm"))
  assert face.status == "aligned"


def test_a_tight_crop_is_found_only_with_padding(shared_data, models, mtcnn_detector):
  """The central 70 % of the face box of a portrait: MTCNN finds nothing in it as it is;
  the ladder's first retry (padding) does."""
  image = cv2.cvtColor(cv2.imread(os.path.join(shared_data, KNN, "train", "biden",
                                               "biden.jpg")), cv2.COLOR_BGR2RGB)
  unpadded = align.FaceAligner(size=16, detector=mtcnn_detector, detect_retries="none")
  x, y, w, h = align.choose_face(unpadded.detect(image), image.shape).box
  cx, cy = x + w / 2, y + h / 2
  crop = np.ascontiguousarray(image[int(cy - 0.35 * h):int(cy + 0.35 * h),
                                    int(cx - 0.35 * w):int(cx + 0.35 * w)])
  assert unpadded.detect(crop) == []
  embedder = _load(models["saved_model"], mtcnn_detector)
  (found,) = embedder.embed(crop)
  assert found.status == "aligned" and found.rung == "pad"
  assert found.to_json()["rung"] == "pad"


def test_verify_the_same_person_and_the_calibrated_threshold(shared_data, models,
                                                             mtcnn_detector):
  embedder = _load(models["run"], mtcnn_detector)
  photo = os.path.join(shared_data, KNN, "train", "biden", "biden.jpg")
  result = embedder.verify(photo, photo)
  assert result.score == pytest.approx(1.0, abs=1e-5) and result.same
  assert result.threshold == embedder.calibration["best_accuracy"]["threshold"]
  assert result.to_json()["threshold_name"] == "best_accuracy"
  forced = embedder.verify(photo, photo, threshold=1.0)
  assert not forced.same and forced.threshold_name == "given"


# --------------------------------------------------------------------- gallery
def _people(shared_data, root):
  for person in ("biden", "obama"):
    shutil.copytree(os.path.join(shared_data, KNN, "train", person), os.path.join(root, person))
  return str(root)


def test_gallery_enrols_resumes_and_identifies(shared_data, models, mtcnn_detector, tmp_path,
                                               monkeypatch):
  root = _people(shared_data, tmp_path / "people")
  path = str(tmp_path / "gallery.jsonl")
  embedder = _load(models["saved_model"], mtcnn_detector)
  # Interrupted after two images (as by a kill): their records are in the file.
  original, calls = embedder.embed_face, []

  def interrupted(photo):
    calls.append(photo)
    if len(calls) == 3:
      raise KeyboardInterrupt
    return original(photo)

  monkeypatch.setattr(embedder, "embed_face", interrupted)
  with pytest.raises(KeyboardInterrupt):
    Gallery(embedder, path).enrol(root, progress=False)
  with open(path, "a") as f:
    f.write('{"person": "torn')  # a write cut mid-line
  monkeypatch.setattr(embedder, "embed_face", original)
  resumed = Gallery(embedder, path)
  assert len(resumed.records) == 2
  report = resumed.enrol(root, progress=False)
  assert (report.people, report.enrolled, report.added, report.failed) == (2, 4, 2, [])
  clean = Gallery(embedder, str(tmp_path / "clean.jsonl"))
  clean.enrol(root, progress=False)
  key = lambda r: r["path"]  # noqa: E731
  for a, b in zip(sorted(Gallery(embedder, path).records, key=key),
                  sorted(clean.records, key=key)):
    assert a["path"] == b["path"] and a["person"] == b["person"]
    np.testing.assert_allclose(a["embedding"], b["embedding"], atol=1e-5)
  # Every enrolled image identifies its own person (cosine 1 > any threshold < 1).
  (match,) = resumed.identify(os.path.join(root, "obama", "obama.jpg"), top_k=2)
  assert match.name == "obama" and match.candidates[0][1] == pytest.approx(1, abs=1e-5)
  assert [name for name, _ in match.candidates] == ["obama", "biden"]
  (unknown,) = resumed.identify(os.path.join(root, "obama", "obama.jpg"), threshold=1.01)
  assert unknown.name == "unknown"


def test_gallery_refuses_another_models_embeddings(shared_data, models, mtcnn_detector,
                                                   tmp_path):
  root = _people(shared_data, tmp_path / "people")
  os.remove(os.path.join(root, "obama", "obama2.jpg"))
  shutil.rmtree(os.path.join(root, "biden"))
  path = str(tmp_path / "gallery.jsonl")
  Gallery(_load(models["saved_model"], mtcnn_detector), path).enrol(root, progress=False)
  with pytest.raises(GalleryError, match="gallery.jsonl: holds embeddings of another model"):
    Gallery(_load(models["tflite"], mtcnn_detector), path)
  with open(path, "w") as f:
    f.write('{"something": "else"}\n')
  with pytest.raises(GalleryError, match="gallery.jsonl: not an enas_face gallery file"):
    Gallery(_load(models["saved_model"], mtcnn_detector), path)


# -------------------------------------------------------------------- commands
def test_photo_commands(shared_data, models, main_in_process, tmp_path):
  photo = os.path.join(shared_data, KNN, "test", "obama1.jpg")
  result = main_in_process("--mode=embed", f"--model_path={models['tflite']}",
                           f"--photos={photo}", "--output=jsonl")
  assert result.returncode == 0, result.stderr[-2000:]
  (line,) = [json.loads(l) for l in result.stdout.splitlines() if l.startswith("{")]
  assert len(line["embedding"]) == 8 and line["status"] == "aligned"

  result = main_in_process("--mode=verify", f"--model_path={models['saved_model']}",
                           f"--photos={photo},{photo}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "same person" in result.stdout and "best_accuracy" in result.stdout

  root = _people(shared_data, tmp_path / "people")
  result = main_in_process("--mode=identify", f"--model_path={models['saved_model']}",
                           f"--gallery_dir={root}", f"--photos={root}/biden/biden.jpg",
                           "--output=jsonl")
  assert result.returncode == 0, result.stderr[-2000:]
  (line,) = [json.loads(l) for l in result.stdout.splitlines() if l.startswith("{")]
  assert line["name"] == "biden"
  assert os.path.isfile(os.path.join(root, "enas_face_gallery.jsonl"))


@pytest.mark.parametrize("flags, message", [
    (["--model_path=/nowhere/model.tflite", "--photos=a.jpg"],
     "--model_path=/nowhere/model.tflite: no such file or folder"),
    (["--photos=x"], "needs --model_path"),
    (["--model_path=MODEL", "--photos=/nowhere.jpg"], "--photos: /nowhere.jpg: no such file"),
    (["--model_path=MODEL", "--photos=PHOTO"], "compares two photos"),
    (["--model_path=MODEL", "--photos=PHOTO,PHOTO", "--threshold=2"], "must lie in \\[-1, 1\\]"),
    (["--model_path=MODEL", "--photos=BROKEN,PHOTO"], "broken.jpg: "),
    (["--model_path=MODEL", "--photos=PHOTO,PHOTO"], "photo.png: no face found"),
])
def test_photo_command_errors_name_the_flag_or_file(models, main_in_process, tmp_path, flags,
                                                    message):
  photo = tmp_path / "photo.png"
  cv2.imwrite(str(photo), np.zeros((20, 20, 3), np.uint8))
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(b"not a jpeg")
  flags = [f.replace("MODEL", models["tflite"]).replace("PHOTO", str(photo))
           .replace("BROKEN", str(broken)) for f in flags]
  result = main_in_process("--mode=verify", *flags)
  assert result.returncode == 2, result.stderr[-2000:]
  (error,) = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert __import__("re").search(message, error), error
