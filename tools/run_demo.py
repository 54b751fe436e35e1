"""`make demo`: the whole pipeline on the embedded synthetic faces, then the results.

1. ENAS search (LSTM controller, shared child, latency-aware reward)  -> RUN/search
2. random search with the same budget (the baseline)                   -> RUN/search_random
3. the top-k of the ENAS search trained from scratch, evaluated with the
   LFW protocol and exported as SavedModels                              -> RUN/fixed
4. the best model's SavedModel reloaded in a fresh process that does not
   import enas_face.
5. a QAN++ quality network trained on the best model's frozen embedder, and
   set-to-set verification of synthetic videos (mean, best frame, QAN++)  -> RUN/fixed/top1/quality
Every step is `python -m enas_face.main --flagfile=flags/demo.cfg ...`; the
printed tables are read back from the run folders' JSON files.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from enas_face import runlog  # noqa: E402  (the run files' names; imports nothing heavy)

RELOAD_SNIPPET = """
import sys, numpy as np, tensorflow as tf
assert "enas_face" not in sys.modules
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
size = int(sys.argv[2])
images = np.random.default_rng(0).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
out = serve(images=tf.constant(images))["embeddings"].numpy()
print(f"reloaded SavedModel without enas_face: embeddings {out.shape}, "
      f"norms {np.round(np.linalg.norm(out, axis=1), 4)}")
"""


def run(cmd: list[str]) -> float:
  print("+", " ".join(cmd), flush=True)
  tic = time.perf_counter()
  subprocess.run(cmd, check=True, cwd=ROOT)
  return time.perf_counter() - tic


def load(path: str):
  with open(path) as f:
    return json.load(f)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--run_dir", default="runs/demo")
  parser.add_argument("--flagfile", default="flags/demo.cfg")
  parser.add_argument("--top_k", type=int, default=3)
  args = parser.parse_args()
  run_dir = os.path.join(ROOT, args.run_dir)
  main_cmd = [sys.executable, "-m", "enas_face.main", f"--flagfile={args.flagfile}"]
  tic = time.perf_counter()
  seconds = {}
  seconds["search"] = run(main_cmd + ["--mode=search", f"--run_dir={run_dir}/search"])
  seconds["search_random"] = run(main_cmd + ["--mode=search", "--controller=random",
                                             f"--run_dir={run_dir}/search_random"])
  ranked = os.path.join(run_dir, "search", runlog.ARCS_RANKED)
  seconds["fixed"] = run(main_cmd + ["--mode=fixed", f"--run_dir={run_dir}/fixed",
                                     f"--arc_file={ranked}",
                                     f"--top_k={args.top_k}"])
  best = os.path.join(run_dir, "fixed", "top1", runlog.SAVED_MODEL_DIR)
  image_size = load(os.path.join(best, "enas_face.json"))["image_size"]
  run([sys.executable, "-c", RELOAD_SNIPPET, best, str(image_size)])
  top1 = os.path.join(run_dir, "fixed", "top1")
  seconds["quality"] = run(main_cmd + ["--mode=quality", f"--run_dir={top1}",
                                       "--quality_net=qanpp"])
  wall = time.perf_counter() - tic

  enas = load(os.path.join(run_dir, "search", runlog.SEARCH_SUMMARY))
  rand = load(os.path.join(run_dir, "search_random", runlog.SEARCH_SUMMARY))
  rows = load(os.path.join(run_dir, "fixed", runlog.COMPARISON))
  print("\n== enas_face demo (synthetic faces, flags/demo.cfg) ==")
  print("\nsearch at the same budget              ENAS controller   random search")
  for key, label in (("final_score_mean", f"final samples: mean {enas['reward_metric']}"),
                     ("final_score_best", f"final samples: best {enas['reward_metric']}"),
                     ("final_latency_ms_mean", "final samples: mean latency (ms)"),
                     ("final_reward_mean", "final samples: mean reward"),
                     ("last_epoch_reward_mean", "last epoch: mean reward")):
    print(f"  {label:<36} {enas[key]:>10.4f}       {rand[key]:>10.4f}")
  print(f"  {'wall time (s)':<36} {seconds['search']:>10.0f}       "
        f"{seconds['search_random']:>10.0f}")
  print(f"\ntop-{len(rows)} of the ENAS search trained from scratch")
  print("  rank  verification acc     PCA baseline   val acc   latency ms   params     FLOPs"
        "        img/s")
  for r in rows:
    print(f"  {r['rank']:>4}  {r['verification_accuracy']:.4f} +- {r['verification_std']:.4f}"
          f"  {r['pca_baseline_verification_accuracy']:.4f}         "
          f"{r['val_classification_accuracy']:.4f}   {r['latency_ms']:>8.2f}   "
          f"{r['params']:>8,}  {r['flops']:>11,}  {r.get('train_images_per_second', 0):>6.0f}")
  for r in rows:
    print(f"  top{r['rank']}: {r['arc']}")
  sets = load(os.path.join(top1, runlog.QUALITY_DIR, "qanpp", runlog.METRICS))
  print(f"\nsynthetic videos on top1 (QAN++ trained on its frozen embedder, "
        f"{seconds['quality']:.0f} s)")
  for method in sets["methods"]:
    r = sets["by_method"][method]
    print(f"  {method:<6} set verification {r['verification_accuracy']:.4f} +- "
          f"{r['verification_std']:.4f}")
  print(f"  Spearman(QAN++ score, degradation) {sets['spearman_quality_vs_degradation']['qanpp']:+.3f}")
  print(f"\n  fixed training wall time (s)           {seconds['fixed']:.0f}")
  print(f"  demo wall time (s)                     {wall:.0f}")


if __name__ == "__main__":
  main()
