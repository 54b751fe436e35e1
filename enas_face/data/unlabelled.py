"""Images without identity labels for the distillation terms only (--unlabelled); numpy and
the readers.

Sources (sources.parse_unlabelled_spec), comma-separated:

    small_identities  the --dataset's identities with fewer than --min_images_per_identity
                      images (the ones real.choose_identities does not train on), keyed as
                      the dataset's images are; in memory only (--stream=never)
    folder:DIR        every image file under DIR, at any depth, keyed by its path relative to
                      DIR; a file in a first-level subfolder belongs to the person it names;
                      read as a folder: dataset is (--align=online aligns it)
    tfrecord:DIR      an aligned TFRecord folder (tools/align_dataset.py), keyed by
                      image/path; its manifest names each record's person

An image is left out, and counted in report["unlabelled"], when
  - its person is named by a --pairs set (whatever --exclude_pair_identities says: a test
    person never trains, not even without a label) or held out for the verification pairs;
  - its pixels at --image_size equal those of a pair image (any --pairs set) or of a labelled
    image (train, val or test: a test image never trains; a labelled one is labelled);
  - its pixels repeat an earlier unlabelled image's.
A flat folder names no person: only the pixel rule guards it.

Keys (data/keys.py) are paths relative to each source, so two sources can give different
images one key (folder:A/x.jpg and folder:B/x.jpg, or an unlabelled file whose relative path
is a labelled image's): `key_clashes` finds them; an embeddings-file teacher, which holds one
embedding per key, refuses them (training/fixed.py, tools/teacher_embeddings.py).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import logging

from enas_face.config import ConfigError, DataConfig
from enas_face.data.base import FaceDataset, UnlabelledImages
from enas_face.data import images as image_io
from enas_face.data import keys
from enas_face.data import real
from enas_face.data import sources


def list_image_files(root: str) -> list[str]:
  """Every image file under root (hidden entries skipped), '/'-separated relative paths,
  sorted."""
  found = []
  for folder, dirs, files in os.walk(root):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    rel = os.path.relpath(folder, root)
    for name in sorted(files):
      if not name.startswith(".") and os.path.splitext(name)[1].lower() in image_io.IMAGE_EXTENSIONS:
        found.append(name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}")
  return sorted(found)


def person_of(relpath: str) -> str | None:
  """The first-level folder of a relative path (the person it names), None for a flat file."""
  head, sep, _ = relpath.partition("/")
  return head if sep else None


def _small_identities(collection, config: DataConfig, name: str, hold_out: bool,
                      pair_identities: frozenset[str]):
  """(images, paths, persons, report) of the collection's identities below
  --min_images_per_identity that no --pairs set names."""
  names = collection.identity_names
  counts = np.bincount(collection.labels, minlength=len(names))
  choice = real.choose_identities(counts, names, config, name, hold_out, pair_identities)
  named = real.named_in_pairs(names, pair_identities)
  small = np.array([i for i in choice.too_few if i not in named], np.int64)
  rows = np.flatnonzero(np.isin(collection.labels, small))
  skipped = [i for i, c in enumerate(counts) if 0 < c < config.min_images_per_identity
             and i in named]
  persons = [names[label] for label in collection.labels[rows]]
  return (collection.images[rows], [collection.paths[i] for i in rows], persons,
          {"identities": int(len(small)),
           "identities_named_by_pairs_left_out": len(skipped),
           "images_named_by_pairs_left_out": int(sum(counts[i] for i in skipped))})


def _folder(path: str, config: DataConfig, decode):
  relpaths = list_image_files(path)
  if not relpaths:
    raise ConfigError(f"--unlabelled=folder:{path}: no image files there (suffixes "
                      f"{', '.join(image_io.IMAGE_EXTENSIONS)})")
  results = decode(path, relpaths, config)
  kept = [i for i, (image, _, _) in enumerate(results) if image is not None]
  rejects = [{"path": relpaths[i], "reason": reason}
             for i, (image, _, reason) in enumerate(results) if image is None]
  images = (np.stack([results[i][0] for i in kept]) if kept
            else np.zeros((0, config.image_size, config.image_size, 3), np.uint8))
  paths = [relpaths[i] for i in kept]
  return images, paths, [person_of(p) for p in paths], {
      "image_files": len(relpaths), "num_rejects": len(rejects), "rejects": rejects[:100]}


def _tfrecord(path: str, config: DataConfig):
  from enas_face.data import tfrecord
  manifest = tfrecord.read_manifest(path)
  names = {int(i["label"]): i["name"] for i in manifest["identities"]}
  images, labels, paths = tfrecord.load_arrays(path, config.image_size)
  return images, list(paths), [names.get(int(label)) for label in labels], {
      "records": int(len(paths))}


def key_clashes(dataset: FaceDataset) -> list[str]:
  """Keys an unlabelled image shares with another image of the run (labelled, pair or
  unlabelled) whose pixels differ (equal pixels are left out already), sorted."""
  if dataset.unlabelled is None:
    return []
  others = {}
  parts = [dataset.train, dataset.val, dataset.test, *dataset.pair_sets.values()]
  for part in parts:
    for key in keys.image_keys(part.images, part.paths):
      others[key] = others.get(key, 0) + 1
  extra = dataset.unlabelled
  mine = keys.image_keys(extra.images, extra.paths)
  counts = {}
  for key in mine:
    counts[key] = counts.get(key, 0) + 1
  return sorted(k for k, n in counts.items() if n > 1 or k in others)


def attach(dataset: FaceDataset, config: DataConfig, pair_identities: frozenset[str],
           collection=None, decode=None) -> FaceDataset:
  """`dataset` with its unlabelled images (dataset.unlabelled) from --unlabelled's sources,
  filtered by the rules of the module docstring; what was read and left out goes to
  report["unlabelled"]. `collection`: the real.LabelledCollection the dataset was assembled
  from (small_identities needs it); `decode`: how a folder's files are read
  (data.decode_files: --align, resized to --image_size). ConfigError naming --unlabelled when a source cannot
  be used or nothing is left."""
  specs = sources.parse_unlabelled_spec(config.unlabelled)
  if not specs:
    return dataset
  flag = f"--unlabelled={config.unlabelled}"
  if dataset.streamed:
    raise ConfigError(f"{flag}: the training split streams from disk; unlabelled images are "
                      "mixed in beside an in-memory split: add --stream=never")
  heldout = frozenset(dataset.report.get("heldout_identities", []))
  pair_hashes = set(keys.pixel_hashes(np.concatenate(
      [pairs.images for pairs in dataset.pair_sets.values()])))
  labelled = set(keys.pixel_hashes(np.concatenate(
      [dataset.train.images, dataset.val.images, dataset.test.images])))
  seen = set()
  parts, reports = [], []
  for index, spec in enumerate(specs):
    if spec.kind == sources.SMALL_IDENTITIES:
      if collection is None:
        raise ConfigError(f"{flag}: {sources.SMALL_IDENTITIES} needs a real --dataset read "
                          "into memory (folder:, tfrecord:, insightface: with --stream=never)")
      images, paths, persons, report = _small_identities(
          collection, config, dataset.name, not config.pairs, pair_identities)
    elif spec.kind == "folder":
      images, paths, persons, report = _folder(spec.path, config, decode)
    else:
      images, paths, persons, report = _tfrecord(spec.path, config)
    keep = np.ones(len(paths), bool)
    counts = dict.fromkeys(("named_by_pairs", "heldout_for_pairs", "same_pixels_as_a_pair_image",
                            "same_pixels_as_a_labelled_image", "repeated_pixels"), 0)
    for i, (person, digest) in enumerate(zip(persons, keys.pixel_hashes(images))):
      reason = ("named_by_pairs" if person in pair_identities else
                "heldout_for_pairs" if person in heldout else
                "same_pixels_as_a_pair_image" if digest in pair_hashes else
                "same_pixels_as_a_labelled_image" if digest in labelled else
                "repeated_pixels" if digest in seen else None)
      if reason is not None:
        keep[i] = False
        counts[reason] += 1
      else:
        seen.add(digest)
    parts.append((images[keep], np.asarray(paths, dtype=str)[keep],
                  np.full(int(keep.sum()), index, np.int64)))
    reports.append({"source": spec.value(), "read": int(len(paths)), "kept": int(keep.sum()),
                    "left_out": counts, **report})
    logging.info("--unlabelled %s: %d of %d images kept (%s)", spec.value(), int(keep.sum()),
                 len(paths), ", ".join(f"{k} {v}" for k, v in counts.items() if v) or
                 "none left out")
  total = sum(len(p[1]) for p in parts)
  if not total:
    raise ConfigError(f"{flag}: no image left to use ({reports})")
  unlabelled = UnlabelledImages(np.concatenate([p[0] for p in parts]),
                                np.concatenate([p[1] for p in parts]),
                                np.concatenate([p[2] for p in parts]),
                                tuple(spec.value() for spec in specs))
  return dataclasses.replace(dataset, unlabelled=unlabelled, report=dict(
      dataset.report, unlabelled={"images": total, "sources": reports}))

