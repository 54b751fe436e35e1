"""Data cleaning rules on a proxy model's embeddings (the comprehensive search's data aspect);
numpy only.

The seed (Zhang et al. 2022) searches data cleaning jointly with the loss and the
architecture but does not publish its cleaning space; these rules are our choice
(METHODS.md §3, "inferred"). With e_i the unit proxy embedding of training image i, y_i its
label and the identity centre

  c_k = normalise(sum_{i: y_i = k} e_i),

the rules run in this order on the training split:
  1. outliers: drop image i when cos(e_i, c_{y_i}) < outlier_threshold (a mislabelled or
     non-face image lies far from its label's centre);
  2. near-duplicate identities: identities k, l that are each other's nearest centre with
     cos(c_k, c_l) > merge_threshold form a pair (mutual nearest neighbours: no chains that
     glue many identities together); "merge" gives the pair the smaller label, "drop" keeps
     the identity with more images and drops the other's;
  3. small identities: an identity left with fewer than min_images images is dropped;
  4. labels are renumbered 0..C'-1 in order; val and test follow the same label map (their
     images of dropped identities go too; their images are not filtered one by one).
Centres and their similarities are computed once, on the uncleaned training split.

The embeddings come from one of two files (`load_embeddings`, --cleaning_embeddings):

  * a proxy's .npz (made by cleaning_proxy.py, which trains a network briefly and embeds):
    unit embeddings centred over the embedded images, e_i = normalise(u_i - mean_j u_j)
    (without it a briefly trained network's embeddings share one direction and every cosine
    is near 1; our choice), stored per image content (sha1 of the pixels), so one file serves
    the search's training data (without its reward identities) and the full training data of
    the retraining: `ProxyEmbeddings.lookup` finds every image by its pixels;
  * a teacher embeddings .jsonl (tools/teacher_embeddings.py: dlib, an ONNX model, any run),
    each training image found by its key (data/keys.py: its source path, else the sha1 of its
    pixels). Its raw embeddings t_i are centred the same way, over the split being cleaned:
    e_i = normalise(v_i - mean_j v_j), v_i = normalise(t_i). Centring keeps the rules'
    thresholds on one scale for both files (unrelated faces near cosine 0); a strong
    teacher's embeddings also share a direction (docs/comprehensive-search.md has what was
    measured).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from enas_face.config import ConfigError
from enas_face.data.base import FaceDataset, LabelledImages
from enas_face.data import keys
from enas_face.data import teacher_files
from enas_face import runlog

DUPLICATE_ACTIONS = ("merge", "drop")
EMBEDDINGS_NAME = "proxy_embeddings.npz"


class DegenerateCleaning(ConfigError):
  """A cleaning that leaves too little to train on (a search scores such a sample 0)."""


@dataclasses.dataclass(frozen=True)
class CleaningSettings:
  """One cleaning of the training data; None (or min_images = 1) switches a rule off."""
  outlier_threshold: float | None = None
  merge_threshold: float | None = None
  duplicate_action: str = "merge"
  min_images: int = 1

  def __post_init__(self):
    if self.duplicate_action not in DUPLICATE_ACTIONS:
      raise ValueError(f"duplicate_action must be one of {DUPLICATE_ACTIONS}, got "
                       f"{self.duplicate_action!r}")
    if int(self.min_images) < 1:
      raise ValueError(f"min_images must be >= 1, got {self.min_images}")
    for name in ("outlier_threshold", "merge_threshold"):
      value = getattr(self, name)
      if value is not None and not -1.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a cosine in [-1, 1] or None (off), got {value}")

  @property
  def active(self) -> bool:
    return (self.outlier_threshold is not None or self.merge_threshold is not None
            or self.min_images > 1)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, obj) -> "CleaningSettings":
    if not isinstance(obj, dict):
      raise ValueError(f"cleaning settings must be a JSON object, got {obj!r}")
    unknown = set(obj) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"unknown cleaning settings {sorted(unknown)}")
    return cls(**obj)


@dataclasses.dataclass(frozen=True)
class CleaningResult:
  """keep: bool [N] over the training images; label_map: int [C] old label -> new label or
  -1 (dropped); removed: one record per dropped image {index, label, rule (outlier,
  near_duplicate, min_images), reason, cosine_to_centre}."""
  keep: np.ndarray
  label_map: np.ndarray
  removed: list
  merged: dict  # new label -> the two old labels joined into it

  @property
  def num_classes(self) -> int:
    return int(self.label_map.max()) + 1 if (self.label_map >= 0).any() else 0

  def summary(self) -> dict:
    rules = {}
    for record in self.removed:
      rules[record["rule"]] = rules.get(record["rule"], 0) + 1
    return {"kept_images": int(self.keep.sum()), "removed_images": len(self.removed),
            "removed_by_rule": rules, "classes_before": int(len(self.label_map)),
            "classes_after": self.num_classes, "merged_pairs": len(self.merged)}


def unit(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def identity_centres(embeddings: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """c_k = normalise(sum of the unit embeddings of label k), [C, D]; zero for empty labels."""
  sums = np.zeros((num_classes, embeddings.shape[1]))
  np.add.at(sums, labels, unit(embeddings))
  return unit(sums) * (np.bincount(labels, minlength=num_classes) > 0)[:, None]


def mutual_nearest_pairs(centres: np.ndarray, threshold: float) -> list[list[int]]:
  """[k, l] (k < l) for identities that are each other's nearest centre with cosine >
  threshold; empty (zero) centres pair with nothing."""
  similarity = centres @ centres.T
  np.fill_diagonal(similarity, -np.inf)
  empty = ~centres.any(axis=1)
  similarity[empty, :] = similarity[:, empty] = -np.inf
  nearest = np.argmax(similarity, axis=1)
  return [[k, int(nearest[k])] for k in range(len(centres))
          if k < nearest[k] and nearest[nearest[k]] == k and similarity[k, nearest[k]] > threshold]


def clean(embeddings: np.ndarray, labels: np.ndarray, num_classes: int,
          settings: CleaningSettings) -> CleaningResult:
  """Applies the rules of the module docstring to one training split (embeddings [N, D])."""
  labels = np.asarray(labels, np.int64)
  e = unit(embeddings)
  centres = identity_centres(e, labels, num_classes)
  cosine = np.sum(e * centres[labels], axis=1)
  keep = np.ones(len(labels), bool)
  removed = []

  def drop(indices, rule, reason):
    for i in indices:
      if keep[i]:
        keep[i] = False
        removed.append({"index": int(i), "label": int(labels[i]), "rule": rule, "reason": reason,
                        "cosine_to_centre": float(cosine[i])})

  if settings.outlier_threshold is not None:
    drop(np.flatnonzero(cosine < settings.outlier_threshold), "outlier",
         f"outlier: cosine to its identity centre < {settings.outlier_threshold}")
  target = np.arange(num_classes)  # old label -> the label it is merged into, or -1
  merged = {}
  if settings.merge_threshold is not None:
    for group in mutual_nearest_pairs(centres, settings.merge_threshold):
      if settings.duplicate_action == "merge":
        target[group] = group[0]
        merged[group[0]] = group
      else:
        counts = [int(np.sum(keep & (labels == k))) for k in group]
        kept = group[int(np.argmax(counts))]
        for k in group:
          if k != kept:
            drop(np.flatnonzero(labels == k), "near_duplicate", f"near-duplicate identity of label {kept} "
                 f"(centre cosine > {settings.merge_threshold})")
            target[k] = -1
  grouped = target[labels]
  counts = np.bincount(grouped[keep & (grouped >= 0)], minlength=num_classes)
  small = [k for k in range(num_classes) if target[k] == k and 0 < counts[k] < settings.min_images]
  for k in small:
    drop(np.flatnonzero(keep & (grouped == k)), "min_images", f"identity with fewer than "
         f"{settings.min_images} images left")
    target[target == k] = -1
  # Labels with no image left anywhere are dropped too; the rest renumbered in order.
  alive = np.unique(target[labels[keep]]) if keep.any() else np.array([], np.int64)
  alive = alive[alive >= 0]
  renumber = np.full(num_classes, -1, np.int64)
  renumber[alive] = np.arange(len(alive))
  label_map = np.where(target >= 0, renumber[np.maximum(target, 0)], -1)
  merged_new = {int(renumber[k]): [int(x) for x in group] for k, group in merged.items()
                if renumber[k] >= 0}
  removed.sort(key=lambda r: r["index"])
  return CleaningResult(keep, label_map, removed, merged_new)


def apply(dataset: FaceDataset, result: CleaningResult) -> FaceDataset:
  """The dataset with the cleaned training split and val/test relabelled by result.label_map."""

  def relabel(part: LabelledImages, mask=None) -> LabelledImages:
    mapped = result.label_map[part.labels]
    mask = (mapped >= 0) if mask is None else mask & (mapped >= 0)
    return part.take(mask, mapped[mask].astype(part.labels.dtype))

  report = dict(dataset.report, cleaning=result.summary())
  return dataclasses.replace(dataset, train=relabel(dataset.train, result.keep),
                             val=relabel(dataset.val), test=relabel(dataset.test),
                             num_classes=result.num_classes, report=report)


# --------------------------------------------------------------------------- proxy embeddings


def centred(embeddings: np.ndarray) -> np.ndarray:
  """e_i = normalise(v_i - mean_j v_j), v_i = normalise(x_i), [N, D]."""
  vectors = unit(embeddings)
  return unit(vectors - vectors.mean(axis=0))


@dataclasses.dataclass(frozen=True)
class ProxyEmbeddings:
  """Unit proxy embeddings by image key; `source` says which model made them."""
  keys: np.ndarray
  embeddings: np.ndarray
  source: str
  path: str = ""

  def save(self, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, keys=self.keys, embeddings=self.embeddings.astype(np.float32),
             source=np.array(self.source))
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str, flag: str = "--cleaning_embeddings") -> "ProxyEmbeddings":
    if not os.path.isfile(path):
      raise ConfigError(f"{flag}={path}: no such file (a comprehensive search writes "
                        f"RUN_DIR/cleaning/{EMBEDDINGS_NAME}; tools/clean_dataset.py makes one "
                        "from a trained run)")
    try:
      with np.load(path) as data:
        return cls(data["keys"], data["embeddings"], str(data["source"]), os.path.abspath(path))
    except (ValueError, KeyError, OSError) as error:
      raise ConfigError(f"{flag}={path}: not a proxy embeddings file ({error})") from None

  def lookup(self, images: np.ndarray, flag: str = "--cleaning_embeddings") -> np.ndarray:
    """The embeddings of `images` [N, ...], found by their pixels; ConfigError when some are
    missing (the file was made for other data)."""
    index = {key: i for i, key in enumerate(self.keys)}
    wanted = keys.pixel_hashes(images)
    missing = [i for i, key in enumerate(wanted) if key not in index]
    if missing:
      raise ConfigError(
          f"{flag}={self.path}: {len(missing)} of {len(images)} training images have no proxy "
          f"embedding there (first: image {missing[0]}); the file was made for other training "
          "data (another --dataset, --image_size or data seed?)")
    return self.embeddings[[index[key] for key in wanted]]

  def split_embeddings(self, split: LabelledImages, flag: str = "--cleaning_embeddings"
                       ) -> np.ndarray:
    """The (already centred) embeddings of a training split's images, [N, D]."""
    return self.lookup(split.images, flag)


@dataclasses.dataclass(frozen=True)
class TeacherProxy:
  """A teacher embeddings file as the cleaning's proxy (module docstring)."""
  file: teacher_files.TeacherEmbeddings

  @property
  def path(self) -> str:
    return self.file.path

  def split_embeddings(self, split: LabelledImages, flag: str = "--cleaning_embeddings"
                       ) -> np.ndarray:
    """centred() of the teacher's embeddings of a training split's images, found by their
    keys; ConfigError naming `flag`, the file and the count when some have none."""
    targets, _ = self.file.targets(
        split.images, split.paths, "training images", "error", flag,
        remedy="run tools/teacher_embeddings.py with this run's data flags (--teacher_splits="
               "train) to add them")
    return centred(targets).astype(np.float32)


def load_embeddings(path: str, flag: str = "--cleaning_embeddings"):
  """The cleaning's embeddings file: a teacher embeddings .jsonl (TeacherProxy), else a
  proxy's .npz (ProxyEmbeddings); ConfigError naming `flag` when it is neither."""
  if path.lower().endswith(teacher_files.EXTENSION):
    return TeacherProxy(teacher_files.TeacherEmbeddings.load(path, flag))
  return ProxyEmbeddings.load(path, flag)


_LOADED: dict[str, object] = {}


def load_cached(path: str):
  """load_embeddings, once per process and file version."""
  key = f"{os.path.abspath(path)}:{os.path.getmtime(path) if os.path.exists(path) else 0}"
  if key not in _LOADED:
    _LOADED[key] = load_embeddings(path)
  return _LOADED[key]


def clean_dataset(dataset: FaceDataset, settings: CleaningSettings,
                  embeddings_path: str) -> tuple[FaceDataset, CleaningResult | None]:
  """(the cleaned dataset, the result); the dataset itself when the settings clean nothing."""
  if not settings.active:
    return dataset, None
  if dataset.streamed:
    raise ConfigError(f"data cleaning needs the training split in memory; use --stream=never "
                      f"for --dataset={dataset.name}")
  if not embeddings_path:
    raise ConfigError("this sample cleans the training data but no --cleaning_embeddings file "
                      "is given (the search's RUN_DIR/cleaning/proxy_embeddings.npz, or a "
                      "teacher embeddings .jsonl)")
  embeddings = load_cached(embeddings_path).split_embeddings(dataset.train)
  result = clean(embeddings, dataset.train.labels, dataset.num_classes, settings)
  if result.num_classes < 2:
    raise DegenerateCleaning(f"cleaning {settings.to_json()} leaves {result.num_classes} "
                             "identities: nothing to train a classifier on")
  return apply(dataset, result), result


def write_manifest(path: str, settings: CleaningSettings, result: CleaningResult | None,
                   embeddings_path: str, extra: dict | None = None) -> dict:
  """What a cleaning removed and why (like the alignment manifest), as JSON at `path`."""
  manifest = {"settings": settings.to_json(), "embeddings": embeddings_path,
              **(extra or {})}
  if result is not None:
    manifest.update(result.summary(), merged={str(k): v for k, v in result.merged.items()},
                    removed=result.removed)
  else:
    manifest.update(removed_images=0, removed=[])
  runlog.write_json(path, manifest)
  return manifest
