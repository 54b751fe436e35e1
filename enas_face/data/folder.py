"""Image folders: ROOT/<identity>/<image>, one subfolder per identity.

Identities are the sorted subfolder names (labels 0..K-1 in that order, so a
label is stable across runs); images are the sorted files with an image suffix.
Files that cannot be decoded are rejected with their reason, never dropped
silently; empty identity folders and non-image files are reported too.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import Callable

import numpy as np
from absl import logging

from enas_face.config import ConfigError
from enas_face.data import images as image_io


@dataclasses.dataclass(frozen=True)
class FolderListing:
  root: str
  identities: list[str]
  files: list[tuple[int, str]]   # (identity index, path relative to root), sorted
  empty_identities: list[str]    # identity folders without any image file
  ignored_files: list[str]       # files without an image suffix (relative paths)


def _visible(name: str) -> bool:
  return not name.startswith(".")


def scan_folder(root: str) -> FolderListing:
  """The identity folders and image files under root; ConfigError if it holds none."""
  if not os.path.isdir(root):
    raise ConfigError(f"{root}: not a folder")
  identities = sorted(d for d in os.listdir(root)
                      if _visible(d) and os.path.isdir(os.path.join(root, d)))
  if not identities:
    raise ConfigError(f"{root}: no identity subfolders (expected ROOT/<identity>/<image>)")
  files, empty, ignored = [], [], []
  for index, identity in enumerate(identities):
    folder = os.path.join(root, identity)
    names = sorted(n for n in os.listdir(folder)
                   if _visible(n) and os.path.isfile(os.path.join(folder, n)))
    found = [n for n in names if os.path.splitext(n)[1].lower() in image_io.IMAGE_EXTENSIONS]
    ignored += [f"{identity}/{n}" for n in names if n not in found]
    if not found:
      empty.append(identity)
    files += [(index, f"{identity}/{n}") for n in found]
  if not files:
    raise ConfigError(f"{root}: its {len(identities)} identity folders hold no image files "
                      f"(suffixes {', '.join(image_io.IMAGE_EXTENSIONS)})")
  return FolderListing(root, identities, files, empty, ignored)


def read_files(root: str, relpaths: list[str], transform: Callable[[np.ndarray], np.ndarray],
               max_pixels: int, workers: int | None = None
               ) -> list[tuple[np.ndarray | None, str]]:
  """(transform(image), "") or (None, reason) per file, decoded on a thread pool, in order."""
  def load(relpath):
    try:
      return transform(image_io.read_image(os.path.join(root, relpath), max_pixels=max_pixels)), ""
    except image_io.ImageError as e:
      return None, e.reason
  with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
    return list(pool.map(load, relpaths))


def listing_report(listing: FolderListing, rejects: list[dict]) -> dict:
  """JSON-able account of a folder read: files found, rejected (with reasons), ignored."""
  if listing.empty_identities:
    logging.warning("%s: %d empty identity folders, e.g. %s", listing.root,
                    len(listing.empty_identities), listing.empty_identities[:5])
  for reject in rejects[:20]:
    logging.warning("rejected %s: %s", reject["path"], reject["reason"])
  if len(rejects) > 20:
    logging.warning("... and %d more rejected images (see data_report.json)", len(rejects) - 20)
  return {"source": listing.root, "identities": len(listing.identities),
          "image_files": len(listing.files), "rejects": rejects, "num_rejects": len(rejects),
          "empty_identities": listing.empty_identities,
          "ignored_files": listing.ignored_files[:100], "num_ignored_files": len(listing.ignored_files)}
