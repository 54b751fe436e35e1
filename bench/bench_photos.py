"""Photos to names, measured: identification on real people, and embedding throughput.

    nice python bench/bench_photos.py --models=demo=runs/demo/fixed/top1/saved_model,\\
        lfw=runs/lfw_view1/saved_model --work_dir=runs/bench_photos

For every --models entry (name=path of a run folder, SavedModel folder or .tflite file; its
thresholds.json is read as the embedder reads it):

identify  knn   ../shared/data/photos/face_recognition/knn_examples: enrol train/ (5 people,
                9 photos), identify every face of test/ (5 photos, 8 faces: 7 of enrolled
                people, 1 of a person never enrolled, listed in KNN_TRUTH by its position).
                A detected face is matched to the truth entry whose point lies in its box.
          orl   ../shared/data/orl_faces (40 people x 10 grayscale 92x112 photos): people
                s1-s30 enrol images 1-5 and probe with 6-10 (150 known probes); s31-s40 are
                never enrolled (their 50 images are unknown probes).
          For each: top-1 accuracy over known faces (name given = truth), their unknown rate
          (called "unknown"), misidentified (another enrolled name), and unknown faces
          correctly called unknown, at the model's best_accuracy and far_1e-3 thresholds.
throughput  on the knn photos: detection + alignment time per photo (MTCNN, FaceAligner)
          apart from embedding time per face, for the SavedModel and the TFLite file of the
          model (model.tflite beside the SavedModel, when exported), batch 1.

Results go to WORK_DIR/<model>_<part>.json; a part already there is reused (rerun to
resume). Every figure is wall clock on this machine, other jobs sharing its 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


from enas_face.evaluation import thresholds  # noqa: E402
from enas_face.recognition import Embedder, Gallery  # noqa: E402
from enas_face.recognition.commands import list_photos  # noqa: E402

# knn_examples/test: per photo, one point (x, y) inside each face and who it is; "unknown" is
# a person not enrolled in train/ (the girl in obama_and_biden.jpg).
KNN_TRUTH = {
    "alex_lacamoire1.jpg": [((785, 326), "alex_lacamoire")],
    "johnsnow_test1.jpg": [((344, 253), "kit_harington")],
    "kit_with_rose.jpg": [((119, 157), "rose_leslie"), ((302, 139), "kit_harington")],
    "obama1.jpg": [((723, 376), "obama")],
    "obama_and_biden.jpg": [((845, 516), "biden"), ((1236, 481), "obama"),
                            ((1707, 1144), "unknown")],
}
THRESHOLDS = ("best_accuracy", "far_1e-3")


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--models", required=True,
                      help="comma-separated name=path (run folder, SavedModel, .tflite)")
  parser.add_argument("--shared_data", default=os.path.join(os.path.dirname(ROOT), "shared",
                                                            "data"))
  parser.add_argument("--work_dir", default="runs/bench_photos")
  parser.add_argument("--parts", default="knn,orl,throughput")
  parser.add_argument("--orl_enrolled_people", type=int, default=30)
  return parser.parse_args(argv)


def _inside(point, box) -> bool:
  x, y, w, h = box
  return x <= point[0] <= x + w and y <= point[1] <= y + h


def score(probes: list[dict]) -> dict:
  """probes: {"truth", "name"} -> the counts and rates of the module doc."""
  known = [p for p in probes if p["truth"] != "unknown"]
  unknown = [p for p in probes if p["truth"] == "unknown"]
  correct = sum(p["name"] == p["truth"] for p in known)
  called_unknown = sum(p["name"] == "unknown" for p in known)
  return {"known_faces": len(known), "top1_accuracy": correct / max(1, len(known)),
          "known_called_unknown": called_unknown / max(1, len(known)),
          "misidentified": (len(known) - correct - called_unknown) / max(1, len(known)),
          "unknown_faces": len(unknown),
          "unknown_rejected": (sum(p["name"] == "unknown" for p in unknown) / len(unknown)
                               if unknown else None)}


def identify_knn(embedder: Embedder, data: str, work: str) -> dict:
  root = os.path.join(data, "photos", "face_recognition", "knn_examples")
  gallery = Gallery(embedder, os.path.join(work, "knn_gallery.jsonl"))
  gallery.enrol(os.path.join(root, "train"), progress=False)
  out = {"expected_faces": sum(len(v) for v in KNN_TRUTH.values())}
  for choice in THRESHOLDS:
    threshold = embedder_threshold(embedder, choice)
    probes, detected, missed = [], 0, 0
    for name, truth in KNN_TRUTH.items():
      matches = gallery.identify(os.path.join(root, "test", name), threshold=threshold)
      detected += len(matches)
      for point, person in truth:
        match = next((m for m in matches if _inside(point, m.face.box)), None)
        if match is None:
          missed += 1
          continue
        probes.append({"truth": person, "name": match.name,
                       "top": [list(c) for c in match.candidates]})
    out[choice] = dict(score(probes), threshold=threshold, detected_faces=detected,
                       missed_faces=missed, probes=probes)
  return out


def identify_orl(embedder: Embedder, data: str, work: str, enrolled_people: int) -> dict:
  root = os.path.join(data, "orl_faces")
  people = sorted((d for d in os.listdir(root) if d.startswith("s")), key=lambda d: int(d[1:]))
  gallery_dir = os.path.join(work, "orl_gallery")
  if not os.path.isdir(gallery_dir):
    for person in people[:enrolled_people]:
      os.makedirs(os.path.join(gallery_dir, person))
      for i in range(1, 6):
        shutil.copy(os.path.join(root, person, f"{i}.pgm"), os.path.join(gallery_dir, person))
  gallery = Gallery(embedder, os.path.join(work, "orl_gallery.jsonl"))
  report = gallery.enrol(gallery_dir, progress=True)
  probes_files = [(person if k < enrolled_people else "unknown",
                   os.path.join(root, person, f"{i}.pgm"))
                  for k, person in enumerate(people) for i in range(6, 11)]
  faces = []
  for truth, path in probes_files:
    try:
      face = embedder.embed_face(path)
    except ValueError:
      face = None
    faces.append((truth, face))
  out = {"enrolled_images": report.enrolled, "enrol_failures": len(report.failed),
         "probes": len(faces), "probes_without_face": sum(f is None for _, f in faces)}
  for choice in THRESHOLDS:
    threshold = embedder_threshold(embedder, choice)
    probes = []
    for truth, face in faces:
      if face is None:
        probes.append({"truth": truth, "name": "unknown"})
        continue
      candidates = gallery.rank(face.embedding, 1)
      name = candidates[0][0] if candidates[0][1] > threshold else "unknown"
      probes.append({"truth": truth, "name": name})
    out[choice] = dict(score(probes), threshold=threshold)
  return out


def embedder_threshold(embedder: Embedder, choice: str) -> float:
  return thresholds.choose(embedder.calibration, choice)


def throughput(path: str, data: str) -> dict:
  """Per model form (SavedModel, TFLite): detection seconds per photo, embedding seconds per
  face (batch 1), faces per second end to end."""
  photos = list_photos([os.path.join(data, "photos", "face_recognition", "knn_examples")])
  from enas_face.recognition.embedder import model_kind
  forms = {model_kind(path): path}
  folder = path if os.path.isdir(path) else os.path.dirname(path)
  if os.path.isfile(os.path.join(folder, "model.tflite")):
    forms["tflite"] = os.path.join(folder, "model.tflite")
  out = {"photos": len(photos)}
  for form, model_path in forms.items():
    embedder = Embedder.load(model_path)
    embedder.embed(photos[0])  # builds MTCNN and traces the model
    detect, embed, faces = 0.0, 0.0, 0
    for photo in photos:
      image, _ = embedder.read(photo)
      tic = time.perf_counter()
      crops = embedder.crops(image)
      detect += time.perf_counter() - tic
      for crop, _, _ in crops:
        tic = time.perf_counter()
        embedder.embed_crops(crop[None])
        embed += time.perf_counter() - tic
      faces += len(crops)
    out[form] = {"faces": faces, "detect_seconds_per_photo": detect / len(photos),
                 "embed_ms_per_face": 1000 * embed / max(1, faces),
                 "faces_per_second": faces / (detect + embed),
                 "embed_only_faces_per_second": faces / embed if embed else None}
  return out


def main(argv=None) -> None:
  args = parse_args(argv)
  os.makedirs(args.work_dir, exist_ok=True)
  models = dict(item.split("=", 1) for item in args.models.split(","))
  results = {}
  for name, path in models.items():
    for part in args.parts.split(","):
      out = os.path.join(args.work_dir, f"{name}_{part}.json")
      if os.path.exists(out):
        with open(out) as f:
          results[(name, part)] = json.load(f)
        continue
      work = os.path.join(args.work_dir, name)
      os.makedirs(work, exist_ok=True)
      print(f"{name}: {part} ...", flush=True)
      if part == "throughput":
        result = throughput(path, args.shared_data)
      else:
        embedder = Embedder.load(path)
        result = (identify_knn(embedder, args.shared_data, work) if part == "knn" else
                  identify_orl(embedder, args.shared_data, work, args.orl_enrolled_people))
      result["model"] = path
      with open(out + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
      os.replace(out + ".tmp", out)
      results[(name, part)] = result
  print_tables(models, results)


def print_tables(models: dict, results: dict) -> None:
  print("\n| model | set | threshold | top-1 (known faces) | known called unknown | "
        "misidentified | unknown rejected |")
  print("|---|---|---|---|---|---|---|")
  for name in models:
    for part in ("knn", "orl"):
      result = results.get((name, part))
      if not result:
        continue
      for choice in THRESHOLDS:
        r = result[choice]
        rejected = "" if r["unknown_rejected"] is None else \
            f"{r['unknown_rejected']:.2f} of {r['unknown_faces']}"
        print(f"| {name} | {part} | {choice} ({r['threshold']:.3f}) | {r['top1_accuracy']:.3f} "
              f"of {r['known_faces']} | {r['known_called_unknown']:.3f} | "
              f"{r['misidentified']:.3f} | {rejected} |")
  print("\n| model | form | faces | detection s/photo | embedding ms/face | faces/s end to end |")
  print("|---|---|---|---|---|---|")
  for name in models:
    result = results.get((name, "throughput"))
    if not result:
      continue
    for form in ("run", "saved_model", "tflite", "onnx"):
      if form in result:
        r = result[form]
        print(f"| {name} | {form} | {r['faces']} | {r['detect_seconds_per_photo']:.3f} | "
              f"{r['embed_ms_per_face']:.2f} | {r['faces_per_second']:.2f} |")


if __name__ == "__main__":
  main()
