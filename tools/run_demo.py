"""`make demo`: the whole pipeline on the embedded synthetic faces, then a results table.

Runs `python -m enas_face.main --flagfile=flags/demo.cfg --mode=fixed` (train from
scratch, evaluate, export), reloads the SavedModel in a fresh process that does
not import enas_face, and prints the figures with the total wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RELOAD_SNIPPET = """
import sys, numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
size = int(sys.argv[2])
images = np.random.default_rng(0).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
out = serve(images=tf.constant(images))["embeddings"].numpy()
print(f"reloaded SavedModel: embeddings {out.shape}, norms {np.round(np.linalg.norm(out, axis=1), 4)}")
"""


def run(cmd: list[str]) -> None:
  print("+", " ".join(cmd), flush=True)
  subprocess.run(cmd, check=True, cwd=ROOT)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--run_dir", default="runs/demo")
  parser.add_argument("--flagfile", default="flags/demo.cfg")
  args = parser.parse_args()
  tic = time.perf_counter()
  run([sys.executable, "-m", "enas_face.main", f"--flagfile={args.flagfile}", "--mode=fixed",
       f"--run_dir={args.run_dir}"])
  with open(os.path.join(ROOT, args.run_dir, "metrics.json")) as f:
    metrics = json.load(f)
  saved_model = os.path.join(ROOT, args.run_dir, "saved_model")
  with open(os.path.join(saved_model, "enas_face.json")) as f:
    image_size = json.load(f)["image_size"]
  run([sys.executable, "-c", RELOAD_SNIPPET, saved_model, str(image_size)])
  wall = time.perf_counter() - tic
  print("\n== enas_face demo (synthetic faces) ==")
  print(f"  network verification accuracy   {metrics['verification_accuracy']:.4f} "
        f"+- {metrics['verification_std']:.4f}")
  print(f"  pixel-PCA baseline              {metrics['pca_baseline_verification_accuracy']:.4f} "
        f"+- {metrics['pca_baseline_verification_std']:.4f}")
  print(f"  TAR@FAR=1e-3 / ROC AUC          {metrics['tar_at_far_1e-3']:.4f} / "
        f"{metrics['roc_auc']:.4f}")
  print(f"  identification top-1            {metrics['identification_top1']:.4f}")
  print(f"  params / FLOPs                  {metrics['params']:,} / {metrics['flops']:,}")
  print(f"  training throughput             {metrics.get('train_images_per_second', 0):.0f} img/s")
  print(f"  training time                   {metrics['train_wall_seconds']:.0f} s "
        f"({metrics['epochs']} epochs)")
  print(f"  demo wall time (this script)    {wall:.0f} s")


if __name__ == "__main__":
  main()
