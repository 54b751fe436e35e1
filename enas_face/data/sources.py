"""Parsing and checking of the --dataset and --pairs specifications.

Pure Python (no TensorFlow), so a wrong path fails before the slow import:

    --dataset    = synthetic | folder:DIR | tfrecord:DIR | insightface:DIR_OR_REC
    --pairs      = (empty) | SET[,SET...],  SET = lfw:PAIRS_TXT,IMAGES_DIR | bin:FILE.bin
    --unlabelled = (empty) | SOURCE[,SOURCE...],
                   SOURCE = small_identities | folder:DIR | tfrecord:DIR

folder:DIR holds one subfolder of images per identity; tfrecord:DIR is the
output of tools/align_dataset.py (manifest.json + shards); insightface: is a
folder with train.rec + train.idx (or the .rec itself, its .idx beside it).
lfw: IMAGES_DIR is either a folder <Name>/<Name>_NNNN.jpg or an aligned
TFRecord folder of the same images. A --pairs list splits on the commas that
start a new `kind:` token (the comma inside lfw:PAIRS_TXT,IMAGES_DIR stays);
each set is named by its file's stem (bin:.../cfp_fp.bin -> cfp_fp,
lfw:.../pairsDevTest.txt,DIR -> pairsDevTest), _2, _3, ... on clashes.
--unlabelled's sources (data/unlabelled.py): the --dataset's own identities below
--min_images_per_identity, a folder of face images (any depth; a first-level subfolder is
read as an identity's name), an aligned TFRecord folder.
"""
from __future__ import annotations

import dataclasses
import os
import re

from enas_face.config import ConfigError

DATASET_KINDS = ("synthetic", "folder", "tfrecord", "insightface")
PAIRS_KINDS = ("lfw", "bin")
MANIFEST = "manifest.json"
# --dataset kinds read record by record, so --stream can stream them (data/stream.py).
STREAMABLE = ("tfrecord", "insightface")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  kind: str
  path: str = ""          # folder, TFRecord folder, or the .rec file
  index_path: str = ""    # insightface: the .idx file


@dataclasses.dataclass(frozen=True)
class PairsSpec:
  kind: str               # "lfw" or "bin"
  path: str               # pairs.txt or .bin
  images_dir: str = ""    # lfw: where the pair images are
  name: str = ""          # unique among the --pairs sets: the file stem (+ _2, _3, ...)

  def value(self) -> str:
    """The spec in --pairs syntax (absolute paths)."""
    return f"lfw:{self.path},{self.images_dir}" if self.kind == "lfw" else f"bin:{self.path}"


def check_stream(stream: str, dataset: str) -> None:
  """ConfigError naming --stream when --stream=always asks a --dataset that cannot stream (not
  STREAMABLE: the synthetic faces are made in memory, a folder is decoded image by image)."""
  kind = dataset.split(":", 1)[0]
  if stream == "always" and kind not in STREAMABLE:
    hint = ("the synthetic faces are generated in memory" if kind == "synthetic"
            else "align a folder with tools/align_dataset.py first")
    raise ConfigError(f"--stream=always with --dataset={dataset}: only tfrecord: and "
                      f"insightface: datasets stream ({hint})")


def _require_dir(path: str, flag: str, what: str) -> str:
  if not os.path.isdir(path):
    raise ConfigError(f"{flag}: {path} is not a folder (expected {what})")
  return os.path.abspath(path)


def _require_file(path: str, flag: str, what: str) -> str:
  if not os.path.isfile(path):
    raise ConfigError(f"{flag}: {path} does not exist (expected {what})")
  return os.path.abspath(path)


def parse_dataset_spec(value: str) -> DatasetSpec:
  """DatasetSpec of a --dataset value; ConfigError if malformed or its files are missing."""
  flag = f"--dataset={value}"
  kind, _, path = value.partition(":")
  if kind not in DATASET_KINDS:
    raise ConfigError(f"{flag}: unknown kind {kind!r}; expected one of "
                      "synthetic, folder:DIR, tfrecord:DIR, insightface:DIR_OR_REC")
  if kind == "synthetic":
    if path:
      raise ConfigError(f"{flag}: 'synthetic' takes no path")
    return DatasetSpec("synthetic")
  if not path:
    raise ConfigError(f"{flag}: missing the path after '{kind}:'")
  path = os.path.expanduser(path)
  if kind == "folder":
    return DatasetSpec(kind, _require_dir(path, flag, "one subfolder of images per identity"))
  if kind == "tfrecord":
    folder = _require_dir(path, flag, "a folder written by tools/align_dataset.py")
    _require_file(os.path.join(folder, MANIFEST), flag,
                  "its manifest.json, written by tools/align_dataset.py")
    return DatasetSpec(kind, folder)
  rec = os.path.join(path, "train.rec") if os.path.isdir(path) else path
  rec = _require_file(rec, flag, "an InsightFace train.rec, or a folder holding one")
  index = _require_file(os.path.splitext(rec)[0] + ".idx", flag,
                        f"the RecordIO index beside {os.path.basename(rec)}")
  return DatasetSpec(kind, rec, index)


UNLABELLED_KINDS = ("small_identities", "folder", "tfrecord")
SMALL_IDENTITIES = "small_identities"


@dataclasses.dataclass(frozen=True)
class UnlabelledSpec:
  kind: str               # UNLABELLED_KINDS
  path: str = ""          # folder: / tfrecord: folder

  def value(self) -> str:
    """The source in --unlabelled syntax (absolute paths)."""
    return self.kind if not self.path else f"{self.kind}:{self.path}"


def parse_unlabelled_spec(value: str) -> list[UnlabelledSpec]:
  """The UnlabelledSpecs of an --unlabelled value, each once, in order ([] when empty);
  ConfigError naming --unlabelled when a source is malformed or its folder is missing."""
  if not value:
    return []
  flag = f"--unlabelled={value}"
  specs = []
  for item in value.split(","):
    kind, _, path = item.strip().partition(":")
    if kind not in UNLABELLED_KINDS:
      raise ConfigError(f"{flag}: unknown source {item!r}; expected a comma-separated list of "
                        f"{SMALL_IDENTITIES}, folder:DIR, tfrecord:DIR")
    if kind == SMALL_IDENTITIES:
      if path:
        raise ConfigError(f"{flag}: '{SMALL_IDENTITIES}' takes no path")
      spec = UnlabelledSpec(kind)
    elif not path:
      raise ConfigError(f"{flag}: missing the path after '{kind}:'")
    elif kind == "folder":
      spec = UnlabelledSpec(kind, _require_dir(os.path.expanduser(path), flag,
                                               "a folder of face images"))
    else:
      folder = _require_dir(os.path.expanduser(path), flag,
                            "a folder written by tools/align_dataset.py")
      _require_file(os.path.join(folder, MANIFEST), flag,
                    "its manifest.json, written by tools/align_dataset.py")
      spec = UnlabelledSpec(kind, folder)
    if spec not in specs:
      specs.append(spec)
  return specs


# A comma followed by `word:` starts the next set; a Windows drive (C:) is one letter.
_SET_START = re.compile(r",(?=[A-Za-z_][A-Za-z0-9_]+:)")


def parse_pairs_spec(value: str) -> list[PairsSpec]:
  """The PairsSpecs of a --pairs value in the order given, each with a unique name ([] when
  empty); ConfigError naming --pairs if a set is malformed or its files are missing."""
  if not value:
    return []
  specs, names = [], set()
  for item in _SET_START.split(value):
    spec = _parse_one_set(item, f"--pairs={value}")
    stem = os.path.splitext(os.path.basename(spec.path))[0]
    name, k = stem, 1
    while name in names:
      k += 1
      name = f"{stem}_{k}"
    names.add(name)
    specs.append(dataclasses.replace(spec, name=name))
  return specs


def _parse_one_set(value: str, flag: str) -> PairsSpec:
  kind, _, rest = value.partition(":")
  if kind not in PAIRS_KINDS:
    raise ConfigError(f"{flag}: unknown kind {kind!r} in {value!r}; expected a comma-separated "
                      "list of lfw:PAIRS_TXT,IMAGES_DIR and bin:FILE.bin")
  if kind == "bin":
    return PairsSpec(kind, _require_file(os.path.expanduser(rest), flag,
                                         "an insightface verification .bin"))
  pairs_txt, comma, images_dir = rest.partition(",")
  if not comma or not pairs_txt or not images_dir:
    raise ConfigError(f"{flag}: expected lfw:PAIRS_TXT,IMAGES_DIR, got {value!r}")
  return PairsSpec(kind, _require_file(os.path.expanduser(pairs_txt), flag, "an LFW pairs file"),
                   _require_dir(os.path.expanduser(images_dir), flag,
                                "the images' folder (<Name>/<Name>_NNNN.jpg) or an aligned "
                                "TFRecord folder"))
