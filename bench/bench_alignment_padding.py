"""Does padding the image before MTCNN recover pre-cropped faces without hurting photos?

    nice python bench/bench_alignment_padding.py --output=runs/bench_alignment_padding.json

For three sets of images:
  orl     all ORL images (--orl_dir/s*/N.pgm: 400 pre-cropped grayscale 92x112 faces,
          turned into 3 equal channels);
  photos  the unaligned photos of --photos_dir (*.jpg/*.jpeg/*.png, without the
          reference crops in facenet_pytorch/test_images_aligned): portraits, groups,
          partial faces;
  lfw     the first --lfw_limit files (sorted) of --lfw_dir/<Name>/*.jpg (250x250
          photos, the face in the middle with its surroundings);
  lfw_tight  the same LFW images cropped to the central --tight_fraction of the face
          box MTCNN finds on the whole photo (unpadded; images without a face left
          out): the face fills the frame, as in tightly pre-cropped datasets;
and for every --paddings value (fill --fill, every --pad_modes mode: "always" pads every
image, "retry" only those without a face unpadded, FaceAligner's default) plus every
--fills value at --fill_padding (mode always), the table gives: images aligned (FaceAligner.align succeeds) of all; over the images
aligned both with and without padding ("both"), how many got another face ("other":
landmarks moved by >= half the unpadded eye distance, in group photos) and, for the
rest, the landmark shift against padding 0 (per image the largest distance of the 5
landmarks: median and maximum in pixels of the original image, median in % of the eye
distance); and the mean detection time per image (wall clock: other jobs share the
CPU). One MTCNN serves all runs.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from enas_face.data import align  # noqa: E402
from enas_face.data import images as image_io  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--orl_dir", default="/work/shared/data/orl_faces")
  parser.add_argument("--photos_dir", default="/work/shared/data/photos")
  parser.add_argument("--lfw_dir", default="/work/lfw/lfw-deepfunneled")
  parser.add_argument("--lfw_limit", type=int, default=200, help="first N LFW files, sorted")
  parser.add_argument("--sets", default="orl,photos,lfw,lfw_tight",
                      help="comma-separated: orl,photos,lfw,lfw_tight")
  parser.add_argument("--tight_fraction", type=float, default=0.8,
                      help="lfw_tight: side of the crop as a fraction of the face box's sides")
  parser.add_argument("--paddings", default="0,0.1,0.2,0.3",
                      help="detect_padding values (fractions of the longer side); "
                      "0 is the baseline")
  parser.add_argument("--pad_modes", default="always,retry",
                      help="pad modes of the --paddings runs (align.PAD_MODES)")
  parser.add_argument("--fill", default=align.DEFAULT_PAD_FILL, choices=align.PAD_FILLS,
                      help="fill of the --paddings runs")
  parser.add_argument("--fills", default=",".join(align.PAD_FILLS),
                      help="fills compared at --fill_padding")
  parser.add_argument("--fill_padding", type=float, default=0.2)
  parser.add_argument("--output", default="", help="JSON file for the rows (optional)")
  return parser.parse_args(argv)


def image_files(name: str, args: argparse.Namespace) -> list[str]:
  """The files of one set, in sorted order; ValueError naming the flag when there are none."""
  if name == "orl":
    files, flag = sorted(glob.glob(os.path.join(args.orl_dir, "s*", "*.pgm"))), "--orl_dir"
  elif name == "photos":
    files = sorted(path for path in glob.glob(os.path.join(args.photos_dir, "**", "*"),
                                              recursive=True)
                   if path.lower().endswith((".jpg", ".jpeg", ".png"))
                   and "test_images_aligned" not in path)
    flag = "--photos_dir"
  elif name in ("lfw", "lfw_tight"):
    files = sorted(glob.glob(os.path.join(args.lfw_dir, "*", "*.jpg")))[:args.lfw_limit]
    flag = "--lfw_dir"
  else:
    raise ValueError(f"--sets: unknown set {name!r}; expected orl, photos, lfw or lfw_tight")
  if not files:
    raise ValueError(f"{flag}: no images found for set {name!r}")
  return files


def tight_crops(images: list[np.ndarray], aligner: align.FaceAligner,
                fraction: float) -> list[np.ndarray]:
  """Per image with a face (found unpadded): the central `fraction` of the chosen face's box."""
  unpadded = align.FaceAligner(detect_padding=0.0, detector=aligner.detector)
  crops = []
  for image in images:
    try:
      _, face = unpadded.align(image)
    except (align.NoFaceError, align.AlignmentError):
      continue
    (cx, cy), (_, _, width, height) = face.centre, face.box
    half_width, half_height = fraction * width / 2, fraction * height / 2
    top, left = max(0, round(cy - half_height)), max(0, round(cx - half_width))
    bottom = min(image.shape[0], round(cy + half_height))
    right = min(image.shape[1], round(cx + half_width))
    crops.append(np.ascontiguousarray(image[top:bottom, left:right]))
  return crops


def run(aligner: align.FaceAligner, images: list[np.ndarray]) -> tuple[list, float]:
  """(landmarks [5, 2] of the aligned face or None, per image), mean seconds per image."""
  tic = time.perf_counter()
  landmarks = []
  for image in images:
    try:
      landmarks.append(aligner.align(image)[1].landmarks)
    except (align.NoFaceError, align.AlignmentError):
      landmarks.append(None)
  return landmarks, (time.perf_counter() - tic) / len(images)


def shift(baseline: list, landmarks: list) -> dict:
  """Over images aligned in both: their number, how many moved to another face (largest
  landmark distance >= half the baseline eye distance), and for the others the median and
  max largest landmark distance (px) and its median relative to the eye distance."""
  pairs = [(float(np.linalg.norm(a - b, axis=1).max()), float(np.linalg.norm(a[0] - a[1])))
           for a, b in zip(baseline, landmarks) if a is not None and b is not None]
  same = [(d, eyes) for d, eyes in pairs if d < 0.5 * eyes]
  pixels = [d for d, _ in same]
  return dict(both=len(pairs), other_face=len(pairs) - len(same),
              shift_median=float(np.median(pixels)) if same else None,
              shift_max=float(np.max(pixels)) if same else None,
              shift_median_of_eyes=(float(np.median([d / eyes for d, eyes in same]))
                                    if same else None))


def main(argv=None) -> None:
  args = parse_args(argv)
  paddings = [float(v) for v in args.paddings.split(",")]
  if 0.0 not in paddings:
    paddings.insert(0, 0.0)
  modes = args.pad_modes.split(",")
  configs = [(0.0, args.fill, "always")]
  configs += [(p, args.fill, mode) for p in paddings if p for mode in modes]
  configs += [(args.fill_padding, fill, "always") for fill in args.fills.split(",") if fill
              and (args.fill_padding, fill, "always") not in configs]
  detector = align.FaceAligner(detect_padding=0.0).detector
  rows = []
  print(f"{'set':9} {'padding':>7} {'fill':9} {'mode':6} {'aligned':>9} {'share':>6} {'both':>5} "
        f"{'other':>5} {'shift med':>9} {'shift max':>9} {'med/eyes':>8} {'s/img':>6}", flush=True)
  for name in args.sets.split(","):
    files = image_files(name, args)
    images = [image_io.read_image(path) for path in files]  # grayscale -> 3 equal channels
    if name == "lfw_tight":
      images = tight_crops(images, align.FaceAligner(detector=detector), args.tight_fraction)
    baseline = None
    for padding, fill, mode in configs:
      aligner = align.FaceAligner(detect_padding=padding, pad_fill=fill, pad_mode=mode,
                                  detector=detector)
      landmarks, seconds = run(aligner, images)
      if baseline is None:
        baseline = landmarks
      aligned = sum(points is not None for points in landmarks)
      moved = shift(baseline, landmarks)
      row = dict(set=name, padding=padding, fill=fill, mode=mode, aligned=aligned, images=len(images),
                 **moved, seconds=seconds,
                 only_padded=sum(b is None and p is not None for b, p in zip(baseline, landmarks)),
                 only_unpadded=sum(b is not None and p is None
                                   for b, p in zip(baseline, landmarks)))
      rows.append(row)
      fmt = lambda v: f"{v:9.2f}" if v is not None else f"{'-':>9}"  # noqa: E731
      eyes = moved["shift_median_of_eyes"]
      print(f"{name:9} {padding:7.2f} {fill:9} {mode:6} {aligned:4d}/{len(images):<4d} "
            f"{aligned / len(images):6.1%} {moved['both']:5d} {moved['other_face']:5d} "
            f"{fmt(moved['shift_median'])} {fmt(moved['shift_max'])} "
            f"{f'{eyes:8.1%}' if eyes is not None else '-':>8} {seconds:6.3f}", flush=True)
  if args.output:
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
