"""What --distill_from names, told apart without loading it, and the teacher embeddings file
(numpy and runlog only: flags.py checks a teacher before TensorFlow loads).

Teacher kinds (`teacher_kind`):

    run           a run folder trained with --mode=fixed (config.json)
    saved_model   an exported SavedModel folder (saved_model.pb; uint8 images -> embeddings)
    onnx          an .onnx file (runtimes.OnnxRunner reads its input: uint8 or float, NHWC or
                  NCHW); the onnx extra
    dlib          a folder with dlib's face recognition model and its 5-point landmark model
                  (runtimes.DLIB_FILES); the dlib extra. It makes its own face chips from the
                  original photos, so it teaches through an embeddings file only
    embeddings    a teacher embeddings file (below): precomputed targets

The first three run on the training crops during training; every kind can be run once over
a dataset by tools/teacher_embeddings.py into an embeddings file.

The embeddings file is JSON lines (runlog.append / runlog.read), one header then one record
per image, appended in chunks (a killed run loses at most its last chunk; a torn last line
is dropped on reading and cut on resuming):

    {"format": "enas_face/teacher-embeddings", "version": 1, "teacher": PATH,
     "teacher_kind": KIND, "embedding_dim": D, "settings": {...}}
    {"key": "Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "status": "detected", "embedding": [...]}
    {"key": "sha1:3f2a...", "status": "crop", "embedding": [...]}
    {"key": "Zico/Zico_0002.jpg", "status": "no_face"}

A key is the image's path in its source when the data reader knows it (data/keys.py: a
folder's file relative to its root, an aligned record's image/path, an LFW pairs file's
image; '/'-separated), else "sha1:" + the sha1 of its pixels at the run's image size
(synthetic faces, .bin pairs). The stored embedding is the teacher's raw output (dlib's is
not a unit vector); users normalise. Statuses: "crop" (a crop teacher on the dataset's own
image), "detected" / "whole_image" (dlib found the face / used the whole photo as its box),
"no_face" and "unreadable" (no embedding: the image is missing from the file's targets).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os

import numpy as np

from enas_face.config import ConfigError
from enas_face.data import keys
from enas_face import runlog
from enas_face import runtimes

FORMAT = "enas_face/teacher-embeddings"
VERSION = 1
EXTENSION = ".jsonl"
TEACHER_KINDS = ("run", "saved_model", "onnx", "dlib", "embeddings")
# Kinds that run on the training pipeline's crops during training (the others are files).
ONLINE_KINDS = ("run", "saved_model", "onnx")
WITH_EMBEDDING = ("crop", "detected", "whole_image")
WITHOUT_EMBEDDING = ("no_face", "unreadable")
TOOL = "tools/teacher_embeddings.py"


def teacher_kind(path: str, flag: str = "--distill_from") -> str:
  """Which of TEACHER_KINDS `path` is; ConfigError naming `flag` when none, or when the kind
  needs an extra that is not installed (the error names the pip command)."""
  if os.path.isdir(path):
    if os.path.isfile(os.path.join(path, runlog.CONFIG)):
      return "run"
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
      return "saved_model"
    if runtimes.is_dlib_folder(path):
      if importlib.util.find_spec("dlib") is None:
        raise ConfigError(f"{flag}={path} is dlib's face model, which needs "
                          f"{runtimes.DLIB_EXTRA}; dlib is not installed")
      return "dlib"
    raise ConfigError(f"{flag}={path}: a folder that is neither a run folder (no "
                      f"{runlog.CONFIG}), a SavedModel (no saved_model.pb) nor dlib's model "
                      f"(no {' and '.join(runtimes.DLIB_FILES)})")
  if not os.path.exists(path):
    raise ConfigError(f"{flag}={path}: no such file or folder (a run folder, a SavedModel, an "
                      f".onnx file, dlib's model folder or a teacher embeddings {EXTENSION} "
                      "file)")
  if path.lower().endswith(".onnx"):
    if importlib.util.find_spec("onnxruntime") is None:
      raise ConfigError(f"{flag}={path} is an ONNX model, which needs {runtimes.ONNX_EXTRA}; "
                        "onnxruntime is not installed")
    return "onnx"
  if path.lower().endswith(EXTENSION):
    return "embeddings"
  raise ConfigError(f"{flag}={path}: a file that is neither an .onnx model nor a teacher "
                    f"embeddings {EXTENSION} file (tools/teacher_embeddings.py writes one)")


def dlib_needs_the_tool(path: str, flag: str = "--distill_from") -> ConfigError:
  """The error for dlib's model where a teacher must run on the training crops."""
  return ConfigError(
      f"{flag}={path} is dlib's face model: it finds and aligns each face itself on the "
      "original photo, so it cannot run on the training crops. Run it once over the data: "
      f"python {TOOL} --distill_from={path} --teacher_file=TEACHER.jsonl with this run's data "
      "flags (it reports the teacher's accuracy on --pairs too), then "
      "--distill_from=TEACHER.jsonl")


def header(teacher: str, kind: str, embedding_dim: int, settings: dict) -> dict:
  """The file's first record."""
  return {"format": FORMAT, "version": VERSION, "teacher": teacher, "teacher_kind": kind,
          "embedding_dim": int(embedding_dim), "settings": settings}


def record(key: str, status: str, embedding: np.ndarray | None = None,
           reason: str = "") -> dict:
  """One image's record (its embedding rounded to 7 decimals, about float32's precision)."""
  if (embedding is None) != (status in WITHOUT_EMBEDDING):
    raise ValueError(f"{key}: status {status!r} with{'out' if embedding is None else ''} an "
                     "embedding")
  out = {"key": key, "status": status}
  if embedding is not None:
    out["embedding"] = np.round(np.asarray(embedding, np.float64), 7).tolist()
  if reason:
    out["reason"] = reason
  return out


def _is_header(entry: dict) -> bool:
  return entry.get("format") == FORMAT


@dataclasses.dataclass(frozen=True)
class TeacherEmbeddings:
  """A loaded embeddings file: its header, the keys with an embedding and their embeddings
  [K, D] (raw), and every key's status."""
  path: str
  header: dict
  keys: tuple[str, ...]
  embeddings: np.ndarray
  statuses: dict

  @classmethod
  def load(cls, path: str, flag: str = "--distill_from") -> "TeacherEmbeddings":
    """ConfigError naming `flag` when the file is missing or not an embeddings file."""
    if not os.path.isfile(path):
      raise ConfigError(f"{flag}={path}: no such teacher embeddings file")
    entries = runlog.read(path)
    if not entries or not _is_header(entries[0]):
      raise ConfigError(f"{flag}={path}: not a teacher embeddings file (its first line is not "
                        f"a {FORMAT} header; tools/teacher_embeddings.py writes them)")
    head = entries[0]
    if head.get("version") != VERSION:
      raise ConfigError(f"{flag}={path}: version {head.get('version')!r}, expected {VERSION}")
    dim = int(head["embedding_dim"])
    latest: dict[str, dict] = {}
    for entry in entries[1:]:
      latest[entry["key"]] = entry
    keys = tuple(k for k, e in latest.items() if "embedding" in e)
    embeddings = (np.array([latest[k]["embedding"] for k in keys], np.float32)
                  if keys else np.zeros((0, dim), np.float32))
    if embeddings.shape != (len(keys), dim):
      raise ConfigError(f"{flag}={path}: embeddings of shape {embeddings.shape}, the header "
                        f"says {dim} dimensions")
    return cls(os.path.abspath(path), head, keys, embeddings,
               {k: e["status"] for k, e in latest.items()})

  @property
  def embedding_dim(self) -> int:
    return int(self.header["embedding_dim"])

  def lookup(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings [N, D] of `keys`, zero rows where missing; found bool [N])."""
    index = {k: i for i, k in enumerate(self.keys)}
    rows = np.array([index.get(k, -1) for k in keys], np.int64)
    found = rows >= 0
    out = np.zeros((len(keys), self.embedding_dim), np.float32)
    out[found] = self.embeddings[rows[found]]
    return out, found

  def targets(self, images: np.ndarray, paths: np.ndarray | None, what: str,
              missing: str = "error", flag: str = "--distill_from", remedy: str = ""
              ) -> tuple[np.ndarray, np.ndarray]:
    """(targets [N, D], found [N]) of a split's images by their keys. missing="error":
    ConfigError naming the file, `what` and the count of images without an embedding (the
    first keys and their statuses) and `remedy` (default: the tool, or
    --distill_missing=skip); "skip": they come back with found False."""
    wanted = keys.image_keys(images, paths)
    targets, found = self.lookup(wanted)
    if missing == "error" and not found.all():
      absent = [wanted[i] for i in np.flatnonzero(~found)]
      shown = ", ".join(f"{k} ({self.statuses.get(k, 'not in the file')})" for k in absent[:5])
      raise ConfigError(
          f"{flag}={self.path}: {len(absent)} of {len(wanted)} {what} have no teacher embedding "
          f"there (first: {shown}{' ...' if len(absent) > 5 else ''}); "
          + (remedy or "run tools/teacher_embeddings.py with this run's data flags to add "
             "them, or pass --distill_missing=skip to train those images without the "
             "distillation terms"))
    return targets, found


class EmbeddingsWriter:
  """Appends records to an embeddings file in chunks; resumes a file of the same header.

  Opening an existing file reads its records, refuses another header (ConfigError naming
  `flag` and the settings that differ), cuts a torn last line (runlog.truncate) and
  remembers the keys done, which a caller skips (`done`).
  """

  def __init__(self, path: str, head: dict, flag: str = "--teacher_file"):
    self.path = path
    if os.path.exists(path):
      entries = runlog.read(path)
      if not entries or not _is_header(entries[0]):
        raise ConfigError(f"{flag}={path} exists and is not a teacher embeddings file; use a "
                          "new path")
      previous = entries[0]
      if previous != head:
        changed = sorted(k for k in set(previous) | set(head) if previous.get(k) != head.get(k))
        details = "; ".join(f"{k}: {previous.get(k)!r} there, {head.get(k)!r} now"
                            for k in changed)
        raise ConfigError(f"{flag}={path} holds embeddings of another teacher or settings "
                          f"({details}); use a new file or the same flags to resume")
      runlog.truncate(path, lambda _: True)  # cut a torn last line before appending
      self.done = {e["key"]: e["status"] for e in entries[1:]}
    else:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      runlog.append(path, [head])
      self.done = {}

  def append(self, records: list[dict]) -> None:
    """One chunk: appended at once, flushed."""
    runlog.append(self.path, records)
    self.done.update((r["key"], r["status"]) for r in records)
