"""Verification-pair files: LFW's pairs.txt and InsightFace's pickled .bin sets.

LFW pairs files (pairsDevTrain.txt, pairsDevTest.txt, pairs.txt): an optional
header line, "N" (View 1: N same then N different pairs) or "folds N" (View 2:
each of `folds` contiguous blocks holds N same then N different pairs), then
one pair a line, whitespace-separated: "Name i j" (two images of one person) or
"Name1 i Name2 j" (two people). Image i of Name is Name/Name_{i:04d}.jpg.

InsightFace .bin files (lfw.bin, cfp_fp.bin, agedb_30.bin, ...): a pickle of
(bins, issame_list), 2*P encoded images and P booleans; pair p is images 2p and
2p+1. They come from Python 2 (str images, read back as bytes) and Python 3
(protocol 2 spells bytes as _codecs.encode(text, 'latin1')). `load_bin` never
runs code from the file: its unpickler resolves only the handful of globals
those layouts use, each through a wrapper that checks its arguments.

numpy choice: issame flags written as numpy bools are accepted, and nothing else
from numpy. A pickled numpy bool is numpy.core.multiarray.scalar(numpy.dtype('b1'),
b'\\x01') plus a dtype state; both globals resolve to local stand-ins that accept
only that bool dtype and one data byte and build the np.bool_ themselves, so no
numpy code sees the file's data. Arrays (numpy.core.multiarray._reconstruct,
numpy.ndarray) are refused: they are not part of the InsightFace layout, and
their state (shape, dtype, raw or object data) would reach numpy's C
deserialisation, a far larger surface than one byte of a bool.
"""
from __future__ import annotations

import dataclasses
import io
import os
import pickle
from collections.abc import Callable, Collection, Iterable, Sequence

import numpy as np

_SHOWN_MISSING = 20
_LATIN1_NAMES = frozenset({"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"})
_BOOL_DTYPE_SPECS = frozenset({"b1", "?", "bool"})


class PairsFileError(ValueError):
  """A pairs file (LFW text or InsightFace .bin) that is malformed or inconsistent."""


class UnsafePickleError(ValueError):
  """A .bin pickle that asks for a global (or call) outside the verification-set layout."""


@dataclasses.dataclass(frozen=True)
class PairEntry:
  """One LFW pair: (name, 1-based image number) twice, and whether they are the same person."""
  first: tuple[str, int]
  second: tuple[str, int]
  is_same: bool


def lfw_image_relpath(name: str, index: int) -> str:
  """Path of image `index` (1-based) of `name` inside the LFW folder."""
  return f"{name}/{name}_{index:04d}.jpg"


def _image_number(token: str, path: str, line_number: int) -> int:
  try:
    number = int(token)
  except ValueError:
    raise PairsFileError(f"{path}, line {line_number}: image number {token!r} is not an integer") from None
  if number < 1:
    raise PairsFileError(f"{path}, line {line_number}: image number {number} is below 1 "
                         "(LFW numbers images from 1)")
  return number


def _header_numbers(fields: list[str]) -> tuple[int, ...] | None:
  if len(fields) not in (1, 2):
    return None
  try:
    return tuple(int(field) for field in fields)
  except ValueError:
    return None


def parse_lfw_pairs(path: str) -> list[PairEntry]:
  """The pairs of an LFW pairs file, in file order (fold k is a contiguous block).

  The header line is optional. When present its count must match the file: "N" means N same +
  N different pairs (View 1), "folds N" means folds * (N same + N different) (View 2).
  """
  path = os.fspath(path)
  try:
    with open(path, encoding="utf-8") as pairs_file:
      lines = pairs_file.read().splitlines()
  except UnicodeDecodeError as error:
    raise PairsFileError(f"{path}: not a UTF-8 text file ({error})") from None
  header, header_line, entries = None, 0, []
  for line_number, line in enumerate(lines, start=1):
    fields = line.split()
    if not fields:
      continue
    if header_line == 0 and not entries and (numbers := _header_numbers(fields)) is not None:
      if min(numbers) < 1:
        raise PairsFileError(f"{path}, line {line_number}: header {line.strip()!r} must hold "
                             "positive counts")
      header, header_line = numbers, line_number
      continue
    if len(fields) == 3:
      name, first, second = fields
      entry = PairEntry((name, _image_number(first, path, line_number)),
                        (name, _image_number(second, path, line_number)), True)
      if entry.first == entry.second:
        raise PairsFileError(f"{path}, line {line_number}: pairs image {first} of {name} with itself")
    elif len(fields) == 4:
      first_name, first, second_name, second = fields
      if first_name == second_name:
        raise PairsFileError(f"{path}, line {line_number}: a different-person line names "
                             f"{first_name} twice")
      entry = PairEntry((first_name, _image_number(first, path, line_number)),
                        (second_name, _image_number(second, path, line_number)), False)
    else:
      raise PairsFileError(f"{path}, line {line_number}: expected 'Name i j' or 'Name1 i Name2 j', "
                           f"got {len(fields)} fields: {line.strip()!r}")
    entries.append(entry)
  if header is not None:
    folds, per_kind = (1, header[0]) if len(header) == 1 else header
    same = sum(entry.is_same for entry in entries)
    different = len(entries) - same
    if (same, different) != (folds * per_kind, folds * per_kind):
      meaning = (f"{per_kind} same + {per_kind} different pairs" if folds == 1 else
                 f"{folds} folds of {per_kind} same + {per_kind} different pairs")
      raise PairsFileError(f"{path}, line {header_line}: header says {meaning} = "
                           f"{2 * folds * per_kind} pairs, but the file has {len(entries)} "
                           f"({same} same, {different} different)")
  return entries


def identities_in_pairs(entries: Iterable[PairEntry]) -> set[str]:
  """Every person named by the pairs (to keep them out of training)."""
  names = set()
  for entry in entries:
    names.add(entry.first[0])
    names.add(entry.second[0])
  return names


def _shown(items: Sequence[str]) -> str:
  shown = ", ".join(items[:_SHOWN_MISSING])
  if len(items) > _SHOWN_MISSING:
    shown += f" ... and {len(items) - _SHOWN_MISSING} more"
  return shown


def resolve_lfw_pairs(path: str, available: Callable[[str], bool] | Collection[str]
                      ) -> tuple[list[str], np.ndarray, np.ndarray]:
  """Unique image paths, pairs int64 [P, 2] indexing them, is_same bool [P], in file order.

  Image paths are relative to the LFW folder ("Name/Name_0001.jpg") and listed in order of first
  appearance (pair 0's first image, pair 0's second, pair 1's first, ...). `available` is a set of
  such paths or a predicate on one; if any image is missing, PairsFileError lists all of them.
  """
  path = os.fspath(path)
  entries = parse_lfw_pairs(path)
  is_available = available if callable(available) else available.__contains__
  position: dict[str, int] = {}
  pairs = np.empty((len(entries), 2), dtype=np.int64)
  for row, entry in enumerate(entries):
    for column, (name, index) in enumerate((entry.first, entry.second)):
      pairs[row, column] = position.setdefault(lfw_image_relpath(name, index), len(position))
  image_paths = list(position)
  missing = [image_path for image_path in image_paths if not is_available(image_path)]
  if missing:
    raise PairsFileError(f"{path}: {len(missing)} of the {len(image_paths)} images its pairs name "
                         f"are missing: {_shown(missing)}")
  return image_paths, pairs, np.array([entry.is_same for entry in entries], dtype=bool)


def people_pairs(images: dict[str, Sequence[int]], rng: np.random.Generator,
                 max_same_per_person: int = 0) -> list[PairEntry]:
  """A larger test set from a set of people: every same-person pair of each person's images
  (at most `max_same_per_person` of them, drawn at random; 0: all), then as many
  different-person pairs, each two images drawn uniformly from all the images, of two
  different people, no pair twice. `images`: person -> image numbers (1-based)."""
  same = []
  for name in sorted(images):
    numbers = sorted(images[name])
    person = [PairEntry((name, a), (name, b), True)
              for i, a in enumerate(numbers) for b in numbers[i + 1:]]
    if 0 < max_same_per_person < len(person):
      person = [person[i] for i in sorted(rng.choice(len(person), max_same_per_person,
                                                     replace=False))]
    same += person
  pool = [(name, number) for name in sorted(images) for number in sorted(images[name])]
  possible = (len(pool) ** 2 - sum(len(v) ** 2 for v in images.values())) // 2
  if len(same) > possible:
    raise ValueError(f"{len(same)} same-person pairs but only {possible} different-person "
                     "pairs exist among these images")
  seen, different = set(), []
  while len(different) < len(same):
    first, second = (pool[int(i)] for i in rng.integers(len(pool), size=2))
    key = tuple(sorted((first, second)))
    if first[0] != second[0] and key not in seen:
      seen.add(key)
      different.append(PairEntry(first, second, False))
  return same + different


def format_lfw_pairs(entries: Sequence[PairEntry], folds: int = 1) -> str:
  """The LFW text of `entries` (as many same as different pairs), one pair a line;
  parse_lfw_pairs reads it back. folds = 1: View 1's layout, the header "N", N same pairs then
  N different. folds = F > 1: View 2's, the header "F N" and F blocks of N same + N different
  pairs, N = floor(same / F): the evaluation's F folds (the last same % F pairs of each kind
  are left out)."""
  same = [e for e in entries if e.is_same]
  different = [e for e in entries if not e.is_same]
  if len(same) != len(different):
    raise ValueError(f"a View 1 file needs as many same as different pairs, got {len(same)} "
                     f"and {len(different)}")
  per = len(same) // folds
  if per < 1:
    raise ValueError(f"{folds} folds need at least {folds} same pairs, got {len(same)}")
  lines = [str(len(same)) if folds == 1 else f"{folds}\t{per}"]
  for k in range(folds):
    lines += [f"{e.first[0]}\t{e.first[1]}\t{e.second[1]}" for e in same[k * per:(k + 1) * per]]
    lines += [f"{e.first[0]}\t{e.first[1]}\t{e.second[0]}\t{e.second[1]}"
              for e in different[k * per:(k + 1) * per]]
  return "\n".join(lines) + "\n"


# --- InsightFace .bin -------------------------------------------------------------------------


class _BoolDtype:
  """Stands in for numpy.dtype('bool') while unpickling; takes (and ignores) the dtype state."""

  def __setstate__(self, state) -> None:
    pass


class _SafeUnpickler(pickle.Unpickler):
  """Resolves only the globals of the verification-set layouts, each behind an argument check."""

  def __init__(self, file, path: str):
    super().__init__(file, encoding="bytes")
    self._path = path
    self._globals = {
        ("_codecs", "encode"): self._latin1_encode,
        ("builtins", "bytes"): self._bytes,
        ("__builtin__", "bytes"): self._bytes,
        ("builtins", "bytearray"): self._bytearray,
        ("__builtin__", "bytearray"): self._bytearray,
        ("numpy", "dtype"): self._numpy_dtype,
        ("numpy.core.multiarray", "scalar"): self._numpy_scalar,
        ("numpy._core.multiarray", "scalar"): self._numpy_scalar,
    }

  def find_class(self, module: str, name: str):
    found = self._globals.get((module, name))
    if found is None:
      raise UnsafePickleError(f"{self._path}: refused global {module}.{name} (a verification .bin "
                              "holds only images and booleans)")
    return found

  def _refuse(self, call: str, args) -> UnsafePickleError:
    shown = ", ".join(type(arg).__name__ for arg in args)
    return UnsafePickleError(f"{self._path}: refused call {call}({shown})")

  @staticmethod
  def _is_latin1(encoding) -> bool:
    return isinstance(encoding, str) and encoding.lower() in _LATIN1_NAMES

  def _latin1_encode(self, *args):
    if len(args) == 2 and isinstance(args[0], str) and self._is_latin1(args[1]):
      return args[0].encode("latin-1")
    raise self._refuse("_codecs.encode", args)

  def _bytes(self, *args):
    if not args:
      return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
      return bytes(args[0])
    raise self._refuse("bytes", args)

  def _bytearray(self, *args):
    if not args:
      return bytearray()
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
      return bytearray(args[0])
    if len(args) == 2 and isinstance(args[0], str) and self._is_latin1(args[1]):
      return bytearray(args[0].encode("latin-1"))
    raise self._refuse("bytearray", args)

  def _numpy_dtype(self, *args):
    spec = args[0] if args else None
    if isinstance(spec, bytes):
      spec = spec.decode("latin-1")
    if len(args) <= 3 and spec in _BOOL_DTYPE_SPECS:
      return _BoolDtype()
    raise UnsafePickleError(f"{self._path}: refused numpy.dtype({spec!r}): only numpy bool "
                            "scalars are accepted from numpy")

  def _numpy_scalar(self, *args):
    if (len(args) == 2 and isinstance(args[0], _BoolDtype) and isinstance(args[1], bytes)
        and len(args[1]) == 1):
      return np.bool_(args[1] != b"\0")
    raise UnsafePickleError(f"{self._path}: refused numpy scalar: only numpy bool scalars are "
                            "accepted from numpy")


def _describe(value) -> str:
  if isinstance(value, (list, tuple)):
    return f"a {type(value).__name__} of {len(value)} items"
  if isinstance(value, (bytes, bytearray, str)):
    return f"{type(value).__name__} of length {len(value)}"
  return f"{type(value).__name__} {value!r}"[:80]


def load_bin(path: str) -> tuple[list[bytes], np.ndarray]:
  """(encoded images [2P], is_same bool [P]) from an InsightFace verification .bin, safely."""
  path = os.fspath(path)
  with open(path, "rb") as bin_file:
    data = bin_file.read()
  try:
    loaded = _SafeUnpickler(io.BytesIO(data), path).load()
  except UnsafePickleError:
    raise
  except Exception as error:  # truncated or corrupt pickles fail in many ways
    raise PairsFileError(f"{path}: not a readable verification pickle, truncated or corrupt "
                         f"({type(error).__name__}: {error})") from None
  if not isinstance(loaded, (tuple, list)) or len(loaded) != 2:
    raise PairsFileError(f"{path}: expected a pickled (images, issame) pair, found {_describe(loaded)}")
  bins, issame = loaded
  for what, value in (("images", bins), ("issame", issame)):
    if not isinstance(value, (list, tuple)):
      raise PairsFileError(f"{path}: expected {what} as a list, found {_describe(value)}")
  images = []
  for number, image in enumerate(bins):
    if not isinstance(image, (bytes, bytearray)):
      raise PairsFileError(f"{path}: image {number} is {_describe(image)}, expected encoded bytes")
    images.append(bytes(image))
  flags = []
  for number, flag in enumerate(issame):
    if isinstance(flag, (bool, np.bool_)) or (isinstance(flag, int) and flag in (0, 1)):
      flags.append(bool(flag))
    else:
      raise PairsFileError(f"{path}: issame[{number}] is {_describe(flag)}, expected a bool")
  if len(images) != 2 * len(flags):
    raise PairsFileError(f"{path}: found {len(images)} images for {len(flags)} issame flags; "
                         f"expected 2 * {len(flags)} = {2 * len(flags)}")
  return images, np.array(flags, dtype=bool)


def save_bin(path: str, images: Sequence[bytes], is_same: Sequence[bool] | np.ndarray,
             protocol: int = 4) -> None:
  """Writes (images, is_same) in InsightFace's .bin layout: pickle of (list of bytes, list of bool)."""
  path = os.fspath(path)
  flags = [bool(flag) for flag in np.asarray(is_same, dtype=bool).ravel()]
  bins = []
  for number, image in enumerate(images):
    if not isinstance(image, (bytes, bytearray, memoryview)):
      raise ValueError(f"image {number} is {type(image).__name__}, expected encoded bytes")
    bins.append(bytes(image))
  if len(bins) != 2 * len(flags):
    raise ValueError(f"{len(bins)} images for {len(flags)} pairs; expected 2 * {len(flags)}")
  partial = path + ".partial"
  try:
    with open(partial, "wb") as bin_file:
      pickle.dump((bins, flags), bin_file, protocol=protocol)
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
