"""Framework-free containers for face datasets and verification pairs.

Every reader (synthetic faces, image folders, TFRecords, ...) returns these, so
training and evaluation never depend on where the images came from.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class LabelledImages:
  """Images of known identities.

  images: uint8 [N, H, W, 3]; labels: int32 [N] in [0, num_classes); paths: str [N], each
  image's path in its source ('/'-separated, relative to the source root: a folder's file,
  an aligned record's image/path) when the reader knows it, else None. `take` keeps them
  with their images.
  """
  images: np.ndarray
  labels: np.ndarray
  paths: np.ndarray | None = None

  def __post_init__(self):
    if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
      raise ValueError(f"images must be uint8 [N, H, W, 3], got {self.images.dtype} {self.images.shape}")
    if self.labels.shape != (self.images.shape[0],):
      raise ValueError(f"labels must have shape ({self.images.shape[0]},), got {self.labels.shape}")
    _check_paths(self, self.images.shape[0])

  def __len__(self) -> int:
    return int(self.images.shape[0])

  def take(self, rows, labels: np.ndarray | None = None) -> "LabelledImages":
    """The images at `rows` (indices or a boolean mask) with their paths, and their labels or
    the given `labels` (already taken)."""
    return LabelledImages(self.images[rows], self.labels[rows] if labels is None else labels,
                          None if self.paths is None else self.paths[rows])

  @property
  def image_size(self) -> int:
    return int(self.images.shape[1])


@dataclasses.dataclass(frozen=True)
class VerificationPairs:
  """Face pairs for 1:1 verification, ordered by fold (LFW convention).

  images: uint8 [M, H, W, 3], each image stored once; pairs: int [P, 2] indices
  into images; is_same: bool [P]. Fold k holds rows k*P/F .. (k+1)*P/F - 1.
  paths: str [M], each image's path in its source (an LFW pairs file's images), or None.
  """
  images: np.ndarray
  pairs: np.ndarray
  is_same: np.ndarray
  num_folds: int = 10
  paths: np.ndarray | None = None

  def __post_init__(self):
    _check_paths(self, self.images.shape[0])
    if self.pairs.ndim != 2 or self.pairs.shape[1] != 2:
      raise ValueError(f"pairs must be [P, 2], got {self.pairs.shape}")
    if self.is_same.shape != (self.pairs.shape[0],):
      raise ValueError(f"is_same must be [{self.pairs.shape[0]}], got {self.is_same.shape}")
    if self.pairs.size and (self.pairs.min() < 0 or self.pairs.max() >= self.images.shape[0]):
      raise ValueError("pair indices fall outside the image array")

  def __len__(self) -> int:
    return int(self.pairs.shape[0])


@dataclasses.dataclass(frozen=True)
class UnlabelledImages:
  """Face images without identity labels, seen by the distillation terms only
  (data/unlabelled.py, --unlabelled).

  images: uint8 [N, S, S, 3]; paths: str [N], each image's path in its source (the key of
  its teacher embedding; data/keys.py), or None; origins: int [N], the index in `sources`
  (the --unlabelled source values) of the source each image came from.
  """
  images: np.ndarray
  paths: np.ndarray | None
  origins: np.ndarray
  sources: tuple[str, ...]

  def __post_init__(self):
    if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
      raise ValueError(f"images must be uint8 [N, H, W, 3], got {self.images.dtype} "
                       f"{self.images.shape}")
    if self.origins.shape != (self.images.shape[0],):
      raise ValueError(f"origins must have shape ({self.images.shape[0]},), got "
                       f"{self.origins.shape}")
    _check_paths(self, self.images.shape[0])

  def __len__(self) -> int:
    return int(self.images.shape[0])

  def take(self, rows) -> "UnlabelledImages":
    return UnlabelledImages(self.images[rows], None if self.paths is None else self.paths[rows],
                            self.origins[rows], self.sources)


def _check_paths(container, count: int) -> None:
  """paths as a str array of `count` entries (or None)."""
  if container.paths is None:
    return
  paths = np.asarray(container.paths, dtype=str)
  if paths.shape != (count,):
    raise ValueError(f"paths must have shape ({count},), got {paths.shape}")
  object.__setattr__(container, "paths", paths)


DEFAULT_PAIR_SET = "heldout"


@dataclasses.dataclass(frozen=True)
class FaceDataset:
  """Train/val/test images of the training identities plus verification pairs.

  `train` is in memory (LabelledImages) or streams from disk (data.stream.StreamedImages,
  which has no image array: code that needs training images in memory uses `train_sample`).
  `pairs` is the primary set (the first of --pairs, or the held-out/synthetic pairs);
  `pair_sets` maps every set's name to its pairs, in order, the primary first (left
  empty, it becomes {"heldout": pairs}). `unlabelled`: images without labels for the
  distillation terms (--unlabelled), or None.
  """
  name: str
  train: LabelledImages  # or data.stream.StreamedImages
  val: LabelledImages
  test: LabelledImages
  num_classes: int
  pairs: VerificationPairs
  report: dict = dataclasses.field(default_factory=dict)  # what the reader kept and rejected
  pair_sets: dict = dataclasses.field(default_factory=dict)  # name -> VerificationPairs
  unlabelled: UnlabelledImages | None = None

  def __post_init__(self):
    if not self.pair_sets:
      object.__setattr__(self, "pair_sets", {DEFAULT_PAIR_SET: self.pairs})
    elif next(iter(self.pair_sets.values())) is not self.pairs:
      raise ValueError("pair_sets must list the primary `pairs` first, got "
                       f"{list(self.pair_sets)}")

  @property
  def image_size(self) -> int:
    return int(self.train.image_size)

  @property
  def streamed(self) -> bool:
    return not isinstance(self.train, LabelledImages)

  @property
  def train_sample(self) -> LabelledImages:
    """The training images in memory: the whole split, or a streamed split's bounded sample."""
    return self.train.sample if self.streamed else self.train


def split_per_identity(labels: np.ndarray, fractions=(0.8, 0.1, 0.1),
                       seed: int = 0) -> tuple[np.ndarray, ...]:
  """Index arrays that split every identity's images by `fractions`.

  For an identity with n images: n_val = round(n * f_val), n_test =
  round(n * f_test), the rest train; each identity with >= 3 images gets at
  least one val and one test image, so identification covers every class.
  """
  if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
    raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
  rng = np.random.default_rng(seed)
  train, val, test = [], [], []
  for identity in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == identity))
    n = len(members)
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    if n >= 3:
      n_val, n_test = max(n_val, 1), max(n_test, 1)
    val.append(members[:n_val])
    test.append(members[n_val:n_val + n_test])
    train.append(members[n_val + n_test:])
  return tuple(np.sort(np.concatenate(part)).astype(np.int64) for part in (train, val, test))
