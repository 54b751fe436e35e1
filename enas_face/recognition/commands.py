"""--mode=embed|verify|identify: the photo commands behind `python -m enas_face.main`.

    python -m enas_face.main --mode=embed --model_path=EXPORT --photos=photos/
    python -m enas_face.main --mode=verify --model_path=EXPORT --photos=a.jpg,b.jpg
    python -m enas_face.main --mode=identify --model_path=EXPORT --gallery_dir=people \\
        --photos=group.jpg --identify_top_k=3

Output (stdout): a readable table, or with --output=jsonl one JSON object per line (embed:
one per face, with its embedding; a photo without a usable face or that cannot be read is
a line with "error"). A progress bar goes to stderr for more than one photo. A bad model,
gallery or threshold, and in verify an unreadable photo or one without a face, end the
command with one `error: ...` line naming the file (exit 2, main.py).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Iterator

from tqdm import tqdm

from enas_face.config import PhotoConfig
from enas_face.data import images as image_io
from enas_face.evaluation.thresholds import ThresholdError
from enas_face.recognition.embedder import Embedder, EmbedderError, NoFaceInPhoto
from enas_face.recognition.gallery import DEFAULT_FILE, Gallery, GalleryError

# The errors a photo command turns into one `error:` line naming the file (main.py).
ERRORS = (EmbedderError, NoFaceInPhoto, GalleryError, ThresholdError, image_io.ImageError)


def list_photos(paths) -> list[str]:
  """The files of `paths` in order, each folder replaced by its image files (recursively,
  sorted; hidden entries skipped)."""
  out = []
  for path in paths:
    if not os.path.isdir(path):
      out.append(path)
      continue
    for folder, dirs, files in os.walk(path):
      dirs[:] = sorted(d for d in dirs if not d.startswith("."))
      out += [os.path.join(folder, name) for name in sorted(files)
              if not name.startswith(".")
              and os.path.splitext(name)[1].lower() in image_io.IMAGE_EXTENSIONS]
  return out


def _progress(photos: list[str], description: str) -> Iterator[str]:
  return iter(tqdm(photos, desc=description, unit="photo", disable=len(photos) < 2,
                   file=sys.stderr))


def _table(rows: list[list[str]], header: list[str]) -> str:
  widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
  lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
           for row in [header, *rows]]
  return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _box(box) -> str:
  return "(" + ", ".join(f"{v:.0f}" for v in box) + ")"


def run(config: PhotoConfig, out=None) -> int:
  """Runs the photo command; returns the number of photos that failed (embed, identify)."""
  out = out or sys.stdout
  embedder = Embedder.load(config.model_path, threshold=config.threshold,
                           **config.aligner_options())
  photos = list_photos(config.photos)
  if config.mode == "verify":
    result = embedder.verify(*photos)
    if config.output == "jsonl":
      print(json.dumps(result.to_json()), file=out)
    else:
      print(_table([[result.a.photo, result.b.photo, f"{result.score:.4f}",
                     f"{result.threshold:.4f} ({result.threshold_name})",
                     "same person" if result.same else "different people"]],
                   ["photo A", "photo B", "cosine", "threshold", "decision"]), file=out)
    return 0
  if config.mode == "embed":
    return _embed(embedder, photos, config, out)
  return _identify(embedder, photos, config, out)


def _per_photo(photos: list[str], description: str, work, config: PhotoConfig, out):
  """(photo, results, error) per photo, results = work(photo), each printed as a JSON line
  with --output=jsonl; a photo that cannot be read or has no usable face gives ([], why) and
  its error line."""
  for photo in _progress(photos, description):
    try:
      results, error = work(photo), ""
    except image_io.ImageError as e:
      results, error = [], e.reason
    if not results:
      error = error or "no face found"
      if config.output == "jsonl":
        print(json.dumps({"photo": photo, "error": error}), file=out, flush=True)
    for result in results:
      if config.output == "jsonl":
        print(json.dumps(result.to_json()), file=out, flush=True)
    yield photo, results, error


def _embed(embedder: Embedder, photos: list[str], config: PhotoConfig, out) -> int:
  rows, failed = [], 0
  for photo, faces, error in _per_photo(photos, "embed", embedder.embed, config, out):
    failed += bool(error)
    if error:
      rows.append([photo, "-", "-", "-", "-", error])
    rows += [[photo, str(face.index), face.status, _box(face.box), f"{face.confidence:.3f}",
              f"{len(face.embedding)}-d"] for face in faces]
  if config.output == "table":
    print(_table(rows, ["photo", "face", "status", "box (x, y, w, h)", "confidence",
                        "embedding"]), file=out)
  print(f"{sum(r[1] != '-' for r in rows)} faces in {len(photos) - failed} of {len(photos)} "
        f"photos ({embedder.kind} {embedder.path})", file=sys.stderr)
  return failed


def _identify(embedder: Embedder, photos: list[str], config: PhotoConfig, out) -> int:
  threshold = embedder.threshold  # before enrolling: a model without one fails at once
  gallery_file = config.gallery_file or os.path.join(config.gallery_dir, DEFAULT_FILE)
  gallery = Gallery(embedder, gallery_file)
  if config.gallery_dir:
    report = gallery.enrol(config.gallery_dir)
    print(f"gallery: {report.people} people, {report.enrolled} images enrolled ({report.added} "
          f"new), {len(report.failed)} without a usable face ({gallery_file})", file=sys.stderr)
  rows, failed = [], 0
  work = lambda photo: gallery.identify(photo, config.identify_top_k)  # noqa: E731
  for photo, matches, error in _per_photo(photos, "identify", work, config, out):
    failed += bool(error)
    if error:
      rows.append([photo, "-", "-", error, ""])
    rows += [[photo, str(match.face.index), _box(match.face.box), match.name,
              ", ".join(f"{n} {s:.3f}" for n, s in match.candidates)] for match in matches]
  if config.output == "table":
    print(_table(rows, ["photo", "face", "box (x, y, w, h)", "name",
                        f"top {config.identify_top_k} (cosine; unknown at <= {threshold:.4f})"]),
          file=out)
  return failed
