"""Is the input pipeline the bottleneck? tf.data throughput against the training
step's consumption, measured side by side in one run.

    python bench/bench_input_pipeline.py [--tfrecord_dir=ALIGNED] [--image_size=112
        --stem_stride=2 --batch_size=64 --batches=40]

Measures, in img/s:
  stream     aligned TFRecords -> parse -> JPEG/PNG decode -> resize -> shuffle ->
             augment (flip, pad+crop, cutout) -> batch  (pipeline alone)
  memory     the trainer's in-memory pipeline (arrays -> augment -> batch)
  step       the FixedChild train step on one constant batch (no input cost)
  fed        the train step fed by the stream pipeline
and prints stream / step (> 1: the pipeline outpaces training) and fed / step
(close to 1: training does not wait for input). Without --tfrecord_dir it writes
synthetic faces as an aligned JPEG folder first, at 112x112 like real aligned data.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from enas_face.models import heads  # noqa: E402
from enas_face.spaces import enas_macro  # noqa: E402
from enas_face.training import step as train_lib  # noqa: E402
from enas_face.models.child import FixedChild  # noqa: E402
from enas_face.config import DataConfig, ModelConfig, TrainConfig  # noqa: E402
from enas_face.data import pipeline, synthetic, tfrecord  # noqa: E402
from enas_face.data.base import LabelledImages  # noqa: E402


def images_per_second(batches, count: int, batch_size: int, consume=lambda b: b, warmup: int = 3):
  """Throughput over `count` batches after `warmup` untimed ones."""
  iterator = iter(batches)
  for _ in range(warmup):
    consume(next(iterator))
  tic = time.perf_counter()
  for _ in range(count):
    consume(next(iterator))
  return count * batch_size / (time.perf_counter() - tic)


def synthetic_aligned_folder(folder: str, identities: int, per_identity: int) -> str:
  faces = synthetic.make_synthetic_dataset(num_identities=identities,
                                           images_per_identity=per_identity,
                                           num_heldout_identities=2,
                                           heldout_images_per_identity=2, num_pairs=2,
                                           num_folds=1, image_size=112)
  images = np.concatenate([faces.train.images, faces.val.images, faces.test.images])
  labels = np.concatenate([faces.train.labels, faces.val.labels, faces.test.labels])
  names = [f"id{i:04d}" for i in range(identities)]
  paths = [f"{names[label]}/{k}.jpg" for k, label in enumerate(labels)]
  tfrecord.write_arrays(folder, images, labels, paths, names, image_format="jpeg")
  return folder


def stream_batches(folder: str, config: DataConfig, batch_size: int, mean: np.ndarray):
  """Aligned shards -> decoded, resized, shuffled, augmented batches (repeated)."""
  records = tfrecord.stream(folder, config.image_size, num_parallel_reads=4)
  indexed = records.enumerate().map(lambda index, e: (e[0], e[1], index))
  shuffled = indexed.shuffle(4096, seed=config.seed).repeat()
  return pipeline.augment_and_batch(shuffled, batch_size, mean, seed=config.seed, epoch=0,
                                    random_flip=True, pad=config.pad, cutout=config.cutout)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tfrecord_dir", default="", help="aligned folder (tools/align_dataset.py)")
  parser.add_argument("--image_size", type=int, default=112)
  parser.add_argument("--stem_stride", type=int, default=2)
  parser.add_argument("--base_filters", type=int, default=32)
  parser.add_argument("--embedding_dim", type=int, default=128)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--batches", type=int, default=40, help="timed batches per measurement")
  parser.add_argument("--json", default="", help="also write the figures to this JSON file")
  args = parser.parse_args()

  folder = args.tfrecord_dir
  scratch = None
  if not folder:
    scratch = tempfile.TemporaryDirectory()
    folder = synthetic_aligned_folder(os.path.join(scratch.name, "aligned"), 40, 25)
  manifest = tfrecord.read_manifest(folder)
  data = DataConfig(image_size=args.image_size)
  images, labels, _ = tfrecord.load_arrays(folder, args.image_size)
  mean, std = pipeline.channel_statistics(images)
  batch = args.batch_size

  stream = images_per_second(stream_batches(folder, data, batch, mean), args.batches, batch)
  split = LabelledImages(images, labels)

  def memory_batches():
    for epoch in range(1 << 30):
      yield from pipeline.train_dataset(split, batch, mean, seed=0, epoch=epoch,
                                        pad=data.pad, cutout=data.cutout)
  memory = images_per_second(memory_batches(), args.batches, batch)

  model = ModelConfig(image_size=args.image_size, stem_stride=args.stem_stride,
                      base_filters=args.base_filters, embedding_dim=args.embedding_dim)
  child = FixedChild(model, enas_macro.default_architecture(model.num_layers),
                     name="child").build_for_input()
  child.standardize.set_statistics(mean, std)
  num_classes = int(labels.max()) + 1
  head = heads.SoftmaxHead(num_classes, name="head")
  head.build((None, model.embedding_dim))
  optimizer = train_lib.make_optimizer(TrainConfig(epochs=10, warmup_epochs=1), 100, 10)
  step = train_lib.make_train_step(child, head, optimizer, 0.0, num_classes, batch)
  constant = next(iter(pipeline.train_dataset(split, batch, mean, seed=0, epoch=0)))

  def train(b):
    return float(step(*b)[0])

  def repeat_constant():
    while True:
      yield constant
  step_rate = images_per_second(repeat_constant(), args.batches, batch, consume=train)
  fed = images_per_second(stream_batches(folder, data, batch, mean), args.batches, batch,
                          consume=train)
  step_rate_again = images_per_second(repeat_constant(), args.batches, batch, consume=train)
  step_rate = (step_rate + step_rate_again) / 2  # before and after "fed": drift cancels

  figures = {"tfrecord_dir": folder if args.tfrecord_dir else "synthetic (temporary)",
             "stored_size": manifest["image_size"], "image_size": args.image_size,
             "batch_size": batch, "stream_images_per_second": stream,
             "memory_images_per_second": memory, "train_step_images_per_second": step_rate,
             "fed_train_images_per_second": fed, "stream_over_step": stream / step_rate,
             "fed_over_step": fed / step_rate}
  print(f"aligned TFRecords: {figures['tfrecord_dir']} (stored {manifest['image_size']}px, "
        f"trained at {args.image_size}px, stem stride {args.stem_stride}, batch {batch})")
  print(f"  input pipeline, TFRecord stream (decode+augment)  {stream:8.1f} img/s")
  print(f"  input pipeline, in-memory arrays (augment)        {memory:8.1f} img/s")
  print(f"  train step on a constant batch                    {step_rate:8.1f} img/s")
  print(f"  train step fed by the TFRecord stream             {fed:8.1f} img/s")
  print(f"  stream / step = {stream / step_rate:.2f}  (> 1: the pipeline is not the bottleneck)")
  print(f"  fed / step    = {fed / step_rate:.2f}  (~1: training does not wait for input)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(figures, f, indent=2)
  if scratch is not None:
    scratch.cleanup()


if __name__ == "__main__":
  main()
