"""Streamed training data (data/stream.py): splits, the training stream, caches, sources."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from enas_face.config import ConfigError, DataConfig
from enas_face.data import load_dataset, pipeline, recordio, stream, tfrecord
from enas_face.data.base import LabelledImages

SIZE = 16
IDENTITIES = 12
PER_IDENTITY = 12


def _faces(count: int, seed: int = 0) -> np.ndarray:
  """Distinct random 16x16 faces: every image's pixel sum tells it apart."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
  """IDENTITIES x PER_IDENTITY PNG faces (lossless) in shards of 20 records."""
  folder = str(tmp_path_factory.mktemp("stream") / "aligned")
  images = _faces(IDENTITIES * PER_IDENTITY)
  labels = np.repeat(np.arange(IDENTITIES), PER_IDENTITY)
  names = [f"id{i:02d}" for i in range(IDENTITIES)]
  paths = [f"{names[label]}/{i:04d}.png" for i, label in enumerate(labels)]
  tfrecord.write_arrays(folder, images, labels, paths, names, image_format="png",
                        images_per_shard=20)
  return folder, images, labels, paths


def _config(folder: str, tmp_path, **overrides) -> DataConfig:
  settings = dict(dataset=f"tfrecord:{folder}", image_size=SIZE, num_pairs=20, num_folds=2,
                  heldout_fraction=0.2, stream="always", stream_eval_images=12,
                  shuffle_buffer=50, cache_dir=str(tmp_path / "cache"))
  settings.update(overrides)
  return DataConfig(**settings)


def _keys(images: np.ndarray) -> list[int]:
  """One integer per image (its pixel sum with position weights): identifies it."""
  weights = np.arange(1, SIZE * SIZE * 3 + 1, dtype=np.int64)
  return sorted((images.reshape(len(images), -1).astype(np.int64) @ weights).tolist())


def test_splits_partition_the_training_identities(aligned, tmp_path):
  folder, images, labels, _ = aligned
  dataset = load_dataset(_config(folder, tmp_path))
  assert dataset.streamed and dataset.report["streamed"]
  heldout = dataset.report["heldout_identities"]
  assert len(heldout) == round(0.2 * IDENTITIES)
  trained = IDENTITIES - len(heldout)
  assert dataset.num_classes == trained
  # every record of a training identity is in exactly one of train / val / test
  assert len(dataset.train) + len(dataset.val) + len(dataset.test) == trained * PER_IDENTITY
  # E = 12 of N = 120 records: val and test about 10 % each, hash-chosen
  assert 2 <= len(dataset.val) <= 30 and 2 <= len(dataset.test) <= 30
  # the pairs come from the held-out identities' images only
  held_images = images[np.isin(labels, [int(name[2:]) for name in heldout])]
  assert set(_keys(dataset.pairs.images)) <= set(_keys(held_images))
  assert dataset.pairs.images.shape[0] == len(held_images)
  # the sample is part of the training split, and its statistics are the child's
  assert len(dataset.train_sample) >= 2
  np.testing.assert_allclose(pipeline.split_statistics(dataset.train),
                             pipeline.channel_statistics(dataset.train_sample.images))


def _epoch(split, batch_size: int, seed: int = 0, epoch: int = 0, **kwargs):
  ds = split.dataset(batch_size, np.zeros(3, np.float32), seed=seed, epoch=epoch, augment=False,
                     **kwargs)
  images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
  return np.concatenate(images).round().astype(np.uint8), np.concatenate(labels)


def test_one_epoch_streams_every_training_record_once(aligned, tmp_path):
  folder, images, labels, _ = aligned
  dataset = load_dataset(_config(folder, tmp_path))
  count = len(dataset.train)
  got_images, got_labels = _epoch(dataset.train, batch_size=count)  # one batch: all records
  assert _keys(got_images) == sorted(
      set(_keys(images)) - set(_keys(dataset.val.images)) - set(_keys(dataset.test.images))
      - set(_keys(dataset.pairs.images)))
  assert np.bincount(got_labels, minlength=dataset.num_classes).tolist() == \
      np.bincount(dataset.train.labels, minlength=dataset.num_classes).tolist()
  # labels travel with their images: the relabelled identity of each streamed face
  weights = np.arange(1, SIZE * SIZE * 3 + 1, dtype=np.int64)
  original = {int(k): int(l) for k, l in zip(images.reshape(len(images), -1).astype(np.int64)
                                            @ weights, labels)}
  got_keys = got_images.reshape(len(got_images), -1).astype(np.int64) @ weights
  relabel = dataset.train.relabel
  assert [int(relabel[original[int(k)]]) for k in got_keys] == got_labels.tolist()


def test_stream_is_seeded_by_epoch_and_batches_count_as_in_memory(aligned, tmp_path):
  folder, _, _, _ = aligned
  train = load_dataset(_config(folder, tmp_path)).train
  first, _ = _epoch(train, 8, seed=1, epoch=0)
  again, _ = _epoch(train, 8, seed=1, epoch=0)
  other, _ = _epoch(train, 8, seed=1, epoch=1)
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)
  assert len(first) == (len(train) // 8) * 8  # floor(N / B) full batches, as in memory


def test_input_pipelines_read_disjoint_shares(aligned, tmp_path):
  folder, _, _, _ = aligned
  train = load_dataset(_config(folder, tmp_path)).train
  shares = []
  for index in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=index,
                                         num_replicas_in_sync=2)
    records = train.source.records(order_seed=[0, 0], shard=(index, 2))
    shares.append({path.decode() for _, _, path in records.as_numpy_iterator()})
    batches = train.dataset(8, np.zeros(3, np.float32), seed=0, epoch=0, augment=False,
                            input_context=context)
    # per-replica batches of 8 / 2, as many as the global stream has batches of 8
    shapes = [x.shape[0] for x, _ in batches]
    assert shapes == [4] * (len(train) // 8)
  assert not shares[0] & shares[1]
  assert len(shares[0] | shares[1]) == IDENTITIES * PER_IDENTITY


def test_index_and_selection_are_cached(aligned, tmp_path, monkeypatch):
  folder, _, _, _ = aligned
  config = _config(folder, tmp_path)
  first = load_dataset(config)
  cached = sorted(os.listdir(config.cache_dir))
  assert [name.split("-")[1] for name in cached] == ["index", "selection"]

  def no_pass(*args, **kwargs):
    raise AssertionError("read the records again instead of the cache")

  monkeypatch.setattr(stream, "decode_selected", no_pass)
  second = load_dataset(config)
  np.testing.assert_array_equal(first.val.images, second.val.images)
  assert len(first.train) == len(second.train)
  # other settings choose other records: a new selection, the same index
  monkeypatch.undo()
  load_dataset(dataclasses.replace(config, stream_eval_images=30))
  assert len(os.listdir(config.cache_dir)) == 3


def test_auto_switch_rule_and_errors(aligned, tmp_path):
  folder, _, _, _ = aligned
  records = IDENTITIES * PER_IDENTITY
  bytes_needed = records * SIZE * SIZE * 3
  below = _config(folder, tmp_path, stream="auto", stream_memory_gb=bytes_needed / 2 ** 30 * 1.01)
  above = _config(folder, tmp_path, stream="auto", stream_memory_gb=bytes_needed / 2 ** 30 * 0.99)
  assert not stream.should_stream(below, "tfrecord", records)
  assert stream.should_stream(above, "tfrecord", records)
  assert not load_dataset(below).streamed
  assert load_dataset(above).streamed
  with pytest.raises(ConfigError, match="--stream=always with --dataset=synthetic"):
    stream.should_stream(DataConfig(stream="always"), "synthetic", 0)
  with pytest.raises(ConfigError, match="--batch_size=1000 is larger than the streamed"):
    load_dataset(above).train.dataset(1000, np.zeros(3), seed=0, epoch=0)


def test_in_memory_and_streamed_agree_on_identities(aligned, tmp_path):
  folder, _, _, _ = aligned
  memory = load_dataset(_config(folder, tmp_path, stream="never"))
  streamed = load_dataset(_config(folder, tmp_path))
  assert memory.num_classes == streamed.num_classes
  assert memory.report["heldout_identities"] == streamed.report["heldout_identities"]
  assert memory.report["class_names"] == streamed.report["class_names"]
  total = len(memory.train) + len(memory.val) + len(memory.test)
  assert len(streamed.train) + len(streamed.val) + len(streamed.test) == total


def test_insightface_records_stream(tmp_path):
  images = _faces(60, seed=2)
  labels = np.repeat(np.arange(6), 10)
  rec = str(tmp_path / "train.rec")
  recordio.write_insightface(rec, [(int(label), tfrecord.encode_image(image, "png"))
                                   for image, label in zip(images, labels)])
  config = DataConfig(dataset=f"insightface:{rec}", image_size=SIZE, num_pairs=20, num_folds=2,
                      heldout_fraction=0.3, stream="always", stream_eval_images=10,
                      cache_dir=str(tmp_path / "cache"))
  dataset = load_dataset(config)
  assert dataset.streamed and dataset.num_classes == 4
  got, got_labels = _epoch(dataset.train, len(dataset.train))
  assert len(got) == len(dataset.train) == 40 - len(dataset.val) - len(dataset.test)
  assert set(_keys(got)) <= set(_keys(images))
  # key order is shuffled per epoch (random access), not the file's
  first, _ = _epoch(dataset.train, len(dataset.train), epoch=0)
  second, _ = _epoch(dataset.train, len(dataset.train), epoch=1)
  assert _keys(first) == _keys(second) and not np.array_equal(first, second)


def test_decode_square_matches_fit_square_on_same_size_and_shape(tmp_path):
  from enas_face.data import real
  image = _faces(1, seed=5)[0]
  wide = np.concatenate([image, image[:, :8]], axis=1)  # 16 x 24: centre square of 16
  encoded = tfrecord.encode_image(np.ascontiguousarray(wide), "png")
  np.testing.assert_array_equal(stream.decode_square(encoded, SIZE).numpy(),
                                real.fit_square(wide, SIZE))
  assert stream.decode_square(encoded, 8).numpy().shape == (8, 8, 3)


def test_reward_identities_refused_on_a_stream(aligned, tmp_path):
  from enas_face.data import reward_split
  folder, _, _, _ = aligned
  dataset = load_dataset(_config(folder, tmp_path))
  with pytest.raises(ConfigError, match="--reward_identities=2 with a streamed"):
    reward_split.hold_out_identities(dataset, 2, 20, 2, 0)


def test_in_memory_split_keeps_its_own_pipeline():
  split = LabelledImages(_faces(20), np.repeat(np.arange(2), 10).astype(np.int32))
  assert pipeline.split_statistics(split)[0].shape == (3,)
  batches = list(pipeline.train_dataset(split, 5, np.zeros(3, np.float32), seed=0, epoch=0))
  assert len(batches) == 4


# ------------------------------------------------------------------ the command line

def _cli_data(folder: str, tmp_path) -> list[str]:
  return [f"--dataset=tfrecord:{folder}", "--stream=always", "--stream_eval_images=12",
          "--heldout_fraction=0.2", "--num_pairs=20", "--num_folds=2", "--image_size=16",
          f"--cache_dir={tmp_path / 'cache'}"]


@pytest.mark.slow
def test_fixed_and_search_runs_stream_and_resume(aligned, main_in_process, tmp_path):
  from tests.test_distribute import TINY, SEARCH, read_jsonl
  folder, _, _, _ = aligned
  args = [*_cli_data(folder, tmp_path), *[a for a in TINY if not a.startswith("--image_size")]]
  run_dir = str(tmp_path / "fixed")
  first = main_in_process("--mode=fixed", "--epochs=2", f"--run_dir={run_dir}", *args)
  assert first.returncode == 0, first.stderr[-3000:]
  assert "streamed training split, epoch 1: input pipeline 0 of 1" in first.stderr
  report = json.load(open(os.path.join(run_dir, "data_report.json")))
  assert report["streamed"] and report["train_images"] > 0
  metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
  assert 0 <= metrics["verification_accuracy"] <= 1
  resumed = main_in_process("--mode=fixed", "--epochs=3", f"--run_dir={run_dir}", *args)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert [r["epoch"] for r in read_jsonl(os.path.join(run_dir, "train_history.jsonl"))] == \
      [1, 2, 3]
  assert "streamed training split, epoch 1:" not in resumed.stderr  # resumed after epoch 2
  search_dir = str(tmp_path / "search")
  search = main_in_process(*SEARCH, f"--run_dir={search_dir}", *args)
  assert search.returncode == 0, search.stderr[-3000:]
  assert os.path.isfile(os.path.join(search_dir, "arcs_ranked.json"))


@pytest.mark.slow
def test_two_workers_read_their_own_shares(aligned, tmp_path):
  from tests.test_distribute import (ENV, FIXED, TINY, free_ports, read_jsonl, run_together,
                                     tf_config)
  folder, _, _, _ = aligned
  args = [*_cli_data(folder, tmp_path), *[a for a in TINY if not a.startswith("--image_size")]]
  run_dir = str(tmp_path / "workers")
  ports = free_ports(2)
  (chief, other), _ = run_together(*[
      ([*FIXED, "--distribution_strategy=multi_worker", f"--run_dir={run_dir}", *args],
       {**ENV, "TF_CONFIG": tf_config(ports, index)}) for index in range(2)])
  assert chief.returncode == 0, chief.stderr[-4000:]
  assert other.returncode == 0, other.stderr[-4000:]
  assert "input pipeline 0 of 2" in chief.stderr and "input pipeline 1 of 2" in other.stderr
  history = read_jsonl(os.path.join(run_dir, "train_history.jsonl"))
  assert [h["epoch"] for h in history] == [1, 2] and {h["replicas"] for h in history} == {2}
