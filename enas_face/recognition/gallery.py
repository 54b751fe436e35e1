"""`Gallery`: enrolled people in a resumable file bound to one model; identification.

    gallery = Gallery(embedder, "people/enas_face_gallery.jsonl")
    report = gallery.enrol("people")      # people/<name>/*.jpg: one subfolder a person
    matches = gallery.identify("photo.jpg", top_k=3)

The file is JSON lines (runlog.append / runlog.read): a header naming the model (its path,
kind and weight fingerprint, input size, embedding size), then one record per enrolled
image: person, path relative to the folder, status ("enrolled", "no_face", "unreadable"),
and for enrolled images the chosen face's box and unit embedding. Each image's record is
appended as soon as it is embedded, so an interrupted enrolment resumes where it stopped
(a torn last line is dropped first); a file written with another model (fingerprint) is
refused, naming the file.

Identification: for each face of the photo, the score of person p is
s_p = max_{g in G_p} cos(e, g) over p's enrolled embeddings (nearest neighbour); the top-k
people by s_p are returned, and the face is "unknown" when s_1 <= the embedder's
threshold t (same person iff cos > t).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
from tqdm import tqdm

from enas_face.data import folder as folder_io
from enas_face.data import images as image_io
from enas_face.recognition.embedder import Embedder, FaceEmbedding, NoFaceInPhoto
from enas_face import runlog

FORMAT = "enas_face_gallery"
VERSION = 1
UNKNOWN = "unknown"
DEFAULT_FILE = "enas_face_gallery.jsonl"  # inside the enrolled folder unless given


class GalleryError(ValueError):
  """A gallery file or folder that cannot be used; the message names it."""


@dataclasses.dataclass(frozen=True)
class Identification:
  """One face of a probe photo: the top-k (person, score) and the decision."""
  face: FaceEmbedding
  candidates: list[tuple[str, float]]
  name: str  # candidates[0]'s person if its score > threshold, else UNKNOWN
  threshold: float

  def to_json(self) -> dict:
    return {**self.face.to_json(with_embedding=False), "name": self.name,
            "threshold": round(self.threshold, 6),
            "candidates": [{"name": n, "score": round(s, 6)} for n, s in self.candidates]}


@dataclasses.dataclass(frozen=True)
class EnrolReport:
  people: int
  enrolled: int  # images with an embedding, in the file (this call's and earlier ones)
  added: int  # images embedded by this call
  failed: list[dict]  # {"path", "status", "reason"} of images without a usable face


class Gallery:
  """The people enrolled with `embedder`, kept in the JSONL file `path`."""

  def __init__(self, embedder: Embedder, path: str):
    self.embedder = embedder
    self.path = path
    self.records = self._read()

  def _read(self) -> list[dict]:
    if not os.path.exists(self.path):
      return []
    records = runlog.read(self.path)
    if not records:
      return []
    header, *rest = records
    if header.get("format") != FORMAT:
      raise GalleryError(f"{self.path}: not an enas_face gallery file (its first line has no "
                         f"\"format\": \"{FORMAT}\")")
    if header.get("version") != VERSION:
      raise GalleryError(f"{self.path}: gallery version {header.get('version')!r}; this "
                         f"enas_face reads version {VERSION}")
    model = header.get("model", {})
    if model.get("fingerprint") != self.embedder.fingerprint:
      raise GalleryError(
          f"{self.path}: holds embeddings of another model ({model.get('path')}, "
          f"{model.get('fingerprint')}); this model ({self.embedder.path}) is "
          f"{self.embedder.fingerprint}. Enrol into another file (--gallery_file) or delete it")
    return rest

  @property
  def people(self) -> list[str]:
    return sorted({r["person"] for r in self.records if r["status"] == "enrolled"})

  def _matrix(self) -> tuple[np.ndarray, list[str]]:
    enrolled = [r for r in self.records if r["status"] == "enrolled"]
    if not enrolled:
      raise GalleryError(f"{self.path}: nobody is enrolled yet (enrol a folder of people: "
                         "one subfolder per person)")
    return (np.asarray([r["embedding"] for r in enrolled], np.float32),
            [r["person"] for r in enrolled])

  def enrol(self, root: str, progress: bool = True) -> EnrolReport:
    """Embeds the chosen face of every image of root/<person>/ not yet in the file,
    appending one record per image as it goes."""
    if not os.path.isdir(root):
      raise GalleryError(f"{root}: no such folder (a gallery folder holds one subfolder per "
                         "person)")
    try:
      listing = folder_io.scan_folder(root)
    except ValueError as e:
      raise GalleryError(f"{root}: {e}") from e
    if not listing.files:
      raise GalleryError(f"{root}: no images in its subfolders (one subfolder per person)")
    if os.path.exists(self.path):
      runlog.truncate(self.path, lambda record: True)  # drops a torn last line
    else:
      os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
      runlog.append(self.path, [{"format": FORMAT, "version": VERSION,
                                 "model": self.embedder.describe()}])
    done = {r["path"] for r in self.records}
    todo = [(label, relpath) for label, relpath in listing.files if relpath not in done]
    added = 0
    for label, relpath in tqdm(todo, desc="enrol", unit="image", disable=not progress):
      record = {"person": listing.identities[label], "path": relpath}
      try:
        face = self.embedder.embed_face(os.path.join(root, relpath))
      except image_io.ImageError as e:
        record.update(status="unreadable", reason=e.reason)
      except NoFaceInPhoto:
        record.update(status="no_face", reason="no face found")
      else:
        record.update(status="enrolled", face_status=face.status,
                      box=[round(v, 1) for v in face.box],
                      embedding=[round(float(v), 7) for v in face.embedding])
        added += 1
      runlog.append(self.path, [record])
      self.records.append(record)
    failed = [{"path": r["path"], "status": r["status"], "reason": r.get("reason", "")}
              for r in self.records if r["status"] != "enrolled"]
    return EnrolReport(people=len(self.people),
                       enrolled=sum(r["status"] == "enrolled" for r in self.records),
                       added=added, failed=failed)

  def rank(self, embedding: np.ndarray, top_k: int = 1) -> list[tuple[str, float]]:
    """The top_k people by s_p = max over p's embeddings of cos(embedding, g)."""
    matrix, people = self._matrix()
    scores = matrix @ np.asarray(embedding, np.float32)
    best: dict[str, float] = {}
    for person, score in zip(people, scores):
      best[person] = max(best.get(person, -np.inf), float(score))
    return sorted(best.items(), key=lambda item: (-item[1], item[0]))[:max(1, top_k)]

  def identify(self, photo, top_k: int = 1, threshold: float | None = None
               ) -> list[Identification]:
    """For every face of `photo`: its top_k people and the name, or "unknown" when the best
    score does not exceed the threshold (the embedder's unless given)."""
    t = self.embedder.threshold if threshold is None else float(threshold)
    out = []
    for face in self.embedder.embed(photo):
      candidates = self.rank(face.embedding, top_k)
      name = candidates[0][0] if candidates[0][1] > t else UNKNOWN
      out.append(Identification(face, candidates, name, t))
    return out
