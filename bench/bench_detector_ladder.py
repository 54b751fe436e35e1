"""Each rung of FaceAligner's retry ladder on faces cropped tighter than MTCNN expects.

    nice python bench/bench_detector_ladder.py --output=runs/bench_detector_ladder/table.json
    nice python bench/bench_detector_ladder.py --rungs=pad,onet   # another ladder: reuses results

Crops. The originals are --lfw_limit LFW deep-funneled photos (spread evenly over the
sorted file list of --lfw_dir, extracted once from --lfw_archive when missing) and all
ORL images (--orl_dir). On each, MTCNN as it is (rung "as_is") finds the face; its 5
landmarks (left eye, right eye, nose, mouth corners) give the crop, from the eyebrows to
the chin and between the cheeks: with d the eye distance, y_e the eyes' mean y, y_m the
mouth corners' mean y and x_c the mean x of eyes and mouth corners,

    top = y_e - 0.35 d,  bottom = y_m + 0.5 d,  left, right = x_c -/+ 0.9 d

(clipped to the image; originals without a face are left out and counted). That keeps
about 2/3 of the height and 5/6 of the width of MTCNN's own box (printed), tighter than
bench/bench_alignment_padding.py's central 80 %. Variants (--variants): "color" (LFW
only: ORL is grayscale), "gray" (3 equal channels), "side_light" (gray, times a horizontal
gain ramp from --side_low on one side to 1 on the other, the dark side alternating per
image, then gamma --side_gamma: 255 (g I / 255)^gamma). The truth for a crop is the
original's landmarks shifted into it. --framings=whole adds the originals themselves in the
gray and side_light variants (loose framing: does the ladder hurt where the face does
not fill the frame?), the truth their own landmarks.

Negatives. "photos": the --photos_dir photos (portraits, groups, partial faces; the
reference crops of facenet_pytorch/test_images_aligned left out). "background": per photo
--patches_per_photo patches (seeded per file) that overlap no face MTCNN finds at stage
thresholds 0.3, 0.4, 0.5 (boxes grown by 30 % a side): any face found there is false.

On every image the rungs of --rungs run in order through `FaceAligner.detect_rung` (the
call the ladder makes) up to the first with a usable face, as the ladder does (photos:
every rung, for the "alone" table), and their faces are appended to --results (JSONL,
one record per image, rung and rung settings); a rerun skips what is there, so an
interrupted run resumes, and a run with another ladder or other rung settings
(--more_padding, --low_*, --onet_scale) computes only the records it lacks. The outcome
of every prefix of the ladder follows from these records; every --check_every-th crop is
also run through `FaceAligner.align` itself and must agree. Tables:

  crops      per set/framing/variant and ladder prefix: crops aligned (cumulative), found by this
             rung, landmark error (per crop the largest of the 5 distances to the truth in %
             of the eye distance: median over all aligned, median over this rung's finds;
             "wrong": error > 50 %), mean detection time per crop (the rungs tried, wall
             clock: other jobs share the CPU). "+center": with --on_no_face=center every
             crop left is kept as its centred resize (no landmarks).
  photos     per prefix: photos aligned, faces `detect` returns (vs "as_is" alone); per rung
             run alone on every photo: usable faces, and those not matching an "as_is" face
             (IoU < 0.4: faces "as_is" missed, or false faces).
  background per prefix: patches with a usable face (false faces).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tarfile
import time
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from enas_face import runlog  # noqa: E402
from enas_face.data import align  # noqa: E402
from enas_face.data import images as image_io  # noqa: E402

VARIANTS = ("color", "gray", "side_light")
FRAMINGS = ("tight", "whole")  # the crop, or the original around it
MASK_THRESHOLDS = (0.3, 0.4, 0.5)  # "background": faces to keep away from
WRONG = 0.5  # a landmark error above half the eye distance: another face, or none


def parse_args(argv=None) -> argparse.Namespace:
  defaults = align.RetrySettings()
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--lfw_archive", default="/work/shared/data/lfw/lfw-deepfunneled.tgz")
  parser.add_argument("--lfw_dir", default="/work/lfw/lfw-deepfunneled",
                      help="extracted LFW (from --lfw_archive into its parent when missing)")
  parser.add_argument("--lfw_limit", type=int, default=300,
                      help="LFW photos, spread evenly over the sorted file list")
  parser.add_argument("--orl_dir", default="/work/shared/data/orl_faces")
  parser.add_argument("--photos_dir", default="/work/shared/data/photos")
  parser.add_argument("--sets", default="lfw,orl,photos,background",
                      help="comma-separated: lfw,orl,photos,background")
  parser.add_argument("--variants", default=",".join(VARIANTS), help="crop variants")
  parser.add_argument("--framings", default=",".join(FRAMINGS),
                      help="tight: the crops; whole: the originals (gray, side_light)")
  parser.add_argument("--side_low", type=float, default=0.15,
                      help="side_light: gain on the dark side")
  parser.add_argument("--side_gamma", type=float, default=1.6, help="side_light: gamma")
  parser.add_argument("--patches_per_photo", type=int, default=8)
  parser.add_argument("--rungs", default=",".join(align.RETRY_RUNGS),
                      help="the rungs after as_is, in ladder order; default: every rung in "
                      "align.RUNGS order (FaceAligner's own default is shorter)")
  parser.add_argument("--detect_padding", type=float, default=align.DEFAULT_DETECT_PADDING)
  parser.add_argument("--more_padding", type=float, default=defaults.more_padding)
  parser.add_argument("--low_padding", type=float, default=defaults.low_padding)
  parser.add_argument("--low_thresholds", default=",".join(map(str, defaults.low_thresholds)),
                      help="P-Net, R-Net, O-Net thresholds of the low_confidence rung")
  parser.add_argument("--low_min_confidence", type=float, default=defaults.low_min_confidence)
  parser.add_argument("--onet_scale", type=float, default=defaults.onet_scale)
  parser.add_argument("--min_confidence", type=float, default=0.9)
  parser.add_argument("--check_every", type=int, default=25,
                      help="every N-th crop also runs FaceAligner.align (0: none)")
  parser.add_argument("--results", default="runs/bench_detector_ladder/results.jsonl",
                      help="JSONL of per-image results (resumed)")
  parser.add_argument("--output", default="", help="JSON file for the table rows (optional)")
  return parser.parse_args(argv)


# ---------------------------------------------------------------------------- images

def lfw_files(args) -> list[str]:
  """--lfw_limit files of --lfw_dir, extracting --lfw_archive first when it is missing (into
  a scratch folder beside it, then renamed: an interrupted extraction leaves no half set)."""
  lfw_dir = os.path.abspath(args.lfw_dir)
  if not os.path.isdir(lfw_dir):
    if not os.path.isfile(args.lfw_archive):
      raise ValueError(f"--lfw_dir={lfw_dir} does not exist and --lfw_archive="
                       f"{args.lfw_archive} is no file")
    scratch = f"{lfw_dir}.extracting-{os.getpid()}"
    print(f"extracting {args.lfw_archive} into {os.path.dirname(lfw_dir)}", flush=True)
    with tarfile.open(args.lfw_archive) as archive:
      archive.extractall(scratch, filter="data")
    extracted = os.path.join(scratch, os.path.basename(lfw_dir))
    if not os.path.isdir(extracted):
      raise ValueError(f"--lfw_archive={args.lfw_archive} holds no top folder "
                       f"{os.path.basename(lfw_dir)!r} (the last part of --lfw_dir)")
    os.rename(extracted, lfw_dir)
    shutil.rmtree(scratch)
  files = sorted(glob.glob(os.path.join(args.lfw_dir, "*", "*.jpg")))
  if not files:
    raise ValueError(f"--lfw_dir={args.lfw_dir}: no <Name>/*.jpg files")
  step = max(1, len(files) // args.lfw_limit)
  return files[::step][:args.lfw_limit]


def orl_files(args) -> list[str]:
  files = sorted(glob.glob(os.path.join(args.orl_dir, "s*", "*.pgm")))
  if not files:
    raise ValueError(f"--orl_dir={args.orl_dir}: no s*/*.pgm files")
  return files


def photo_files(args) -> list[str]:
  files = sorted(path for path in glob.glob(os.path.join(args.photos_dir, "**", "*"),
                                            recursive=True)
                 if path.lower().endswith((".jpg", ".jpeg", ".png"))
                 and "test_images_aligned" not in path)
  if not files:
    raise ValueError(f"--photos_dir={args.photos_dir}: no photos")
  return files


def crop_box(landmarks: np.ndarray, shape) -> tuple[int, int, int, int]:
  """(top, bottom, left, right) from the eyebrows to the chin, between the cheeks (see above)."""
  left_eye, right_eye, _, mouth_left, mouth_right = landmarks
  d = float(np.linalg.norm(right_eye - left_eye))
  eyes_y, mouth_y = (left_eye[1] + right_eye[1]) / 2, (mouth_left[1] + mouth_right[1]) / 2
  centre_x = (left_eye[0] + right_eye[0] + mouth_left[0] + mouth_right[0]) / 4
  top, bottom = round(eyes_y - 0.35 * d), round(mouth_y + 0.5 * d)
  left, right = round(centre_x - 0.9 * d), round(centre_x + 0.9 * d)
  return max(0, top), min(shape[0], bottom), max(0, left), min(shape[1], right)


def gray(image: np.ndarray) -> np.ndarray:
  return np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)


def side_light(image: np.ndarray, dark_left: bool, low: float, gamma: float) -> np.ndarray:
  """gray(image) x a gain ramp from `low` (dark side) to 1, then gamma: 255 (g I / 255)^gamma."""
  values = gray(image).astype(np.float32) / 255.0
  ramp = np.linspace(low, 1.0, values.shape[1], dtype=np.float32)
  if not dark_left:
    ramp = ramp[::-1]
  return np.round(np.clip(values * ramp[None, :, None], 0, 1) ** gamma * 255).astype(np.uint8)


def background_patches(image: np.ndarray, boxes, count: int, seed: int) -> list[tuple]:
  """Up to `count` (x, y, w, h) patches of `image` overlapping no box (x, y, w, h) grown by
  30 % a side: side 8-30 % of the shorter image side (>= 48 px), height 1-1.3 x width."""
  rng = np.random.default_rng(seed)
  height, width = image.shape[:2]
  grown = [(x - 0.3 * w, y - 0.3 * h, x + 1.3 * w, y + 1.3 * h) for x, y, w, h in boxes]
  patches = []
  for _ in range(500):
    if len(patches) == count:
      break
    w = max(48, int(rng.uniform(0.08, 0.3) * min(height, width)))
    h = int(w * rng.uniform(1.0, 1.3))
    if h >= height or w >= width:
      continue
    x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
    if all(x + w < x0 or x > x1 or y + h < y0 or y > y1 for x0, y0, x1, y1 in grown):
      patches.append((x, y, w, h))
  return patches


# ---------------------------------------------------------------------------- records

class Results:
  """The JSONL of per-image results: record key -> record; `add` appends one."""

  def __init__(self, path: str):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    records = runlog.truncate(path, lambda r: "key" in r)  # drops a torn last line
    self.records = {record["key"]: record for record in records}

  def get(self, key: str):
    return self.records.get(key)

  def add(self, record: dict) -> dict:
    runlog.append(self.path, [record])
    self.records[record["key"]] = record
    return record


def face_json(face: align.Face) -> dict:
  return dict(box=[round(v, 3) for v in face.box], confidence=round(face.confidence, 6),
              landmarks=np.round(face.landmarks, 3).tolist())


def face_of(record: dict, rung: str) -> align.Face:
  return align.Face(record["box"], record["confidence"], record["landmarks"], rung)


def rung_params(rung: str, aligner: align.FaceAligner) -> dict:
  """What decides a rung's faces (the key of its records; min confidences apply later)."""
  settings = aligner.retry_settings
  return {"as_is": {}, "pad": {"padding": aligner.detect_padding},
          "more_pad": {"padding": settings.more_padding},
          "low_confidence": {"padding": settings.low_padding,
                             "thresholds": list(settings.low_thresholds)},
          "onet": {"scale": settings.onet_scale}}[rung]


def run_rung(results: Results, aligner: align.FaceAligner, item: str, image, rung: str) -> dict:
  """The record of `rung` on `image` (item names it), detected now unless recorded."""
  key = f"{item}|{rung}|{json.dumps(rung_params(rung, aligner), sort_keys=True)}"
  record = results.get(key)
  if record is None:
    tic = time.perf_counter()
    faces = aligner.detect_rung(image, rung)
    seconds = time.perf_counter() - tic
    record = results.add(dict(key=key, item=item, rung=rung, seconds=round(seconds, 5),
                              faces=[face_json(face) for face in faces]))
  return record


def ladder_records(results: Results, aligner: align.FaceAligner, item: str, image,
                   rungs: list[str]) -> dict:
  """The records of `rungs` on `image`, in order, up to the first with a usable face (the
  ladder never reaches the others)."""
  records = {}
  for rung in rungs:
    records[rung] = run_rung(results, aligner, item, image, rung)
    if any(aligner.usable(face_of(r, rung)) for r in records[rung]["faces"]):
      break
  return records


def original_landmarks(results: Results, aligner: align.FaceAligner, name: str, path: str):
  """(landmarks [5, 2], box) of the face "as_is" finds on the original, or None."""
  key = f"original|{name}"
  record = results.get(key)
  if record is None:
    try:
      _, face = aligner.align(image_io.read_image(path))
      record = results.add(dict(key=key, face=face_json(face)))
    except (align.NoFaceError, align.AlignmentError) as error:
      record = results.add(dict(key=key, face=None, reason=str(error)))
  if record["face"] is None:
    return None
  return np.asarray(record["face"]["landmarks"], np.float32), record["face"]["box"]


# ---------------------------------------------------------------------------- outcomes

def outcome(aligner: align.FaceAligner, rungs: list[str], records: dict, shape):
  """(rung index or None, chosen Face or None, seconds, usable faces) of the ladder `rungs`
  on one image, from its per-rung records: the first rung with a usable face."""
  seconds = 0.0
  for index, rung in enumerate(rungs):
    seconds += records[rung]["seconds"]
    faces = [face for face in (face_of(r, rung) for r in records[rung]["faces"])
             if aligner.usable(face)]
    if faces:
      return index, align.choose_face(faces, shape, aligner.policy), seconds, faces
  return None, None, seconds, []


def landmark_error(face: align.Face, truth: np.ndarray) -> float:
  """Largest of the 5 landmark distances, over the truth's eye distance."""
  eyes = float(np.linalg.norm(truth[1] - truth[0]))
  return float(np.linalg.norm(face.landmarks - truth, axis=1).max()) / eyes


def iou(a, b) -> float:
  ax, ay, aw, ah = a
  bx, by, bw, bh = b
  inter = (max(0.0, min(ax + aw, bx + bw) - max(ax, bx)) *
           max(0.0, min(ay + ah, by + bh) - max(ay, by)))
  return inter / max(aw * ah + bw * bh - inter, 1e-9)


def median(values) -> float | None:
  return float(np.median(values)) if len(values) else None


# ---------------------------------------------------------------------------- main

class Progress:
  def __init__(self, total: int, label: str):
    self.total, self.label, self.done, self.tic = total, label, 0, time.perf_counter()

  def step(self) -> None:
    self.done += 1
    if self.done % 100 == 0 or self.done == self.total:
      elapsed = time.perf_counter() - self.tic
      print(f"  {self.label}: {self.done}/{self.total} ({elapsed:.0f} s)", file=sys.stderr,
            flush=True)


def crop_items(args, results, base: align.FaceAligner, sets: list[str]):
  """[(item name, set, framing, variant, image, truth landmarks)] and the crop / box ratios."""
  variants = args.variants.split(",")
  for variant in variants:
    if variant not in VARIANTS:
      raise ValueError(f"--variants: unknown variant {variant!r}; expected {VARIANTS}")
  items, ratios, missing = [], [], {}
  framings = args.framings.split(",")
  for framing in framings:
    if framing not in FRAMINGS:
      raise ValueError(f"--framings: unknown framing {framing!r}; expected {FRAMINGS}")
  for name in ("lfw", "orl"):
    if name not in sets:
      continue
    files = lfw_files(args) if name == "lfw" else orl_files(args)
    root = args.lfw_dir if name == "lfw" else args.orl_dir
    progress = Progress(len(files), f"{name} originals")
    for index, path in enumerate(files):
      relpath = os.path.relpath(path, root)
      found = original_landmarks(results, base, f"{name}/{relpath}", path)
      progress.step()
      if found is None:
        missing[name] = missing.get(name, 0) + 1
        continue
      landmarks, box = found
      image = image_io.read_image(path)
      top, bottom, left, right = crop_box(landmarks, image.shape)
      ratios.append(((bottom - top) / box[3], (right - left) / box[2]))
      crop = np.ascontiguousarray(image[top:bottom, left:right])
      truth = landmarks - np.array([left, top], np.float32)
      for framing in framings:
        for variant in variants:
          if variant == "color" and (name == "orl" or framing == "whole"):
            continue  # ORL is grayscale ("color" would repeat "gray"); whole: found as_is
          source = crop if framing == "tight" else image
          image_variant = {"color": lambda c: c, "gray": gray,
                           "side_light": lambda c: side_light(c, index % 2 == 0, args.side_low,
                                                              args.side_gamma)}[variant](source)
          suffix = variant if framing == "tight" else f"whole-{variant}"
          items.append((f"{name}/{relpath}|{suffix}", name, framing, variant, image_variant,
                        truth if framing == "tight" else landmarks))
  return items, ratios, missing


def main(argv=None) -> None:
  args = parse_args(argv)
  sets = args.sets.split(",")
  for name in sets:
    if name not in ("lfw", "orl", "photos", "background"):
      raise ValueError(f"--sets: unknown set {name!r}; expected lfw, orl, photos, background")
  retries = align.parse_detect_retries(args.rungs)
  settings = align.RetrySettings(
      more_padding=args.more_padding, low_padding=args.low_padding,
      low_thresholds=tuple(float(v) for v in args.low_thresholds.split(",")),
      low_min_confidence=args.low_min_confidence, onet_scale=args.onet_scale)
  aligner = align.FaceAligner(min_confidence=args.min_confidence,
                              detect_padding=args.detect_padding, detect_retries=retries,
                              retry_settings=settings)
  rungs = list(aligner.rungs)
  base = align.FaceAligner(min_confidence=args.min_confidence, detect_retries=(),
                           detector=aligner.detector)
  results = Results(args.results)
  rows = []
  print(f"ladder {rungs}; {settings}", flush=True)

  # ------------------------------------------------------------------ crops
  items, ratios, missing = crop_items(args, results, base, sets)
  if ratios:
    heights, widths = zip(*ratios)
    without = ", ".join(f"{n} originals without a face: {k}" for n, k in missing.items())
    print(f"crops: {len(items)} ({without or 'every original has a face'}); "
          f"crop / MTCNN box: height {np.median(heights):.2f}, width {np.median(widths):.2f} "
          "(medians)", flush=True)
  by_group: dict = {}
  mismatches = checked = 0
  progress = Progress(len(items), "crops")
  for number, (item, name, framing, variant, image, truth) in enumerate(items):
    records = ladder_records(results, aligner, item, image, rungs)
    by_group.setdefault((name, framing, variant), []).append((records, image.shape, truth))
    if args.check_every and number % args.check_every == 0:
      index, face, _, _ = outcome(aligner, rungs, records, image.shape)
      try:
        _, real = aligner.align(image)
      except (align.NoFaceError, align.AlignmentError):
        real = None
      checked += 1
      same = (real is None and face is None) or (
          real is not None and face is not None and real.rung == face.rung
          and np.abs(real.landmarks - face.landmarks).max() < 0.01)
      if not same:
        mismatches += 1
        print(f"  mismatch on {item}: ladder {real and real.rung}, records "
              f"{face and face.rung}", flush=True)
    progress.step()
  if checked:
    print(f"checked {checked} crops against FaceAligner.align: {mismatches} mismatches",
          flush=True)

  header = (f"{'set':5} {'framing':7} {'variant':10} {'ladder':17} {'aligned':>9} {'share':>6} "
            f"{'this rung':>9} {'err med':>7} {'wrong':>5} {'new err':>7} {'ms/img':>6}")
  if by_group:
    print("\ncrops (cumulative over the ladder; err: largest landmark error, % of eye distance)")
    print(header)
  for (name, framing, variant), entries in by_group.items():
    for depth in range(1, len(rungs) + 1):
      prefix = rungs[:depth]
      found = [outcome(aligner, prefix, records, shape) + (truth,)
               for records, shape, truth in entries]
      errors = [landmark_error(face, truth) for _, face, _, _, truth in found if face is not None]
      new = [landmark_error(face, truth) for index, face, _, _, truth in found
             if index == depth - 1]
      seconds = float(np.mean([s for _, _, s, _, _ in found]))
      row = dict(table="crops", set=name, framing=framing, variant=variant, ladder=prefix,
                 images=len(entries),
                 aligned=len(errors), this_rung=len(new), error_median=median(errors),
                 wrong=sum(e > WRONG for e in errors), new_error_median=median(new),
                 seconds=seconds)
      rows.append(row)
      label = prefix[0] if depth == 1 else "+" + prefix[-1]
      fmt = lambda v: f"{v:7.1%}" if v is not None else f"{'-':>7}"  # noqa: E731
      print(f"{name:5} {framing:7} {variant:10} {label:17} {len(errors):4d}/{len(entries):<4d} "
            f"{len(errors) / len(entries):6.1%} {len(new):9d} {fmt(row['error_median'])} "
            f"{row['wrong']:5d} {fmt(row['new_error_median'])} {seconds * 1000:6.0f}",
            flush=True)
    left = len(entries) - rows[-1]["aligned"]
    rows.append(dict(table="crops", set=name, framing=framing, variant=variant,
                     ladder=rungs + ["center"], images=len(entries), kept=len(entries),
                     fallback=left))
    print(f"{name:5} {framing:7} {variant:10} {'+center':17} {len(entries):4d}/{len(entries):<4d} "
          f"{1:6.1%} {left:9d} (kept as the centred resize, no landmarks)", flush=True)

  # ------------------------------------------------------------------ photos and background
  if "photos" in sets or "background" in sets:
    files = photo_files(args)
    photos, patches = [], []
    mask = align.FaceAligner(min_confidence=0.0, detect_retries=(), detector=aligner.detector,
                             retry_settings=align.RetrySettings(low_padding=0.0,
                                                                low_thresholds=MASK_THRESHOLDS))
    progress = Progress(len(files), "photos")
    for path in files:
      relpath = os.path.relpath(path, args.photos_dir)
      image = image_io.read_image(path)
      if "photos" in sets:
        photos.append(({rung: run_rung(results, aligner, f"photos/{relpath}", image, rung)
                        for rung in rungs}, image.shape))
      if "background" in sets:
        boxes = [f["box"] for f in run_rung(results, mask, f"mask/{relpath}", image,
                                            "low_confidence")["faces"]]
        for x, y, w, h in background_patches(image, boxes, args.patches_per_photo,
                                             zlib.crc32(relpath.encode())):
          patch = np.ascontiguousarray(image[y:y + h, x:x + w])
          item = f"background/{relpath}@{x},{y},{w},{h}"
          patches.append(({rung: run_rung(results, aligner, item, patch, rung)
                           for rung in rungs}, patch.shape))
      progress.step()
    if photos:
      print(f"\nphotos ({len(photos)}): the ladder, cumulative")
      print(f"{'ladder':17} {'aligned':>9} {'faces':>6} {'vs as_is':>8} {'ms/img':>7}")
      before = None
      for depth in range(1, len(rungs) + 1):
        found = [outcome(aligner, rungs[:depth], records, shape) for records, shape in photos]
        faces = sum(len(usable) for _, _, _, usable in found)
        before = faces if before is None else before
        aligned = sum(face is not None for _, face, _, _ in found)
        seconds = float(np.mean([s for _, _, s, _ in found]))
        rows.append(dict(table="photos", ladder=rungs[:depth], images=len(photos),
                         aligned=aligned, faces=faces, faces_as_is=before, seconds=seconds))
        label = rungs[0] if depth == 1 else "+" + rungs[depth - 1]
        print(f"{label:17} {aligned:4d}/{len(photos):<4d} {faces:6d} {faces - before:+8d} "
              f"{seconds * 1000:7.0f}")
      print("\nphotos: each rung alone on every photo")
      print(f"{'rung':17} {'faces':>6} {'not as_is':>9} {'ms/img':>7}")
      for rung in rungs:
        faces = unmatched = 0
        for records, _ in photos:
          as_is = [face_of(r, "as_is") for r in records["as_is"]["faces"]]
          as_is = [face for face in as_is if aligner.usable(face)]
          usable = [face for face in (face_of(r, rung) for r in records[rung]["faces"])
                    if aligner.usable(face)]
          faces += len(usable)
          unmatched += sum(all(iou(face.box, other.box) < 0.4 for other in as_is)
                           for face in usable)
        seconds = float(np.mean([records[rung]["seconds"] for records, _ in photos]))
        rows.append(dict(table="photos_rung_alone", rung=rung, faces=faces, unmatched=unmatched,
                         seconds=seconds))
        print(f"{rung:17} {faces:6d} {unmatched:9d} {seconds * 1000:7.0f}")
    if patches:
      print(f"\nbackground ({len(patches)} patches without a face): false faces, cumulative")
      for depth in range(1, len(rungs) + 1):
        found = [outcome(aligner, rungs[:depth], records, shape) for records, shape in patches]
        false = sum(face is not None for _, face, _, _ in found)
        seconds = float(np.mean([s for _, _, s, _ in found]))
        rows.append(dict(table="background", ladder=rungs[:depth], images=len(patches),
                         false_faces=false, seconds=seconds))
        label = rungs[0] if depth == 1 else "+" + rungs[depth - 1]
        print(f"{label:17} {false:4d}/{len(patches):<4d} {seconds * 1000:7.0f} ms/img")
  if args.output:
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    runlog.write_json(args.output, dict(settings=dict(vars(args)), rungs=rungs, rows=rows))


if __name__ == "__main__":
  main()
