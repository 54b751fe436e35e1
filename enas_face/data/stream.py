"""Training data streamed from disk: aligned TFRecord shards or an InsightFace .rec.

In memory (real.assemble) every image is decoded once into one array: the fastest
for small sets (LFW, ORL, CASIA-size at CPU input sizes) and impossible for
MS-Celeb-1M (5.8 M faces = 218 GB at 112x112x3). `--stream=auto` (the default)
streams a `tfrecord:` or `insightface:` dataset whose decoded images would take
more than `--stream_memory_gb` (records x S x S x 3 bytes); `--stream=always|never`
force either way.

A streamed dataset (our choices; the in-memory rules where they scale):
- identities: one index pass reads the label and path of every record without
  decoding an image (cached in the cache folder); then the same identity rules
  as in memory (real.choose_identities).
- splits by a hash of the record's path, u = Fingerprint64(path) mod 2^20:
  val if u < F, test if F <= u < 2F, train otherwise, with F = 2^20 min(0.1, E/N)
  (E = --stream_eval_images, N = records of training identities), so val and test
  hold about E images each (10 % each when N < 10 E, as in memory).
- a bounded sample of the train split (2F <= u < 2F + G, G = 2^20 min(1 - 2F/2^20, E/N))
  is kept in memory for the channel statistics, the identification gallery, the
  PCA baseline and export's representative images.
- one selection pass decodes only those records (val, test, sample and the
  held-out identities' images for pairs); cached with the settings that chose them.
- training reads the shards (TFRecord) or keys (RecordIO) in an order shuffled per
  epoch with (seed, epoch), split over the input pipelines of tf.distribute,
  shuffles encoded records in a buffer of --shuffle_buffer, then decodes and
  augments as in memory. Resident memory: the buffer, the sample and val/test,
  whatever N (plus, for RecordIO, its key index).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Protocol

import numpy as np
import tensorflow as tf
from absl import logging

from enas_face.config import ConfigError, DataConfig
from enas_face.data.base import FaceDataset, LabelledImages, VerificationPairs
from enas_face.data import pipeline, real, recordio, sources, tfrecord

BUCKETS = 1 << 20
INDEX_VERSION = 1
AUTOTUNE = tf.data.AUTOTUNE
# Roles of records in the selection pass.
UNUSED, TRAIN, VAL, TEST, SAMPLE, PAIRS = -1, 0, 1, 2, 3, 4


def path_bucket(path) -> tf.Tensor:
  """tf ops: u = Fingerprint64(path) mod 2^20, the record's split coordinate."""
  return tf.strings.to_hash_bucket_fast(path, BUCKETS)


def decode_square(encoded, image_size: int) -> tf.Tensor:
  """tf ops: JPEG/PNG bytes of any size -> uint8 [S, S, 3]: centre square, resized (area when
  shrinking, bilinear when enlarging), as real.fit_square does in memory."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  shape = tf.shape(image)
  side = tf.minimum(shape[0], shape[1])
  square = tf.image.crop_to_bounding_box(image, (shape[0] - side) // 2, (shape[1] - side) // 2,
                                         side, side)
  resized = tf.cond(
      side == image_size, lambda: tf.cast(square, tf.float32),
      lambda: tf.cond(side > image_size,
                      lambda: tf.image.resize(square, [image_size, image_size], method="area"),
                      lambda: tf.image.resize(square, [image_size, image_size])))
  image = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
  return tf.ensure_shape(image, [image_size, image_size, 3])


class RecordSource(Protocol):
  """Where streamed records come from: (encoded image, label int64, path string) elements."""
  name: str
  num_records: int
  identity_names: list[str]
  report: dict  # what the source says about itself (rejects at alignment, ...)

  def fingerprint(self) -> str: ...

  def records(self, order_seed=None, shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset: ...

  def decode(self, encoded, image_size: int) -> tf.Tensor: ...


class TFRecordSource:
  """An aligned TFRecord folder (tools/align_dataset.py): shards + manifest."""

  def __init__(self, folder: str):
    self.folder = folder
    self.manifest = tfrecord.read_manifest(folder)
    self.files = tfrecord.tfrecord_files(folder, self.manifest)
    self.name = folder
    self.num_records = int(self.manifest["num_images"])
    self.stored_size = int(self.manifest["image_size"])
    names = [""] * (max([i["label"] for i in self.manifest["identities"]], default=-1) + 1)
    for identity in self.manifest["identities"]:
      names[identity["label"]] = identity["name"]
    self.identity_names = names
    self.report = {"manifest": os.path.join(folder, tfrecord.MANIFEST),
                   "image_files": self.num_records + int(self.manifest["num_rejects"]),
                   "rejects": self.manifest["rejects"],
                   "num_rejects": int(self.manifest["num_rejects"]),
                   "empty_identities": self.manifest.get("empty_identities", [])}

  def fingerprint(self) -> str:
    """sha1 of the manifest and of each shard's size and mtime."""
    digest = hashlib.sha1(json.dumps(self.manifest, sort_keys=True).encode())
    for path in self.files:
      stat = os.stat(path)
      digest.update(f"{os.path.basename(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]

  def records(self, order_seed=None, shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
    """Manifest order without `order_seed`; else the shards in a seeded order, 4 read
    interleaved record by record. With several input pipelines each reads every k-th
    shard (or every k-th record when there are fewer shards than pipelines)."""
    index, count = shard
    files = list(self.files)
    if order_seed is not None:
      files = [files[i] for i in np.random.default_rng(order_seed).permutation(len(files))]
    split_files = count > 1 and len(files) >= count
    if split_files:
      files = files[index::count]
    if order_seed is None or len(files) == 1:
      records = tf.data.TFRecordDataset(files)
    else:
      records = tf.data.Dataset.from_tensor_slices(files).interleave(
          tf.data.TFRecordDataset, cycle_length=min(4, len(files)), block_length=1,
          num_parallel_calls=AUTOTUNE, deterministic=True)
    if count > 1 and not split_files:
      records = records.shard(count, index)

    def parse(serialized):
      example = tfrecord.parse_example(serialized)
      return example["encoded"], tf.cast(example["label"], tf.int64), example["path"]

    return records.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)

  def decode(self, encoded, image_size: int) -> tf.Tensor:
    return tfrecord.decode_face(encoded, self.stored_size, image_size)


class RecordIOSource:
  """An InsightFace train.rec + train.idx, read by key (random access: a true shuffle)."""

  def __init__(self, rec_path: str, idx_path: str):
    self.rec_path, self.idx_path = rec_path, idx_path
    with recordio.RecordIOReader(rec_path, idx_path) as reader:
      self.keys = np.asarray(recordio.image_keys(reader), dtype=np.int64)
    self.name = rec_path
    self.num_records = len(self.keys)
    self.identity_names: list[str] = []  # known after the index pass: str(label)
    self.report = {"image_files": self.num_records}

  def fingerprint(self) -> str:
    digest = hashlib.sha1()
    for path in (self.rec_path, self.idx_path):
      stat = os.stat(path)
      digest.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]

  def records(self, order_seed=None, shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
    keys = self.keys
    if order_seed is not None:
      keys = keys[np.random.default_rng(order_seed).permutation(len(keys))]
    keys = keys[shard[0]::shard[1]]
    prefix = os.path.basename(self.rec_path)
    rec_path, idx_path = self.rec_path, self.idx_path

    def generate():
      with recordio.RecordIOReader(rec_path, idx_path) as reader:
        for key in keys:
          label, image = recordio.read_image_record(reader, int(key))
          yield image, label, f"{prefix}#{key}"

    return tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.string)))

  def decode(self, encoded, image_size: int) -> tf.Tensor:
    return decode_square(encoded, image_size)


def make_source(kind: str, path: str, index_path: str = "") -> RecordSource:
  if kind == "tfrecord":
    return TFRecordSource(path)
  if kind == "insightface":
    return RecordIOSource(path, index_path)
  raise ConfigError(f"--stream: a {kind} dataset cannot stream (only tfrecord: and insightface:)")


def should_stream(config: DataConfig, kind: str, num_records: int) -> bool:
  """--stream: always / never, or auto: num_records x S x S x 3 bytes > --stream_memory_gb GiB."""
  if config.stream == "never":
    return False
  if kind not in sources.STREAMABLE:
    sources.check_stream(config.stream, config.dataset)  # --stream=always: an error
    return False
  if config.stream == "always":
    return True
  return num_records * config.image_size ** 2 * 3 > config.stream_memory_gb * 2 ** 30


# ------------------------------------------------------------------------------ passes

def _cache_file(config: DataConfig, stem: str, key: dict) -> str | None:
  if not config.cache_dir:
    return None
  digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
  return os.path.join(config.cache_dir, f"{stem}-{digest}.npz")


def _load_npz(path: str | None) -> dict | None:
  if path is None or not os.path.isfile(path):
    return None
  with np.load(path, allow_pickle=False) as data:
    return {key: data[key] for key in data.files}


def _save_npz(path: str | None, **arrays) -> None:
  """np.savez to `<path>.<pid>.tmp`, then os.replace: a killed run leaves no partial cache,
  and workers writing the same cache at once (multi_worker) do not take each other's file."""
  if path is None:
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.{os.getpid()}.tmp"
  with open(tmp, "wb") as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)


def index_records(source: RecordSource, config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
  """(labels int64 [N], buckets int64 [N]) of every record in source order; no image is
  decoded. Cached under the source's fingerprint."""
  path = _cache_file(config, "stream-index", {"source": source.fingerprint(),
                                              "version": INDEX_VERSION})
  cached = _load_npz(path)
  if cached is not None:
    logging.info("stream index of %s from %s", source.name, path)
    return cached["labels"], cached["buckets"]
  labels, buckets = [], []
  pairs = source.records().map(lambda _, label, record_path: (label, path_bucket(record_path)),
                               num_parallel_calls=AUTOTUNE, deterministic=True)
  for batch_labels, batch_buckets in pairs.batch(8192).prefetch(2).as_numpy_iterator():
    labels.append(batch_labels)
    buckets.append(batch_buckets)
  labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
  buckets = np.concatenate(buckets) if buckets else np.zeros(0, np.int64)
  if labels.size and labels.min() < 0:
    raise ConfigError(f"--dataset={config.dataset}: negative labels in {source.name}")
  _save_npz(path, labels=labels, buckets=buckets)
  return labels, buckets


def split_thresholds(num_train_records: int, eval_images: int) -> tuple[int, int]:
  """(F, G) in buckets: val u < F, test F <= u < 2F, sample 2F <= u < 2F + G."""
  share = min(0.1, eval_images / max(num_train_records, 1))
  low = int(BUCKETS * share)
  sample = int(BUCKETS * min(1.0 - 2 * share, eval_images / max(num_train_records, 1)))
  return low, sample


def record_roles(labels: np.ndarray, buckets: np.ndarray, relabel: np.ndarray,
                 heldout: np.ndarray | None, low: int, sample: int) -> np.ndarray:
  """int8 role of each record: UNUSED, TRAIN, VAL, TEST, SAMPLE (train, kept in memory), PAIRS."""
  trained = relabel[labels] >= 0
  roles = np.full(len(labels), UNUSED, np.int8)
  roles[trained] = TRAIN
  roles[trained & (buckets < 2 * low + sample)] = SAMPLE
  roles[trained & (buckets < 2 * low)] = TEST
  roles[trained & (buckets < low)] = VAL
  if heldout is not None:
    roles[np.isin(labels, heldout)] = PAIRS
  return roles


def decode_selected(source: RecordSource, roles: np.ndarray, image_size: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(images uint8 [M, S, S, 3], labels [M], roles [M]) of the records whose role is VAL, TEST,
  SAMPLE or PAIRS, in source order; every other record is skipped undecoded."""
  table = tf.constant(roles, tf.int8)
  count = int((roles > TRAIN).sum())  # VAL, TEST, SAMPLE, PAIRS
  images = np.empty((count, image_size, image_size, 3), np.uint8)
  labels = np.empty(count, np.int64)
  kept_roles = np.empty(count, np.int8)
  ds = source.records().enumerate().filter(
      lambda i, record: tf.gather(table, i) > TRAIN).map(
          lambda i, record: (source.decode(record[0], image_size), record[1], tf.gather(table, i)),
          num_parallel_calls=AUTOTUNE, deterministic=True)
  filled = 0
  for batch_images, batch_labels, batch_roles in ds.batch(256).prefetch(2).as_numpy_iterator():
    n = len(batch_labels)
    images[filled:filled + n] = batch_images
    labels[filled:filled + n] = batch_labels
    kept_roles[filled:filled + n] = batch_roles
    filled += n
  if filled != count:
    raise ConfigError(f"{source.name}: the records changed while reading them ({filled} of "
                      f"{count} selected records found); rerun")
  return images, labels, kept_roles


# ------------------------------------------------------------------------------ the split

@dataclasses.dataclass(frozen=True, eq=False)
class StreamedImages:
  """The training split of a streamed dataset: a recipe for tf.data, not an image array.

  labels: int32 [N] training labels of its records (source order); sample: a bounded
  in-memory subset of its images; mean, std: channel statistics of the sample.
  """
  source: RecordSource
  image_size: int
  relabel: np.ndarray     # int64: original label -> training label, -1 = not trained on
  min_bucket: int         # records with path bucket >= this are training records
  labels: np.ndarray
  sample: LabelledImages
  mean: np.ndarray
  std: np.ndarray
  shuffle_buffer: int = 10000

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  def dataset(self, batch_size: int, mean: np.ndarray, *, seed: int, epoch: int,
              random_flip: bool = True, pad: int = 0, cutout: int = 0, augment: bool = True,
              input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """One epoch of augmented (images float32 [B, S, S, 3], labels int32 [B]) batches.

    B is the global batch, or the per-replica batch under `input_context` (one input
    pipeline of tf.distribute, which reads its share of the shards). Every pipeline yields
    floor(N / global batch) batches per local replica: the stream repeats to fill the
    last ones. Seeded by (seed, epoch): shard order, shuffle and augmentation.
    """
    shard, local_replicas, per_batch = (0, 1), 1, batch_size
    if input_context is not None:
      shard = (input_context.input_pipeline_id, input_context.num_input_pipelines)
      per_batch = input_context.get_per_replica_batch_size(batch_size)
      local_replicas = input_context.num_replicas_in_sync // input_context.num_input_pipelines
    steps = len(self) // batch_size
    if steps < 1:
      raise ConfigError(f"--batch_size={batch_size} is larger than the streamed training split "
                        f"({len(self)} images)")
    logging.info("streamed training split, epoch %d: input pipeline %d of %d, %d images, "
                 "batches of %d", epoch + 1, shard[0], shard[1], len(self), per_batch)
    relabel = tf.constant(self.relabel, tf.int64)
    num_labels, min_bucket = len(self.relabel), self.min_bucket

    def is_training(_, label, path):
      known = (label >= 0) & (label < num_labels)
      target = tf.gather(relabel, tf.clip_by_value(label, 0, num_labels - 1))
      return known & (target >= 0) & (path_bucket(path) >= min_bucket)

    def decode(encoded, label, _):
      return self.source.decode(encoded, self.image_size), tf.gather(relabel, label)

    records = self.source.records(order_seed=[seed, epoch, 7919], shard=shard).filter(is_training)
    records = records.shuffle(self.shuffle_buffer, seed=(seed * 100003 + epoch) % (2 ** 31),
                              reshuffle_each_iteration=False).repeat()
    images = records.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True).enumerate()
    images = images.map(lambda index, element: (element[0], element[1], index))
    batches = pipeline.augment_and_batch(images, per_batch, mean, seed=seed, epoch=epoch,
                                         random_flip=random_flip, pad=pad, cutout=cutout,
                                         augment=augment)
    return batches.take(steps * local_replicas)


def load_streamed(source: RecordSource, config: DataConfig, name: str,
                  pairs: VerificationPairs | None = None,
                  pair_identities: frozenset[str] = frozenset()) -> FaceDataset:
  """FaceDataset whose train split streams (see the module docstring); val, test and the
  pairs are in memory."""
  labels, buckets = index_records(source, config)
  if not len(labels):
    raise ConfigError(f"--dataset={config.dataset}: {source.name} holds no records")
  num_labels = int(labels.max()) + 1
  names = list(source.identity_names) or [str(i) for i in range(num_labels)]
  names += [str(i) for i in range(len(names), num_labels)]
  counts = np.bincount(labels, minlength=len(names))
  choice = real.choose_identities(counts, names, config, name, pairs is None, pair_identities)
  relabel = choice.relabel(len(names))
  trained = relabel[labels] >= 0
  low, sample = split_thresholds(int(trained.sum()), config.stream_eval_images)
  roles = record_roles(labels, buckets, relabel, choice.heldout, low, sample)
  selection_key = {"source": source.fingerprint(), "version": INDEX_VERSION,
                   "image_size": config.image_size, "roles": hashlib.sha1(roles.tobytes()).hexdigest()}
  path = _cache_file(config, "stream-selection", selection_key)
  cached = _load_npz(path)
  if cached is None:
    logging.info("decoding the val, test, sample and pair records of %s", source.name)
    images, kept_labels, kept_roles = decode_selected(source, roles, config.image_size)
    _save_npz(path, images=images, labels=kept_labels, roles=kept_roles)
  else:
    images, kept_labels, kept_roles = cached["images"], cached["labels"], cached["roles"]

  def part(role: int) -> LabelledImages:
    rows = kept_roles == role
    return LabelledImages(images[rows], relabel[kept_labels[rows]].astype(np.int32))

  if pairs is None:
    rows = kept_roles == PAIRS
    pairs = real.heldout_pairs(images[rows], kept_labels[rows], config)
  train_rows = (roles == TRAIN) | (roles == SAMPLE)
  sample_images = part(SAMPLE)
  if len(sample_images) < 2:
    raise ConfigError(f"--dataset={config.dataset}: the streamed training split's sample holds "
                      f"{len(sample_images)} images; raise --stream_eval_images")
  mean, std = pipeline.channel_statistics(sample_images.images)
  train = StreamedImages(source, config.image_size, relabel, 2 * low,
                         relabel[labels[train_rows]].astype(np.int32), sample_images, mean, std,
                         config.shuffle_buffer)
  val, test = part(VAL), part(TEST)
  report = dict(source.report, **choice.report, source=source.name, streamed=True, stream_cache=path or "",
                records=int(len(labels)), train_identities=len(choice.usable),
                train_images=len(train), val_images=len(val), test_images=len(test),
                sample_images=len(sample_images), pairs=len(pairs),
                pair_images=int(pairs.images.shape[0]),
                class_names=[names[i] for i in choice.usable])
  logging.info("%s (streamed): %d identities, %d train / %d val / %d test images, %d in the "
               "in-memory sample; %d pairs", name, len(choice.usable), len(train), len(val),
               len(test), len(sample_images), len(pairs))
  return FaceDataset(name=name, train=train, val=val, test=test,
                     num_classes=len(choice.usable), pairs=pairs, report=report)
