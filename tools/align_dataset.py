"""Aligns a folder dataset (ROOT/<identity>/<image>) into sharded TFRecords of faces.

    python tools/align_dataset.py --input_dir=/tmp/lfw/lfw-deepfunneled \\
        --output_dir=/tmp/lfw_aligned_112
    python tools/align_dataset.py --input_dir=faces --output_dir=faces_112 --no_detect
    python tools/align_dataset.py --input_dir=crops --output_dir=crops_112 --on_no_face=center

Every image is decoded, its face found by MTCNN (when the image as it is holds no usable
face, retried on the rungs of --detect_retries in order: padded by --detect_padding x
its longer side, padded more, lower thresholds, MTCNN's last stage on the whole image:
faces that fill the frame; see enas_face/data/align.py FaceAligner) and warped onto the
5-point 112x112 template (--no_detect: only resized), and
written to OUTPUT_DIR/part-NNNNN.tfrecord (format: enas_face/data/tfrecord.py).
Images that cannot be decoded, or hold no usable face with --on_no_face=reject,
are listed in the manifest's "rejects" with their reason; with
--on_no_face=center an image without a usable face is written as its centred
square resize and listed in "fallbacks" (marked "aligned": false). Per identity
the manifest counts aligned / fallback / rejected images; accepted (aligned +
fallback) + rejected = image files found.

The work list is deterministic (sorted identities, sorted files) and cut into
chunks of --images_per_shard; chunk k becomes part-k.tfrecord plus part-k.json
(its counts and rejects), both written atomically. A rerun with the same flags
skips the chunks whose JSON exists, so an interrupted run resumes; a rerun with
other settings is refused (they are kept in OUTPUT_DIR/settings.json). Chunks run
on --workers processes ('spawn' start, one aligner and one TensorFlow thread per
process). At the end, OUTPUT_DIR/manifest.json merges all chunk results.

Bad input (a flag, a folder) ends with one line `error: ...` and exit code 2.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import multiprocessing
import os
import sys
import threading
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any TensorFlow import
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from a checkout
  sys.path.insert(0, ROOT)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from enas_face import cli  # noqa: E402
from enas_face.config import ConfigError  # noqa: E402
from enas_face.data import align as face_align  # noqa: E402
from enas_face.data import folder as image_folder  # noqa: E402
from enas_face.data import images as image_io  # noqa: E402

SETTINGS = "settings.json"
# What a settings.json written before --detect_padding / --on_no_face / --detect_retries
# existed meant: an interrupted run of such a version resumes with --detect_padding=0 (no
# padding) or --detect_retries=pad (the padded retry only); the refusal says which.
SETTINGS_BEFORE_PADDING = {"detect_padding": 0.0, "on_no_face": "reject", "detect_retries": "pad"}
IMAGE_FORMATS = ("jpeg", "png")
FLAGS = flags.FLAGS


class AlignDatasetError(ValueError):
  """Bad flags, input folder or output folder; the message names which."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything that decides the output; a resumed run must use the same."""
  input_dir: str
  image_size: int = 112
  policy: str = "largest_central"
  min_confidence: float = 0.9
  image_format: str = "jpeg"
  jpeg_quality: int = 95
  max_pixels: int = image_io.DEFAULT_MAX_PIXELS
  images_per_shard: int = 1000
  limit_identities: int = 0
  no_detect: bool = False
  detect_padding: float = face_align.DEFAULT_DETECT_PADDING
  on_no_face: str = "reject"
  detect_retries: str = face_align.format_detect_retries(face_align.DEFAULT_DETECT_RETRIES)

  def __post_init__(self):
    object.__setattr__(self, "input_dir", os.path.abspath(self.input_dir))
    try:  # the canonical spelling, so that " pad, onet" resumes a "pad,onet" run
      object.__setattr__(self, "detect_retries",
                         face_align.format_detect_retries(self.detect_retries))
    except ValueError as e:  # "detect_retries: ..." names the flag
      raise AlignDatasetError(f"--{e}") from e
    checks = [
        (self.image_size >= 8, "--image_size", f"must be >= 8, got {self.image_size}"),
        (self.policy in face_align.FACE_POLICIES, "--policy",
         f"must be one of {face_align.FACE_POLICIES}, got {self.policy!r}"),
        (0.0 <= self.min_confidence <= 1.0, "--min_confidence",
         f"must lie in [0, 1], got {self.min_confidence}"),
        (self.image_format in IMAGE_FORMATS, "--format",
         f"must be one of {IMAGE_FORMATS}, got {self.image_format!r}"),
        (1 <= self.jpeg_quality <= 100, "jpeg_quality", f"must lie in 1..100, got {self.jpeg_quality}"),
        (self.max_pixels >= 1, "--max_pixels", f"must be >= 1, got {self.max_pixels}"),
        (self.images_per_shard >= 1, "--images_per_shard",
         f"must be >= 1, got {self.images_per_shard}"),
        (self.limit_identities >= 0, "--limit_identities",
         f"must be >= 0, got {self.limit_identities}"),
        (0.0 <= self.detect_padding <= 2.0, "--detect_padding",
         f"must lie in [0, 2] (a fraction of the longer side), got {self.detect_padding}"),
        (self.on_no_face in face_align.NO_FACE_POLICIES, "--on_no_face",
         f"must be one of {face_align.NO_FACE_POLICIES}, got {self.on_no_face!r}"),
    ]
    for ok, flag, message in checks:
      if not ok:
        raise AlignDatasetError(f"{flag} {message}")

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class WorkList:
  identities: list[str]          # sorted identity folder names; label = index
  files: list[tuple[int, str]]   # (label, relative path), sorted
  empty_identities: list[str]
  ignored_files: list[str]

  def chunks(self, images_per_shard: int) -> list[list[tuple[int, str]]]:
    return [self.files[start:start + images_per_shard]
            for start in range(0, len(self.files), images_per_shard)]


class SquareResizer:
  """--no_detect 'aligner': centre square crop + resize of already aligned faces.

  Its results count as "aligned" (the input is aligned already)."""

  def __init__(self, size: int):
    self.size = size

  def align_or_fallback(self, image):
    from enas_face.data.real import fit_square
    return fit_square(image, self.size), "aligned", ""


def make_aligner(settings: Settings):
  """The aligner of one process: MTCNN + 5-point warp, or SquareResizer with --no_detect."""
  if settings.no_detect:
    return SquareResizer(settings.image_size)
  return face_align.FaceAligner(size=settings.image_size, policy=settings.policy,
                                min_confidence=settings.min_confidence,
                                detect_padding=settings.detect_padding,
                                detect_retries=settings.detect_retries,
                                on_no_face=settings.on_no_face)


def list_work(settings: Settings) -> WorkList:
  """Identity folders and image files of --input_dir (the first --limit_identities if > 0)."""
  try:
    listing = image_folder.scan_folder(settings.input_dir)
  except ConfigError as e:
    raise AlignDatasetError(f"--input_dir: {e}") from e
  identities = listing.identities
  if settings.limit_identities:
    identities = identities[:settings.limit_identities]
  kept = set(identities)
  files = [(label, path) for label, path in listing.files if label < len(identities)]
  if not files:
    raise AlignDatasetError(f"--input_dir: the first {len(identities)} identity folders of "
                            f"{settings.input_dir} hold no image files")
  return WorkList(identities, files,
                  [name for name in listing.empty_identities if name in kept],
                  [path for path in listing.ignored_files if path.split("/", 1)[0] in kept])


def _fingerprint(files: list[tuple[int, str]]) -> str:
  return hashlib.sha1("\n".join(f"{label}\t{path}" for label, path in files).encode()).hexdigest()


_FLAG_OF = {"image_format": "--format", "jpeg_quality": "jpeg_quality (no flag)"}  # else --key


def prepare_output(output_dir: str, settings: Settings) -> None:
  """Creates output_dir with settings.json, or checks that an existing one matches settings."""
  output_dir = os.path.abspath(output_dir)
  if output_dir == settings.input_dir or output_dir.startswith(settings.input_dir + os.sep):
    raise AlignDatasetError(f"--output_dir={output_dir} lies inside --input_dir "
                            f"{settings.input_dir}; it would become an identity folder")
  path = os.path.join(output_dir, SETTINGS)
  if os.path.isfile(path):
    with open(path, encoding="utf-8") as f:
      previous = {**SETTINGS_BEFORE_PADDING, **json.load(f)}
    if previous != settings.as_dict():
      changed = sorted(key for key in set(previous) | set(settings.as_dict())
                       if previous.get(key) != settings.as_dict().get(key))
      details = ", ".join(f"{_FLAG_OF.get(key, '--' + key)}: {previous.get(key)!r} -> "
                          f"{settings.as_dict().get(key)!r}" for key in changed)
      raise AlignDatasetError(f"--output_dir={output_dir} holds a run with other settings "
                              f"({details}); use a new --output_dir or the same flags to resume")
    for name in os.listdir(output_dir):  # leftovers of a killed run, rewritten below
      if name.endswith(".tmp"):
        os.remove(os.path.join(output_dir, name))
    return
  if os.path.isdir(output_dir) and os.listdir(output_dir):
    raise AlignDatasetError(f"--output_dir={output_dir} is not empty and has no {SETTINGS} "
                            "(not written by this tool); use a new or empty folder")
  os.makedirs(output_dir, exist_ok=True)
  from enas_face.data import tfrecord
  tfrecord.write_json_atomic(path, settings.as_dict())


# ---------------------------------------------------------------------------- per process work

# The state of one worker process (or of the main process when running inline).
_WORKER: dict = {}


def _init_worker(settings: Settings, aligner_factory: Callable, progress_queue,
                 limit_threads: bool) -> None:
  """Pool initializer: one TensorFlow thread (set before any TF op runs) and one aligner."""
  if limit_threads:
    import cv2
    import tensorflow as tf
    try:
      tf.config.threading.set_intra_op_parallelism_threads(1)
      tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as e:  # TensorFlow already running in this process
      logging.warning("cannot limit TensorFlow to one thread: %s", e)
    cv2.setNumThreads(1)
  _WORKER.update(settings=settings, aligner=aligner_factory(settings),
                 progress=progress_queue.put if progress_queue is not None else None)


def _align_one(path: str, settings: Settings, aligner):
  """(face uint8 [S, S, 3], "aligned" | "fallback", reason) or (None, "rejected", reason)."""
  try:
    image = image_io.read_image(path, max_pixels=settings.max_pixels)
  except image_io.ImageError as e:
    return None, "rejected", e.reason
  face, status, reason = aligner.align_or_fallback(image)
  if status not in face_align.STATUSES or (face is None) != (status == "rejected"):
    raise ValueError(f"{path}: the aligner returned status {status!r} with "
                     f"{'no image' if face is None else 'an image'}")
  if face is None:
    return None, status, reason or "no face"
  if face.shape != (settings.image_size, settings.image_size, 3):
    raise ValueError(f"{path}: the aligner returned {face.shape}, expected "
                     f"{(settings.image_size, settings.image_size, 3)}")
  return face, status, reason


def chunk_json_path(output_dir: str, index: int) -> str:
  return os.path.join(output_dir, f"part-{index:05d}.json")


def process_chunk(task: tuple[int, list[tuple[int, str]], str]) -> dict:
  """Aligns one chunk into its shard, then writes its JSON; returns that JSON's content."""
  from enas_face.data import tfrecord
  index, files, output_dir = task
  settings, aligner, progress = _WORKER["settings"], _WORKER["aligner"], _WORKER["progress"]
  tic = time.perf_counter()
  counts: collections.Counter = collections.Counter()
  statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  rejects, fallbacks = [], []
  shard = tfrecord.shard_name(index)
  with tfrecord.ShardWriter(os.path.join(output_dir, shard), settings.image_format,
                            settings.jpeg_quality) as writer:
    for label, relpath in files:
      identity = relpath.split("/", 1)[0]
      face, status, reason = _align_one(os.path.join(settings.input_dir, relpath), settings,
                                        aligner)
      statuses[identity][status] += 1
      if face is None:
        rejects.append({"path": relpath, "reason": reason})
      else:
        writer.write(face, label, identity, relpath)
        counts[identity] += 1
        if status == "fallback":
          fallbacks.append({"path": relpath, "reason": reason, "aligned": False})
      if progress is not None:
        progress(1)
  result = {"chunk": index, "shard": shard, "num_files": len(files),
            "fingerprint": _fingerprint(files), "first": files[0][1], "last": files[-1][1],
            "num_images": sum(counts.values()), "counts": dict(sorted(counts.items())),
            "statuses": {name: dict(statuses[name]) for name in sorted(statuses)},
            "rejects": rejects, "fallbacks": fallbacks,
            "seconds": round(time.perf_counter() - tic, 3)}
  tfrecord.write_json_atomic(chunk_json_path(output_dir, index), result)
  return result


# ---------------------------------------------------------------------------- the run

def _finished_chunk(output_dir: str, index: int, files: list[tuple[int, str]]) -> dict | None:
  """The saved result of chunk `index` if its JSON and shard exist, else None."""
  from enas_face.data import tfrecord
  path = chunk_json_path(output_dir, index)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    result = json.load(f)
  if result.get("fingerprint") != _fingerprint(files):
    raise AlignDatasetError(
        f"{path} was written for other files ({result.get('first')} .. {result.get('last')}) "
        f"than chunk {index} holds now ({files[0][1]} .. {files[-1][1]}): --input_dir changed "
        "since; use a new --output_dir")
  if not os.path.isfile(os.path.join(output_dir, tfrecord.shard_name(index))):
    return None
  return result


def _run_chunks(tasks, settings: Settings, workers: int, aligner_factory: Callable,
                progress: bool, limit_threads: bool) -> list[dict]:
  """Runs the tasks inline (1 process) or on a spawn Pool; results in completion order."""
  from tqdm import tqdm
  total = sum(len(files) for _, files, _ in tasks)
  bar = tqdm(total=total, unit="img", disable=not progress, smoothing=0.05, dynamic_ncols=True)
  results = []
  processes = min(workers, len(tasks))
  try:
    if processes <= 1:
      _init_worker(settings, aligner_factory, None, limit_threads=limit_threads)
      _WORKER["progress"] = bar.update
      for task in tasks:
        results.append(process_chunk(task))
      return results
    context = multiprocessing.get_context("spawn")  # fork after importing TF is unsafe
    queue = context.Queue()

    def drain():
      for count in iter(queue.get, None):
        bar.update(count)

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    pool = context.Pool(processes, initializer=_init_worker,
                        initargs=(settings, aligner_factory, queue, True))
    try:
      for result in pool.imap_unordered(process_chunk, tasks):
        results.append(result)
      pool.close()
      pool.join()
    except BaseException:
      pool.terminate()
      raise
    finally:
      queue.put(None)
      drainer.join(timeout=5)
    return results
  finally:
    _WORKER.clear()
    bar.close()


def build_manifest(settings: Settings, work: WorkList, results: list[dict],
                   seconds: float) -> dict:
  """Merges the chunk results (in chunk order) into the manifest (see tfrecord.py).

  Beyond the keys tfrecord.py reads: min_confidence, detect_padding, detect_retries, on_no_face,
  image_format, per identity its "aligned" / "fallback" / "rejected" image counts
  ("count" = aligned + fallback = images in the shards), num_aligned, num_fallback,
  "fallbacks" (path, why no face, "aligned": false: written as centred square
  resizes), num_ignored_files (files without an image suffix) and seconds, the wall
  time of the run that wrote the manifest (a resumed run counts only itself).
  """
  from enas_face.data import tfrecord
  results = sorted(results, key=lambda r: r["chunk"])
  counts: collections.Counter = collections.Counter()
  statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  rejects, fallbacks = [], []
  for result in results:
    counts.update(result["counts"])
    for name, by_status in result["statuses"].items():
      statuses[name].update(by_status)
    rejects.extend(result["rejects"])
    fallbacks.extend(result["fallbacks"])
  num_images = sum(counts.values())
  num_aligned = sum(by_status["aligned"] for by_status in statuses.values())
  return {
      "format": tfrecord.FORMAT, "version": tfrecord.VERSION,
      "image_size": settings.image_size, "aligned": not settings.no_detect,
      "policy": None if settings.no_detect else settings.policy,
      "min_confidence": None if settings.no_detect else settings.min_confidence,
      "detect_padding": None if settings.no_detect else settings.detect_padding,
      "detect_retries": None if settings.no_detect else settings.detect_retries,
      "on_no_face": None if settings.no_detect else settings.on_no_face,
      "image_format": settings.image_format, "source": settings.input_dir,
      "num_images": num_images, "num_identities": len(work.identities),
      "identities": [{"name": name, "label": label, "count": counts.get(name, 0),
                      **{status: statuses[name][status] for status in face_align.STATUSES}}
                     for label, name in enumerate(work.identities)],
      "num_aligned": num_aligned, "num_fallback": len(fallbacks), "fallbacks": fallbacks,
      "rejects": rejects, "num_rejects": len(rejects),
      "empty_identities": work.empty_identities,
      "num_ignored_files": len(work.ignored_files),
      "shards": [result["shard"] for result in results],
      "seconds": round(seconds, 2),
  }


def reject_categories(rejects: list[dict]) -> dict[str, int]:
  """Rejects counted by reason, details in parentheses dropped ('truncated or corrupt image')."""
  counts = collections.Counter(r["reason"].split(" (", 1)[0] for r in rejects)
  return dict(counts.most_common())


def align_dataset(settings: Settings, output_dir: str, workers: int | None = None,
                  aligner_factory: Callable = make_aligner, progress: bool = True,
                  limit_threads: bool = False) -> dict:
  """Aligns settings.input_dir into output_dir (resuming a previous run); returns the manifest.

  aligner_factory(settings) -> object with align_or_fallback(image) -> (face or None,
  status, reason), as `FaceAligner.align_or_fallback`;
  with workers > 1 it must be picklable (a module-level function or class). Worker
  processes always run TensorFlow on one thread (MTCNN is faster so: 11.9 vs 9.4
  images/s here); with one worker the chunks run in this process, on one thread only
  if limit_threads (the command line sets it; a library caller's TF stays untouched).
  """
  tic = time.perf_counter()
  workers = workers or os.cpu_count() or 1
  if workers < 1:
    raise AlignDatasetError(f"--workers must be >= 1, got {workers}")
  work = list_work(settings)
  prepare_output(output_dir, settings)
  output_dir = os.path.abspath(output_dir)
  chunks = work.chunks(settings.images_per_shard)
  done, tasks = [], []
  for index, files in enumerate(chunks):
    result = _finished_chunk(output_dir, index, files)
    if result is None:
      tasks.append((index, files, output_dir))
    else:
      done.append(result)
  logging.info("%s: %d identities (%d empty), %d image files, %d other files ignored; "
               "%d chunks of <= %d, %d done before, %d to do on %d worker(s)",
               settings.input_dir, len(work.identities), len(work.empty_identities),
               len(work.files), len(work.ignored_files), len(chunks), settings.images_per_shard,
               len(done), len(tasks), min(workers, max(len(tasks), 1)))
  run_tic = time.perf_counter()
  new = (_run_chunks(tasks, settings, workers, aligner_factory, progress, limit_threads)
         if tasks else [])
  run_seconds = time.perf_counter() - run_tic
  manifest = build_manifest(settings, work, done + new, time.perf_counter() - tic)
  accepted, rejected = manifest["num_images"], manifest["num_rejects"]
  if accepted + rejected != len(work.files):
    raise RuntimeError(f"{output_dir}: {accepted} accepted + {rejected} rejected != "
                       f"{len(work.files)} image files; the chunk JSONs are inconsistent")
  from enas_face.data import tfrecord  # TensorFlow: imported once the input is known good
  tfrecord.write_manifest(output_dir, manifest)
  processed = sum(len(files) for _, files, _ in tasks)
  with_faces = sum(1 for identity in manifest["identities"] if identity["count"])
  logging.info("wrote %d faces of %d identities (of %d identity folders) to %s: %d aligned, "
               "%d centred fallbacks", accepted, with_faces, len(work.identities), output_dir,
               manifest["num_aligned"], manifest["num_fallback"])
  logging.info("rejected %d of %d image files: %s", rejected, len(work.files),
               reject_categories(manifest["rejects"]) or "none")
  if work.empty_identities:
    logging.info("empty identity folders: %s", work.empty_identities[:20])
  if processed:
    logging.info("aligned %d images in %.1f s (%.2f images/s) with %d worker(s)", processed,
                 run_seconds, processed / run_seconds, min(workers, len(tasks)))
  return manifest


# ---------------------------------------------------------------------------- command line

def define_flags() -> None:
  """The tool's flags (defined only when run as a script: enas_face.flags has --image_size)."""
  flags.DEFINE_string("input_dir", None, "Dataset folder: one subfolder of images per identity.")
  flags.DEFINE_string("output_dir", None, "Folder for the shards, manifest.json and settings.json "
                      "(rerun with the same flags to resume).")
  flags.DEFINE_integer("image_size", 112, "Side of the aligned square faces.", lower_bound=8)
  flags.DEFINE_enum("policy", "largest_central", face_align.FACE_POLICIES,
                    "Which face of an image with several.")
  flags.DEFINE_float("min_confidence", 0.9, "MTCNN detections below this are ignored.",
                     lower_bound=0.0, upper_bound=1.0)
  flags.DEFINE_integer("workers", None, "Processes (default: os.cpu_count()); each runs one "
                       "aligner on one TensorFlow thread.", lower_bound=1)
  flags.DEFINE_integer("images_per_shard", 1000, "Images per shard = the unit of work and of "
                       "resuming.", lower_bound=1)
  flags.DEFINE_enum("format", "jpeg", IMAGE_FORMATS, "Encoding of the stored faces "
                    "(JPEG quality 95, or lossless PNG).")
  flags.DEFINE_integer("max_pixels", image_io.DEFAULT_MAX_PIXELS, "Images with more pixels are "
                       "rejected before decoding.", lower_bound=1)
  flags.DEFINE_integer("limit_identities", 0, "Only the first N identities in sorted order "
                       "(0 = all); for quick runs.", lower_bound=0)
  flags.DEFINE_boolean("no_detect", False, "The input is aligned already: decode, centre-crop "
                       "to a square, resize to --image_size and write.")
  flags.DEFINE_float("detect_padding", face_align.DEFAULT_DETECT_PADDING, "An image without "
                     "a face is searched again padded by this fraction of its longer side (0 = "
                     "off): finds faces that fill the frame (pre-cropped data).",
                     lower_bound=0.0, upper_bound=2.0)
  flags.DEFINE_string("detect_retries",
                      face_align.format_detect_retries(face_align.DEFAULT_DETECT_RETRIES),
                      "What the detector tries, in this order, when the image as it is holds "
                      "no usable face: comma-separated rungs of pad (padded by "
                      "--detect_padding), more_pad (padded more), low_confidence (lower MTCNN "
                      "thresholds), onet (MTCNN's last stage on the whole image as the face "
                      "box); 'none': no retry. Then --on_no_face.")
  flags.DEFINE_enum("on_no_face", "reject", face_align.NO_FACE_POLICIES, "An image without a "
                    "usable face: reject it, or keep its centred square resize (a 'fallback', "
                    "listed in the manifest).")
  flags.mark_flags_as_required(["input_dir", "output_dir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected positional arguments {argv[1:]}; every option is a --flag")
  try:
    settings = Settings(input_dir=FLAGS.input_dir, image_size=FLAGS.image_size,
                        policy=FLAGS.policy, min_confidence=FLAGS.min_confidence,
                        image_format=FLAGS.format, max_pixels=FLAGS.max_pixels,
                        images_per_shard=FLAGS.images_per_shard,
                        limit_identities=FLAGS.limit_identities, no_detect=FLAGS.no_detect,
                        detect_padding=FLAGS.detect_padding,
                        detect_retries=FLAGS.detect_retries, on_no_face=FLAGS.on_no_face)
    align_dataset(settings, FLAGS.output_dir, workers=FLAGS.workers, limit_threads=True)
  except AlignDatasetError as e:
    cli.fail(str(e))


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
