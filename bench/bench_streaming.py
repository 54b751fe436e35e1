"""Streamed against in-memory training data: speed and peak memory at two dataset sizes.

    python bench/bench_streaming.py [--data_root=runs/bench_streaming] [--sizes=5,20]
        [--epochs=2] [--json=FILE]

Writes synthetic faces as aligned TFRecord folders (JPEG, at the demo's 32x32) of
k times the demo's 2100 images for each k in --sizes (kept in --data_root and
reused), then trains the demo's default architecture (flags/demo.cfg's network,
softmax) for --epochs epochs on each folder twice, each time in a fresh process:
`--stream=never` (decoded into memory) and `--stream=always` (data/stream.py).
Prints, per run, the training images/s of the last epoch (the first one includes
tracing), the load time and the process's peak resident memory (ru_maxrss), then
streamed / in-memory speed and each mode's growth of peak memory from the smaller
to the larger size. Goals (issue 15): streamed >= 0.9 x in-memory speed; streamed
peak memory within +10 % whatever the size.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEMO_IMAGES = 60 * 25 + 60 * 10  # flags/demo.cfg: training + held-out identities' images
IMAGE_SIZE = 32
PER_IDENTITY = 35


def write_folder(folder: str, scale: int) -> str:
  """scale x DEMO_IMAGES synthetic faces (PER_IDENTITY per identity) as an aligned JPEG folder."""
  import numpy as np
  from enas_face.data import synthetic, tfrecord
  if os.path.isfile(os.path.join(folder, tfrecord.MANIFEST)):
    return folder
  identities = scale * DEMO_IMAGES // PER_IDENTITY
  faces = synthetic.make_synthetic_dataset(
      num_identities=identities, images_per_identity=PER_IDENTITY, num_heldout_identities=2,
      heldout_images_per_identity=2, num_pairs=2, num_folds=1, image_size=IMAGE_SIZE)
  images = np.concatenate([faces.train.images, faces.val.images, faces.test.images])
  labels = np.concatenate([faces.train.labels, faces.val.labels, faces.test.labels])
  names = [f"id{i:05d}" for i in range(identities)]
  paths = [f"{names[label]}/{k}.jpg" for k, label in enumerate(labels)]
  tfrecord.write_arrays(folder, images, labels, paths, names, image_format="jpeg",
                        images_per_shard=2000)
  return folder


def run_once(folder: str, stream: str, run_dir: str, epochs: int) -> dict:
  """In this process: load the folder, train `epochs` epochs; the figures as a dict."""
  from enas_face.training import fixed
  from enas_face.config import (DataConfig, EvalConfig, HeadConfig, ModelConfig, RunConfig,
                                TrainConfig)
  from enas_face.data import load_dataset
  from enas_face.spaces import enas_macro
  data = DataConfig(dataset=f"tfrecord:{folder}", image_size=IMAGE_SIZE, stream=stream,
                    num_pairs=600, cache_dir=os.path.join(run_dir, "cache"))
  model = ModelConfig(image_size=IMAGE_SIZE, embedding_dim=128)
  config = RunConfig(mode="fixed", run_dir=run_dir, arc=enas_macro.default_architecture(5),
                     model=model, data=data,
                     train=TrainConfig(epochs=epochs, batch_size=64, warmup_epochs=0),
                     eval=EvalConfig(), head=HeadConfig())
  tic = time.perf_counter()
  dataset = load_dataset(data)
  load_seconds = time.perf_counter() - tic
  fixed.train(config, dataset)
  history = fixed.read_history(run_dir)
  return {"stream": stream, "train_images": len(dataset.train), "streamed": dataset.streamed,
          "load_seconds": load_seconds,
          "images_per_second": history[-1]["images_per_second"],
          "first_epoch_images_per_second": history[0]["images_per_second"],
          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def spawn(folder: str, stream: str, run_dir: str, epochs: int) -> dict:
  """run_once in a fresh process, so its peak memory is its own."""
  import shutil
  shutil.rmtree(run_dir, ignore_errors=True)
  result = subprocess.run([sys.executable, os.path.abspath(__file__), "--run_one", folder,
                           "--stream", stream, "--run_dir", run_dir, "--epochs", str(epochs)],
                          capture_output=True, text=True, check=False)
  if result.returncode:
    raise SystemExit(f"run {stream} on {folder} failed:\n{result.stderr[-4000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_root", default=os.path.join(ROOT, "runs", "bench_streaming"))
  parser.add_argument("--sizes", default="5,20", help="dataset sizes in multiples of the demo's")
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--json", default="", help="also write the figures to this JSON file")
  parser.add_argument("--run_one", default="", help=argparse.SUPPRESS)
  parser.add_argument("--stream", default="never", help=argparse.SUPPRESS)
  parser.add_argument("--run_dir", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.run_one:
    print(json.dumps(run_once(args.run_one, args.stream, args.run_dir, args.epochs)))
    return

  sizes = [int(s) for s in args.sizes.split(",")]
  rows = []
  for scale in sizes:
    folder = write_folder(os.path.join(args.data_root, f"x{scale}"), scale)
    for stream in ("never", "always"):
      row = spawn(folder, stream, os.path.join(args.data_root, f"run_x{scale}_{stream}"),
                  args.epochs)
      row["scale"] = scale
      rows.append(row)
      print(f"x{scale:<3d} {'memory' if stream == 'never' else 'stream':7s} "
            f"{row['train_images']:7d} train images  {row['images_per_second']:7.1f} img/s "
            f"(epoch 1: {row['first_epoch_images_per_second']:6.1f})  load "
            f"{row['load_seconds']:6.1f} s  peak RSS {row['peak_rss_mb']:7.0f} MB", flush=True)

  def find(scale, stream):
    return next(r for r in rows if r["scale"] == scale and r["stream"] == stream)

  summary = {}
  for scale in sizes:
    ratio = find(scale, "always")["images_per_second"] / find(scale, "never")["images_per_second"]
    summary[f"x{scale}_stream_over_memory_speed"] = ratio
    print(f"x{scale}: streamed / in-memory images/s = {ratio:.3f} (goal >= 0.9)")
  small, large = min(sizes), max(sizes)
  for stream, name in (("never", "in memory"), ("always", "streamed")):
    growth = find(large, stream)["peak_rss_mb"] / find(small, stream)["peak_rss_mb"] - 1
    summary[f"{stream}_rss_growth"] = growth
    print(f"{name}: peak RSS x{large} / x{small} = {1 + growth:.3f} "
          f"({growth:+.1%}{'; goal <= +10 %' if stream == 'always' else ''})")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"rows": rows, "summary": summary, "epochs": args.epochs}, f, indent=1)


if __name__ == "__main__":
  main()
