"""Procedural, seeded face images: the project's embedded default dataset.

Every identity gets its own face geometry, colours and accessories from an
identity seed; every image of it varies pose, scale, expression, lighting,
background, blur, noise and occlusion. Faces are drawn anti-aliased with cv2
at 2-4x the output size and downsampled with INTER_AREA. No files, no download.

Noise worth cleaning (the comprehensive search's data aspect), seeded by the data seed and
applied to the training split only (val, test and the held-out pairs stay clean):
label_noise gives that fraction of the training images a wrong identity; outliers replaces
that fraction by non-face images or destroyed faces of other people (labels kept);
near_duplicates renders that many training identities as slightly perturbed copies of other
training identities (almost the same person under another label). What was injected is in
`dataset.report["synthetic_noise"]`.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from enas_face.data.base import FaceDataset, LabelledImages, VerificationPairs, split_per_identity
from enas_face.data.pairs import make_verification_pairs

_SHIFT = 4  # cv2 fixed-point bits for sub-pixel drawing
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA
_MIN_IMAGE_SIZE, _MAX_IMAGE_SIZE = 16, 512

_SKIN_TONES = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 96],
                        [160, 102, 66], [120, 76, 48], [88, 56, 38]], dtype=np.float64)
_HAIR_COLOURS = np.array([[22, 18, 18], [55, 38, 28], [95, 62, 38], [140, 95, 55],
                          [205, 170, 110], [150, 62, 32], [150, 150, 150], [225, 222, 215]],
                         dtype=np.float64)
_HAIR_WEIGHTS = np.array([0.26, 0.22, 0.15, 0.1, 0.1, 0.06, 0.07, 0.04])
_IRIS_COLOURS = np.array([[70, 42, 24], [110, 72, 40], [70, 110, 160], [80, 120, 80],
                          [120, 120, 130], [40, 28, 20]], dtype=np.float64)
_HAIR_STYLES = ("short", "long", "bald", "receding", "afro", "bangs", "buzz", "medium", "quiff")
_HAIR_STYLE_WEIGHTS = np.array([0.2, 0.18, 0.05, 0.1, 0.07, 0.12, 0.08, 0.12, 0.08])


@dataclasses.dataclass(frozen=True)
class _Variation:
  """Strength of the per-image nuisances; tuned so raw-pixel PCA verification is hard but not hopeless."""
  roll: float = 0.2  # max in-plane rotation, radians
  yaw: float = 0.4  # max yaw, radians
  pitch: float = 0.2  # max pitch, radians
  scale: float = 0.1  # max relative scale change
  shift: float = 0.05  # max translation, fraction of the image
  background_contrast: float = 0.45  # 1 = background colours anywhere in [0, 255]
  occlusion_rate: float = 0.15
  blur_rate: float = 0.3
  blur_sigma: float = 1.0  # max sigma in pixels at 32x32, scaled with the size
  light: float = 0.3  # max directional-gradient strength
  contrast: float = 0.2  # contrast in [1 - contrast, 1 + contrast * 0.7]
  brightness: float = 25.0
  colour_cast: float = 0.08
  noise: float = 8.0  # max noise std (of 255)
  noise_rate: float = 0.7


_VARIATION = _Variation()
_BROW_STEPS = np.linspace(0.0, 1.0, 7)
_MOUTH_STEPS = np.linspace(-1.0, 1.0, 11)


@dataclasses.dataclass(frozen=True)
class _Identity:
  """Per-identity constants: shapes in face units (u, v in [-1, 1]) and colours."""
  face_w: float
  face_h: float
  outline: np.ndarray  # [N, 2] face contour, u/v
  skin: tuple
  skin_shade: tuple  # neck, nose shading
  skin_dark: tuple  # closed eyelids, nostrils, moles
  ear: tuple
  hair: tuple
  brow_colour: tuple
  iris: tuple
  lips: tuple
  lips_line: tuple
  eye_sep: float
  eye_v: float
  eye_w: float
  eye_h: float
  eye_tilt: float
  iris_frac: float
  brow_gap: float
  brow_thick: float
  brow_arch: float
  brow_slope: float
  brow_len: float
  nose_v: float
  nose_w: float
  nose_bridge: bool
  mouth_v: float
  mouth_w: float
  lip_top: float
  lip_bottom: float
  smile: float
  ear_w: float
  ear_h: float
  ear_v: float
  hair_style: str
  hair_cap: np.ndarray | None  # [N, 3] hair polygon: u, v, 1 if on the face surface else 0
  hair_back: np.ndarray | None  # [N, 2] hair behind the head, u/v
  beard: np.ndarray | None  # [N, 3] like hair_cap
  beard_colour: tuple
  moustache: bool
  glasses: int  # 0 none, 1 round, 2 rectangular, 3 sunglasses
  glasses_colour: tuple
  glasses_rate: float
  moles: tuple  # ((u, v, radius), ...)


def _surface_depth(u):
  """Depth of the face surface at horizontal position u (face units)."""
  return 0.55 * np.sqrt(np.maximum(0.0, 1.0 - np.square(u)))


def _blend(first, second, weight: float) -> tuple:
  return tuple(float(a) * (1.0 - weight) + float(b) * weight for a, b in zip(first, second))


def _scale_colour(colour, factor: float) -> tuple:
  return tuple(min(255.0, float(c) * factor) for c in colour)


def _make_identity(identity_seed: int) -> _Identity:
  """Draws an identity's geometry, colours and accessories from its seed."""
  rng = np.random.default_rng([identity_seed, 0x1D])
  def uniform(low: float, high: float) -> float:
    return float(rng.uniform(low, high))
  face_w, face_h = uniform(0.18, 0.25), uniform(0.25, 0.33)
  # Face contour: superellipse whose exponents shape forehead and jaw.
  angles = np.linspace(0.0, 2.0 * np.pi, 40, endpoint=False)
  cos, sin = np.cos(angles), np.sin(angles)
  upper_exp, lower_exp = uniform(1.8, 2.6), uniform(1.5, 3.6)
  exponent = np.where(sin > 0, lower_exp, upper_exp)
  cheek = uniform(0.84, 1.04)
  u = np.sign(cos) * np.abs(cos) ** (2.0 / exponent) * np.where(sin > 0, cheek, 1.0)
  v = np.sign(sin) * np.abs(sin) ** (2.0 / exponent)
  outline = np.stack([u, v], axis=1)

  tone = uniform(0.0, len(_SKIN_TONES) - 1.0)
  low = int(tone)
  skin = _SKIN_TONES[low] + (_SKIN_TONES[min(low + 1, len(_SKIN_TONES) - 1)] - _SKIN_TONES[low]) * (tone - low)
  skin = tuple(np.clip(skin * rng.uniform(0.93, 1.07, 3), 0, 255))
  hair = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_WEIGHTS)]
  hair = tuple(np.clip(hair * rng.uniform(0.85, 1.15, 3), 0, 255))
  iris = tuple(np.clip(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.8, 1.2, 3), 0, 255))
  lips = _blend(_scale_colour(skin, uniform(0.7, 0.9)), (170, 60, 70), uniform(0.15, 0.45))
  brow_colour = _blend(hair, (40, 30, 25), uniform(0.2, 0.6))

  eye_v = uniform(-0.14, 0.02)
  eye_h = uniform(0.055, 0.1)
  brow_gap = uniform(0.09, 0.19)
  brow_thick = uniform(0.025, 0.075)
  nose_len = uniform(0.22, 0.4)
  nose_v = eye_v + nose_len
  lip_top, lip_bottom = uniform(0.02, 0.05), uniform(0.03, 0.07)
  mouth_v = min(nose_v + uniform(0.14, 0.25), 0.75)

  hair_style = _HAIR_STYLES[rng.choice(len(_HAIR_STYLES), p=_HAIR_STYLE_WEIGHTS)]
  hairline = uniform(-0.8, -0.5)
  hair_w, hair_h, hair_centre = uniform(1.04, 1.22), uniform(1.06, 1.3), uniform(-0.12, 0.02)
  line_shape, line_amount = rng.integers(4), uniform(0.05, 0.25)
  sideburn = uniform(-0.15, 0.2)
  hair_cap, hair_back = None, None
  if hair_style != "bald":
    if hair_style == "receding":
      hairline, line_shape, line_amount = uniform(-0.95, -0.75), 1, uniform(0.25, 0.5)
    elif hair_style == "bangs":
      hairline, line_shape = eye_v - brow_gap - uniform(0.0, 0.12), rng.integers(2) * 3
    elif hair_style == "afro":
      hair_w, hair_h, hairline = 1.08, 1.15, uniform(-0.75, -0.55)
    elif hair_style == "short":
      hair_w, hair_h, sideburn = uniform(1.03, 1.12), uniform(1.04, 1.2), uniform(-0.35, 0.0)
    elif hair_style == "quiff":
      hair_w, hair_h, hair_centre = uniform(1.03, 1.1), uniform(1.22, 1.38), uniform(-0.08, 0.0)
    elif hair_style == "buzz":
      hair_w, hair_h = 1.02, 1.05
      hair = _blend(hair, skin, 0.45)
    us = np.linspace(1.0, -1.0, 15)
    if line_shape == 1:  # rounded, receding at the temples
      shape = line_amount * (np.square(us) - 0.5)
    elif line_shape == 2:  # widow's peak
      shape = line_amount * np.maximum(0.0, 1.0 - 3.0 * np.abs(us))
    elif line_shape == 3:  # side part / diagonal fringe
      shape = line_amount * us * (1 if rng.random() < 0.5 else -1)
    else:
      shape = np.zeros_like(us)
    weight = np.abs(us) ** 4
    line_v = (hairline + shape) * (1.0 - weight) + sideburn * weight
    arc = np.linspace(np.pi, 2.0 * np.pi, 17)
    outer = np.stack([hair_w * np.cos(arc), hair_centre + hair_h * np.sin(arc), np.zeros_like(arc)], axis=1)
    inner = np.stack([0.98 * us, line_v, np.ones_like(us)], axis=1)
    hair_cap = np.concatenate([outer, [[hair_w, sideburn, 0.0]], inner, [[-hair_w, sideburn, 0.0]]])
    if hair_style == "afro":
      width, height = uniform(1.35, 1.65), uniform(1.25, 1.45)
      arc = np.linspace(0.0, 2.0 * np.pi, 28, endpoint=False)
      hair_back = np.stack([width * np.cos(arc), hair_centre - 0.15 + height * np.sin(arc)], axis=1)
    elif hair_style in ("long", "medium"):
      length = uniform(0.8, 1.7) if hair_style == "long" else uniform(0.2, 0.7)
      width = hair_w * (uniform(1.05, 1.25) if hair_style == "long" else 1.02)
      back = [[-width, hair_centre + length], [width, hair_centre + length]]
      back += [[hair_w * math.cos(a), hair_centre + hair_h * math.sin(a)] for a in np.linspace(0.0, -np.pi, 17)]
      hair_back = np.array(back)

  beard, beard_colour, moustache = None, hair, False
  if rng.random() < 0.3:
    kind = rng.integers(3)  # full beard, goatee, stubble
    beard_colour = _blend(skin, hair, 0.35) if kind == 2 else _blend(hair, (30, 25, 20), 0.2)
    if kind == 1:
      us = np.linspace(-1.0, 1.0, 9) * uniform(0.32, 0.5)
      low_v = np.interp(us, *_lower_contour(outline)) * 0.98
      top_v = mouth_v + lip_bottom + uniform(0.0, 0.03) + 0.5 * np.square(us)
      beard = np.concatenate([np.stack([us, low_v, np.zeros_like(us)], 1),
                              np.stack([us[::-1], top_v[::-1], np.ones_like(us)], 1)])
    else:
      side_top = uniform(0.2, 0.45)
      lower = outline[(outline[:, 1] > side_top)] * [1.0, 1.04]
      # Right to left through the chin.
      lower = lower[np.argsort((np.arctan2(lower[:, 1], lower[:, 0]) + np.pi / 2) % (2 * np.pi))]
      us = np.linspace(-1.0, 1.0, 13) * np.abs(lower[:, 0]).max()
      centre_top = mouth_v - lip_top - uniform(0.03, 0.07)
      top_v = centre_top + (side_top - centre_top) * np.abs(us) ** 1.5
      beard = np.concatenate([np.stack([lower[:, 0], lower[:, 1], np.zeros(len(lower))], 1),
                              np.stack([us[::-1], top_v[::-1], np.ones_like(us)], 1)])
    moustache = kind != 1 or rng.random() < 0.7
  elif rng.random() < 0.08:
    moustache = True

  glasses = 0
  if rng.random() < 0.28:
    glasses = 3 if rng.random() < 0.15 else int(rng.integers(1, 3))
  glasses_colour = tuple(float(c) for c in rng.choice([[20, 20, 20], [90, 60, 40], [160, 160, 170],
                                                       [120, 30, 30], [30, 40, 110]]))
  moles = tuple((uniform(-0.7, 0.7), uniform(-0.5, 0.7), uniform(0.018, 0.035))
                for _ in range(rng.choice(4, p=[0.55, 0.3, 0.1, 0.05])))

  return _Identity(
      face_w=face_w, face_h=face_h, outline=outline, skin=skin,
      skin_shade=_scale_colour(skin, 0.78), skin_dark=_scale_colour(skin, 0.45), ear=_scale_colour(skin, 0.9),
      hair=hair, brow_colour=brow_colour, iris=iris, lips=lips,
      lips_line=_scale_colour(lips, 0.55),
      eye_sep=uniform(0.3, 0.46), eye_v=eye_v, eye_w=uniform(0.15, 0.23), eye_h=eye_h,
      eye_tilt=uniform(-9.0, 9.0), iris_frac=uniform(0.45, 0.7), brow_gap=brow_gap,
      brow_thick=brow_thick, brow_arch=uniform(-0.02, 0.09), brow_slope=uniform(-0.07, 0.07),
      brow_len=uniform(0.85, 1.35), nose_v=nose_v, nose_w=uniform(0.09, 0.2),
      nose_bridge=bool(rng.random() < 0.5), mouth_v=mouth_v, mouth_w=uniform(0.24, 0.42),
      lip_top=lip_top, lip_bottom=lip_bottom, smile=uniform(-0.15, 0.35), ear_w=uniform(0.08, 0.16),
      ear_h=uniform(0.14, 0.26), ear_v=uniform(-0.08, 0.12), hair_style=hair_style,
      hair_cap=hair_cap, hair_back=hair_back, beard=beard, beard_colour=beard_colour,
      moustache=moustache, glasses=glasses, glasses_colour=glasses_colour,
      glasses_rate=uniform(0.7, 1.0), moles=moles)


def _lower_contour(outline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(u, v) of the lower half of the contour sorted by u, for np.interp."""
  lower = outline[outline[:, 1] > 0]
  order = np.argsort(lower[:, 0])
  return lower[order, 0], lower[order, 1]


class _Painter:
  """Draws face-unit shapes onto a canvas under one image's pose."""

  def __init__(self, canvas: np.ndarray, identity: _Identity, roll: float, yaw: float, pitch: float,
               scale: float, centre_x: float, centre_y: float):
    self.canvas = canvas
    size = canvas.shape[0] * _ONE
    self.cos_yaw, self.sin_yaw = math.cos(yaw), math.sin(yaw)
    self.cos_pitch, self.sin_pitch = math.cos(pitch), math.sin(pitch)
    self.silhouette = math.sqrt(self.cos_yaw ** 2 + 0.3 * self.sin_yaw ** 2)
    cos_roll, sin_roll = math.cos(roll), math.sin(roll)
    self.roll_degrees = math.degrees(roll)
    self.unit_x = identity.face_w * scale * size
    self.unit_y = identity.face_h * scale * size
    self.matrix = (cos_roll * self.unit_x, -sin_roll * self.unit_y, centre_x * size,
                   sin_roll * self.unit_x, cos_roll * self.unit_y, centre_y * size)

  def _to_canvas(self, x0, y0):
    a, b, e, c, d, f = self.matrix
    return a * x0 + b * y0 + e, c * x0 + d * y0 + f

  def surface(self, u, v, depth_offset=0.0):
    """Canvas points (fixed point) of face-surface points under yaw and pitch."""
    if type(u) is float:
      depth = 0.55 * math.sqrt(max(0.0, 1.0 - u * u)) + depth_offset
    else:
      depth = _surface_depth(u) + depth_offset
    return self._to_canvas(u * self.cos_yaw + depth * self.sin_yaw, v * self.cos_pitch + depth * self.sin_pitch)

  def flat(self, u, v):
    """Canvas points of silhouette points (head contour), which keep their shape under yaw."""
    return self._to_canvas(u * self.silhouette, v)

  def polygon(self, x, y, colour) -> None:
    points = np.stack([x, y], axis=1).astype(np.int32)
    cv2.fillPoly(self.canvas, [points], colour, _AA, _SHIFT)

  def polyline(self, x, y, colour, thickness: int) -> None:
    points = np.stack([x, y], axis=1).astype(np.int32)
    cv2.polylines(self.canvas, [points], False, colour, thickness, _AA, _SHIFT)

  def local_width(self, u: float) -> float:
    """Horizontal foreshortening of the surface at u under yaw."""
    slope = 0.55 * u / math.sqrt(max(0.05, 1.0 - u * u))
    return min(1.3, max(0.15, self.cos_yaw - self.sin_yaw * slope))

  def ellipse(self, x, y, axis_u: float, axis_v: float, angle: float, colour,
              thickness: int = -1, start: float = 0.0, end: float = 360.0) -> None:
    """Ellipse centred at canvas point (x, y) with face-unit half axes."""
    axes = (max(1, int(axis_u * self.unit_x)), max(1, int(axis_v * self.unit_y)))
    cv2.ellipse(self.canvas, (int(x), int(y)), axes, self.roll_degrees + angle, start, end, colour,
                thickness, _AA, _SHIFT)


def _background_colour(rng: np.random.Generator) -> np.ndarray:
  spread = 127.5 * _VARIATION.background_contrast
  return 127.5 + rng.uniform(-spread, spread, 3)


def _draw_background(canvas: np.ndarray, rng: np.random.Generator) -> None:
  """Fills the canvas with a random colour, gradient, blob texture, rectangles or tiles."""
  size = canvas.shape[0]
  mode = rng.integers(5)
  if mode == 0:
    canvas[:] = _background_colour(rng)
  elif mode == 1:
    corners = np.stack([_background_colour(rng) for _ in range(4)]).reshape(2, 2, 3).astype(np.uint8)
    canvas[:] = cv2.resize(corners, (size, size), interpolation=cv2.INTER_LINEAR)
  elif mode == 2:
    cells = int(rng.integers(3, 8))
    blobs = (_background_colour(rng) + rng.integers(-70, 71, (cells, cells, 3))).clip(0, 255)
    canvas[:] = cv2.resize(blobs.astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
  elif mode == 3:
    canvas[:] = _background_colour(rng)
    for x0, y0, w, h in rng.random((int(rng.integers(2, 6)), 4)).tolist():
      cv2.rectangle(canvas, (int(x0 * size), int(y0 * size)),
                    (int((x0 + w * 0.6) * size), int((y0 + h * 0.6) * size)), _background_colour(rng), -1)
  else:
    cells = int(rng.integers(6, 20))
    tiles = (_background_colour(rng) + rng.integers(-40, 41, (cells, cells, 1))).clip(0, 255)
    canvas[:] = cv2.resize(tiles.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)


def _draw_occluder(canvas: np.ndarray, rng: np.random.Generator, identity: _Identity) -> None:
  """A random rectangle or hand-like blob over part of the face."""
  size = canvas.shape[0] * _ONE
  cx, cy = (0.5 + rng.uniform(-0.25, 0.25, 2)) * size
  if rng.random() < 0.5:
    w, h = rng.uniform(0.12, 0.3, 2) * size
    colour = tuple(float(c) for c in rng.integers(0, 256, 3))
    corners = np.array([[cx - w, cy - h], [cx + w, cy - h], [cx + w, cy + h], [cx - w, cy + h]])
    angle = rng.uniform(-0.5, 0.5)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    corners = (corners - [cx, cy]) @ rotation.T + [cx, cy]
    cv2.fillPoly(canvas, [corners.astype(np.int32)], colour, _AA, _SHIFT)
    return
  skin = _scale_colour(identity.skin, rng.uniform(0.85, 1.05))
  palm = rng.uniform(0.1, 0.16) * size
  angle = rng.uniform(0.0, 2.0 * np.pi)
  cv2.ellipse(canvas, (int(cx), int(cy)), (int(palm), int(palm * 0.8)), math.degrees(angle), 0, 360,
              skin, -1, _AA, _SHIFT)
  thickness = max(1, int(palm * 0.42 / _ONE))
  for finger in range(4):
    direction = angle + (finger - 1.5) * 0.3
    length = palm * (1.7 + 0.25 * (finger in (1, 2)))
    start = (int(cx + math.cos(direction) * palm * 0.6), int(cy + math.sin(direction) * palm * 0.6))
    end = (int(cx + math.cos(direction) * length), int(cy + math.sin(direction) * length))
    cv2.line(canvas, start, end, _scale_colour(skin, 0.97), thickness, _AA, _SHIFT)


def _draw_face(canvas: np.ndarray, identity: _Identity, rng: np.random.Generator) -> None:
  """One image of `identity`: pose, expression and accessories drawn from rng."""
  (roll, yaw, pitch, scale, shift_x, shift_y, smile, mouth_open, eye_open, brow_raise, gaze_x,
   gaze_y, glasses_draw, clothes_r, clothes_g, clothes_b, hair_tone, open_draw,
   blink_draw) = rng.random(19).tolist()
  variation = _VARIATION
  roll = (2.0 * roll - 1.0) * variation.roll
  yaw = (2.0 * yaw - 1.0) * variation.yaw
  pitch = (2.0 * pitch - 1.0) * variation.pitch
  scale = 1.0 + (2.0 * scale - 1.0) * variation.scale
  painter = _Painter(canvas, identity, roll, yaw, pitch, scale, 0.5 + (2.0 * shift_x - 1.0) * variation.shift,
                     0.47 + (2.0 * shift_y - 1.0) * variation.shift)
  smile = identity.smile + (smile - 0.35) * 1.2
  mouth_open = 0.0 if open_draw < 0.6 else mouth_open * 0.14
  eye_open = 0.12 if blink_draw < 0.07 else 0.55 + 0.55 * eye_open
  brow_raise = (brow_raise - 0.35) * 0.12
  hair = _scale_colour(identity.hair, 0.85 + 0.3 * hair_tone)
  surface, flat = painter.surface, painter.flat
  skin, shade = identity.skin, identity.skin_shade

  # Shoulders, neck, hair behind the head, ears.
  x, y = flat(np.array([-2.6, -1.9, -0.9, 0.9, 1.9, 2.6]), np.array([3.4, 1.75, 1.45, 1.45, 1.75, 3.4]))
  painter.polygon(x, y, (clothes_r * 255, clothes_g * 255, clothes_b * 255))
  x, y = flat(np.array([-0.5, -0.55, 0.55, 0.5]), np.array([0.4, 1.6, 1.6, 0.4]))
  painter.polygon(x, y, shade)
  if identity.hair_back is not None:
    x, y = flat(identity.hair_back[:, 0], identity.hair_back[:, 1])
    painter.polygon(x, y, _scale_colour(hair, 0.85))
  for side in (-1.0, 1.0):
    x, y = surface(side * 0.97, identity.ear_v, -0.35)
    painter.ellipse(x, y, identity.ear_w * painter.local_width(side * 0.7), identity.ear_h, 0.0,
                    identity.ear)

  # Face, beard, hair cap.
  x, y = flat(identity.outline[:, 0], identity.outline[:, 1])
  painter.polygon(x, y, skin)
  for shape, colour in ((identity.beard, identity.beard_colour), (identity.hair_cap, hair)):
    if shape is None:
      continue
    on_surface = shape[:, 2] > 0
    x_surface, y_surface = surface(shape[:, 0], shape[:, 1])
    x_flat, y_flat = flat(shape[:, 0], shape[:, 1])
    painter.polygon(np.where(on_surface, x_surface, x_flat), np.where(on_surface, y_surface, y_flat), colour)

  # Eyebrows and eyes.
  eye_w, eye_h = identity.eye_w, identity.eye_h * eye_open
  steps = _BROW_STEPS
  for side in (-1.0, 1.0):
    eye_u = side * identity.eye_sep
    width = painter.local_width(eye_u)
    brow_u = side * (identity.eye_sep - identity.eye_w * 0.9 + steps * identity.eye_w * 1.9 * identity.brow_len)
    centre = (identity.eye_v - identity.brow_gap - brow_raise - identity.brow_arch * np.sin(np.pi * steps ** 0.8)
              + identity.brow_slope * (steps - 0.5))
    half = identity.brow_thick * (1.0 - 0.55 * steps) * 0.5
    x, y = surface(np.concatenate([brow_u, brow_u[::-1]]), np.concatenate([centre - half, (centre + half)[::-1]]),
                   0.02)
    painter.polygon(x, y, identity.brow_colour)
    x, y = surface(eye_u, identity.eye_v, -0.05)
    tilt = side * identity.eye_tilt
    if eye_open < 0.2:
      painter.ellipse(x, y, eye_w * width, eye_h + 0.01, tilt, identity.skin_dark, 1, 0, 180)
      continue
    painter.ellipse(x, y, eye_w * width, eye_h, tilt, (235, 232, 225))
    iris_r = identity.eye_w * identity.iris_frac * 0.5
    offset_x = (gaze_x - 0.5) * 0.5 * eye_w * width * 1.4
    painter.ellipse(x + offset_x * painter.unit_x, y + (gaze_y - 0.5) * eye_h * 0.3 * painter.unit_y,
                    iris_r * width, min(iris_r * 1.25, eye_h * 0.95), 0.0, identity.iris)
    painter.ellipse(x + offset_x * painter.unit_x, y, iris_r * 0.45 * width, min(iris_r * 0.5, eye_h * 0.5),
                    0.0, (15, 12, 12))
    painter.ellipse(x, y, eye_w * width, eye_h, tilt, (30, 25, 25), 1, 180, 360)

  # Nose.
  nose_x, nose_y = surface(0.0, identity.nose_v, 0.38)
  width = painter.local_width(0.0)
  if identity.nose_bridge:
    x, y = surface(np.array([0.06, 0.08]), np.array([identity.eye_v + 0.05, identity.nose_v - 0.06]),
                   np.array([0.1, 0.32]))
    painter.polyline(x, y, shade, 1)
  painter.ellipse(nose_x, nose_y, identity.nose_w * width, 0.05, 0.0, shade, -1, 0, 180)
  for side in (-1.0, 1.0):
    x, y = surface(side * identity.nose_w * 0.55, identity.nose_v + 0.01, 0.3)
    painter.ellipse(x, y, 0.035 * width, 0.02, 0.0, identity.skin_dark)

  # Mouth: lips from a curved centre line, opening and teeth when open.
  steps = _MOUTH_STEPS
  mouth_u = steps * identity.mouth_w * 0.5
  centre = identity.mouth_v - smile * 0.07 * (np.square(steps) - 0.3)
  bulge = np.sqrt(1.0 - np.square(steps))
  top = centre - (identity.lip_top * (1.0 - 0.35 * np.exp(-20.0 * np.square(steps))) + mouth_open * 0.5) * bulge
  bottom = centre + (identity.lip_bottom + mouth_open * 0.5) * bulge
  if identity.moustache:
    m_top = top - 0.035 - 0.04 * bulge
    x, y = surface(np.concatenate([mouth_u * 1.25, mouth_u[::-1] * 1.25]),
                   np.concatenate([m_top, top[::-1] - 0.005]), 0.05)
    painter.polygon(x, y, _blend(hair, (30, 25, 20), 0.3))
  x, y = surface(np.concatenate([mouth_u, mouth_u[::-1]]), np.concatenate([top, bottom[::-1]]), 0.02)
  painter.polygon(x, y, identity.lips)
  if mouth_open > 0.01:
    inner_top, inner_bottom = centre - mouth_open * 0.5 * bulge, centre + mouth_open * 0.5 * bulge
    x, y = surface(np.concatenate([mouth_u * 0.9, mouth_u[::-1] * 0.9]),
                   np.concatenate([inner_top, inner_bottom[::-1]]), 0.02)
    painter.polygon(x, y, (60, 20, 25))
    if smile > 0.2:
      x, y = surface(np.concatenate([mouth_u * 0.7, mouth_u[::-1] * 0.7]),
                     np.concatenate([inner_top, (inner_top + mouth_open * 0.35 * bulge)[::-1]]), 0.02)
      painter.polygon(x, y, (235, 232, 222))
  else:
    x, y = surface(mouth_u * 0.95, centre, 0.02)
    painter.polyline(x, y, identity.lips_line, 1)

  for mole_u, mole_v, radius in identity.moles:
    x, y = surface(mole_u, mole_v)
    painter.ellipse(x, y, radius * painter.local_width(mole_u), radius, 0.0, identity.skin_dark)

  # Glasses.
  if identity.glasses and glasses_draw < identity.glasses_rate:
    colour = identity.glasses_colour
    thickness = max(1, canvas.shape[0] // 48)
    centres = []
    for side in (-1.0, 1.0):
      eye_u = side * identity.eye_sep
      width = painter.local_width(eye_u)
      x, y = surface(eye_u, identity.eye_v, 0.12)
      centres.append((x, y))
      axis_u, axis_v = (identity.eye_w + 0.06) * width, 0.13
      if identity.glasses == 3:
        painter.ellipse(x, y, axis_u, axis_v, 0.0, (25, 25, 30))
      elif identity.glasses == 1:
        painter.ellipse(x, y, axis_u, axis_v, 0.0, colour, thickness)
      else:
        dx, dy = axis_u * painter.unit_x, axis_v * painter.unit_y
        corners = np.array([[-dx, -dy], [dx, -dy], [dx, dy], [-dx, dy]])
        cos_r, sin_r = math.cos(math.radians(painter.roll_degrees)), math.sin(math.radians(painter.roll_degrees))
        corners = corners @ np.array([[cos_r, sin_r], [-sin_r, cos_r]]) + [x, y]
        cv2.polylines(canvas, [corners.astype(np.int32)], True, colour, thickness, _AA, _SHIFT)
    (x0, y0), (x1, y1) = centres
    cv2.line(canvas, (int(x0 + (x1 - x0) * 0.3), int(y0 + (y1 - y0) * 0.3)),
             (int(x0 + (x1 - x0) * 0.7), int(y0 + (y1 - y0) * 0.7)), colour, thickness, _AA, _SHIFT)


def _render_scale(image_size: int) -> int:
  return 4 if image_size < 32 else 3 if image_size < 64 else 2


def _perturbed_identity(identity: _Identity, rng: np.random.Generator) -> _Identity:
  """A near-duplicate: every scalar shape parameter scaled by 1 +- 3 %, every colour shifted
  by up to +-6 (of 255); outline, hair, accessories and style kept."""
  changes = {}
  for field in dataclasses.fields(identity):
    value = getattr(identity, field.name)
    if isinstance(value, float):
      changes[field.name] = value * (1.0 + rng.uniform(-0.03, 0.03))
    elif isinstance(value, tuple) and value and all(isinstance(v, float) for v in value) \
        and len(value) == 3:
      changes[field.name] = tuple(float(np.clip(v + rng.uniform(-6, 6), 0, 255)) for v in value)
  return dataclasses.replace(identity, **changes)


def render_identity(identity_seed: int, num_images: int, image_size: int, seed: int) -> np.ndarray:
  """`num_images` varied images of the identity drawn from `identity_seed`.

  The identity (geometry, colours, accessories) depends only on identity_seed;
  pose, expression, lighting, background, blur, noise and occlusion depend on
  (identity_seed, seed). Returns uint8 RGB [num_images, image_size, image_size, 3].
  """
  for name, value in (("identity_seed", identity_seed), ("seed", seed)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
      raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
  if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) or num_images < 0:
    raise ValueError(f"num_images must be a non-negative integer, got {num_images!r}")
  _check_image_size(image_size)
  return _render(_make_identity(int(identity_seed)), num_images, image_size,
                 np.random.default_rng([int(identity_seed), int(seed), 0x1A6E]))


def _render(identity: _Identity, num_images: int, image_size: int,
            rng: np.random.Generator) -> np.ndarray:
  """`num_images` varied images of `identity`, the variation drawn from `rng`."""
  canvas_size = image_size * _render_scale(image_size)
  canvas = np.empty((canvas_size, canvas_size, 3), dtype=np.uint8)
  images = np.empty((num_images, image_size, image_size, 3), dtype=np.uint8)
  for index in range(num_images):
    _draw_background(canvas, rng)
    _draw_face(canvas, identity, rng)
    if rng.random() < _VARIATION.occlusion_rate:
      _draw_occluder(canvas, rng, identity)
    image = cv2.resize(canvas, (image_size, image_size), interpolation=cv2.INTER_AREA)
    blur = rng.random() / _VARIATION.blur_rate
    if blur < 1.0:
      sigma = (0.3 + (_VARIATION.blur_sigma - 0.3) * blur) * image_size / 32
      image = cv2.GaussianBlur(image, (0, 0), sigma)
    images[index] = image
  return _photometric(images, rng)


def _photometric(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Directional lighting, brightness/contrast, colour cast and noise, batched."""
  count, size = images.shape[:2]
  if count == 0:
    return images
  grid = np.linspace(-1.0, 1.0, size, dtype=np.float32)
  direction = rng.uniform(0.0, 2.0 * np.pi, count)
  variation = _VARIATION
  strength = rng.uniform(0.0, variation.light, count)
  gx = (strength * np.cos(direction)).astype(np.float32)[:, None, None]
  gy = (strength * np.sin(direction)).astype(np.float32)[:, None, None]
  light = 1.0 + gx * grid[None, None, :] + gy * grid[None, :, None]
  contrast = rng.uniform(1.0 - variation.contrast, 1.0 + 0.7 * variation.contrast, count)
  contrast = contrast.astype(np.float32)[:, None, None, None]
  brightness = rng.uniform(-variation.brightness, variation.brightness, count).astype(np.float32)[:, None, None, None]
  cast = rng.uniform(1.0 - variation.colour_cast, 1.0 + variation.colour_cast, (count, 1, 1, 3)).astype(np.float32)
  noise_std = rng.uniform(0.0, variation.noise, count) * (rng.random(count) < variation.noise_rate)
  noise_std = noise_std.astype(np.float32)
  pixels = images.astype(np.float32) * light[..., None]
  mean = pixels.mean(axis=(1, 2, 3), keepdims=True)
  pixels = ((pixels - mean) * contrast + mean + brightness) * cast
  pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * noise_std[:, None, None, None]
  return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def _check_image_size(image_size) -> None:
  if (isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer))
      or not _MIN_IMAGE_SIZE <= image_size <= _MAX_IMAGE_SIZE):
    raise ValueError(f"image_size must be an integer in [{_MIN_IMAGE_SIZE}, {_MAX_IMAGE_SIZE}], "
                     f"got {image_size!r}")


def _check_count(name: str, value, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def identity_seeds(num_identities: int, num_heldout_identities: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Distinct identity seeds for the training and the held-out identities."""
  rng = np.random.default_rng([int(seed), 0x5EED])
  total = num_identities + num_heldout_identities
  seeds = np.unique(rng.integers(0, 2 ** 62, size=total))
  while len(seeds) < total:  # astronomically unlikely collision
    seeds = np.unique(np.concatenate([seeds, rng.integers(0, 2 ** 62, size=total - len(seeds))]))
  seeds = rng.permutation(seeds)
  return seeds[:num_identities], seeds[num_identities:]


def _render_group(seeds: np.ndarray, images_per_identity: int, image_size: int,
                  seed: int, duplicate_of: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Images and labels of identities `seeds`; identity k in `duplicate_of` is drawn as a
  perturbed copy of identity duplicate_of[k] (its own variation)."""
  images = []
  for k, identity_seed in enumerate(seeds):
    if duplicate_of and k in duplicate_of:
      original = _make_identity(int(seeds[duplicate_of[k]]))
      identity = _perturbed_identity(original, np.random.default_rng([int(identity_seed), 0xD0]))
      images.append(_render(identity, images_per_identity, image_size,
                            np.random.default_rng([int(identity_seed), int(seed), 0x1A6E])))
    else:
      images.append(render_identity(int(identity_seed), images_per_identity, image_size, seed))
  labels = np.repeat(np.arange(len(seeds), dtype=np.int32), images_per_identity)
  return np.concatenate(images), labels


def _non_face(image_size: int, rng: np.random.Generator) -> np.ndarray:
  """A background with random shapes and noise: no face."""
  size = image_size * _render_scale(image_size)
  canvas = np.empty((size, size, 3), np.uint8)
  _draw_background(canvas, rng)
  for _ in range(int(rng.integers(2, 6))):
    centre = tuple(int(v) for v in rng.integers(0, size, 2))
    axes = tuple(int(v) for v in rng.integers(size // 10, size // 3, 2))
    cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                tuple(int(v) for v in rng.integers(0, 256, 3)), -1, _AA)
  image = cv2.resize(canvas, (image_size, image_size), interpolation=cv2.INTER_AREA)
  return _photometric(image[None], rng)[0]


def _destroyed_face(identity_seed: int, image_size: int, rng: np.random.Generator) -> np.ndarray:
  """A face of another identity under heavy noise (std 60) and a block over 35-60 % of it."""
  face = _render(_make_identity(int(identity_seed)), 1, image_size, rng)[0].astype(np.float32)
  face += rng.standard_normal(face.shape).astype(np.float32) * 60.0
  side = int(image_size * rng.uniform(0.35, 0.6))
  x, y = (int(v) for v in rng.integers(0, image_size - side + 1, 2))
  face[y:y + side, x:x + side] = rng.uniform(0, 255, 3)
  return face.clip(0, 255).astype(np.uint8)


def _check_fraction(name: str, value) -> float:
  number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
  if not number or not 0.0 <= value < 1.0:
    raise ValueError(f"{name} must be a fraction in [0, 1), got {value!r}")
  return float(value)


def _inject_noise(images: np.ndarray, labels: np.ndarray, num_identities: int,
                  label_noise: float, outliers: float, other_seeds: np.ndarray,
                  seed: int) -> dict:
  """Flips labels and replaces images of the training split in place; returns the truth."""
  rng = np.random.default_rng([int(seed), 0x0B5E])
  order = rng.permutation(len(labels))
  flipped = np.sort(order[:int(round(label_noise * len(labels)))])
  replaced = np.sort(order[len(flipped):len(flipped) + int(round(outliers * len(labels)))])
  true_labels = labels[flipped].copy()
  labels[flipped] = (true_labels + rng.integers(1, num_identities, len(flipped))) % num_identities
  kinds = []
  for index in replaced:
    if rng.random() < 0.5:
      images[index] = _non_face(images.shape[1], rng)
      kinds.append("non_face")
    else:
      images[index] = _destroyed_face(int(rng.choice(other_seeds[other_seeds != other_seeds[
          labels[index]]])), images.shape[1], rng)
      kinds.append("corrupted")
  return {"label_noise_indices": flipped.tolist(), "true_labels": true_labels.tolist(),
          "outlier_indices": replaced.tolist(), "outlier_kinds": kinds}


def make_synthetic_dataset(num_identities: int = 100, images_per_identity: int = 30,
                           num_heldout_identities: int = 50, heldout_images_per_identity: int = 10,
                           num_pairs: int = 600, num_folds: int = 10, image_size: int = 32,
                           seed: int = 0, label_noise: float = 0.0, outliers: float = 0.0,
                           near_duplicates: int = 0) -> FaceDataset:
  """The embedded synthetic face dataset.

  Training identities (labels 0..num_identities-1) are split 8:1:1 per identity
  into train/val/test; held-out identities, with identity seeds disjoint from
  the training ones, only provide the verification `pairs`. label_noise, outliers and
  near_duplicates inject noise into the training split (module docstring).
  """
  num_identities = _check_count("num_identities", num_identities, 1)
  images_per_identity = _check_count("images_per_identity", images_per_identity, 3)
  num_heldout_identities = _check_count("num_heldout_identities", num_heldout_identities, 2)
  heldout_images_per_identity = _check_count("heldout_images_per_identity", heldout_images_per_identity, 2)
  num_pairs = _check_count("num_pairs", num_pairs, 1)
  num_folds = _check_count("num_folds", num_folds, 1)
  _check_image_size(image_size)
  seed = _check_count("seed", seed, 0)
  label_noise, outliers = _check_fraction("label_noise", label_noise), _check_fraction("outliers", outliers)
  if label_noise + outliers >= 1.0:
    raise ValueError(f"label_noise + outliers must be < 1, got {label_noise} + {outliers}")
  for name, value in (("label_noise", label_noise), ("outliers", outliers)):
    if value and num_identities < 2:  # a wrong label, another person's face
      raise ValueError(f"{name}={value} needs at least 2 training identities, got num_identities=1")
  near_duplicates = _check_count("near_duplicates", near_duplicates, 0)
  if near_duplicates > num_identities // 2:
    raise ValueError(f"near_duplicates must be at most num_identities // 2 = "
                     f"{num_identities // 2}, got {near_duplicates}")

  train_seeds, heldout_seeds = identity_seeds(num_identities, num_heldout_identities, seed)
  # Check the pairs first: it is cheap and fails before any rendering.
  heldout_labels = np.repeat(np.arange(num_heldout_identities, dtype=np.int32), heldout_images_per_identity)
  pairs, is_same = make_verification_pairs(heldout_labels, num_pairs, num_folds, seed)
  # The last near_duplicates identities copy (perturbed) others, drawn among the rest.
  originals = np.random.default_rng([seed, 0xD1]).choice(
      num_identities - near_duplicates, near_duplicates, replace=False) if near_duplicates else []
  duplicate_of = {num_identities - near_duplicates + i: int(o) for i, o in enumerate(originals)}
  images, labels = _render_group(train_seeds, images_per_identity, image_size, seed, duplicate_of)
  heldout_images, _ = _render_group(heldout_seeds, heldout_images_per_identity, image_size, seed)
  train, val, test = split_per_identity(labels, (0.8, 0.1, 0.1), seed)
  train_images, train_labels = images[train], labels[train]
  report = {}
  if label_noise or outliers or near_duplicates:
    truth = _inject_noise(train_images, train_labels, num_identities, label_noise, outliers,
                          train_seeds, seed)
    report["synthetic_noise"] = {
        "label_noise": label_noise, "outliers": outliers, "near_duplicates": near_duplicates,
        **truth, "near_duplicate_of": {str(k): v for k, v in duplicate_of.items()}}
  return FaceDataset(
      name="synthetic",
      report=report,
      train=LabelledImages(train_images, train_labels),
      val=LabelledImages(images[val], labels[val]),
      test=LabelledImages(images[test], labels[test]),
      num_classes=num_identities,
      pairs=VerificationPairs(heldout_images, pairs, is_same, num_folds),
  )
