"""Frozen run configuration. Built from flags by `flags.config_from_flags`;
library code reads only these dataclasses, never absl flags.

Every field of a section is set by the flag of its own name, or by the flag that
FLAG_RENAMES names for it (`flag_of`); errors name that flag.

A config round-trips through JSON (`spaces.save_config` / `load_config`, which pass the
search space's sample codec to `RunConfig.to_json` / `from_json`), so a run folder's
`config.json` is enough to rebuild its model for eval and export.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable

from enas_face import runlog

EMBEDDING_HEADS = ("gdc", "gap", "flatten")
ALIGN_MODES = ("none", "online")
STREAM_MODES = ("auto", "always", "never")
# --search_strategy: how a sample gets its score (search/strategies.py: one_shot, multi_trial;
# search/differentiable.py: its own loop). tests/test_flags.py: each has its implementation.
ONE_SHOT, MULTI_TRIAL, DIFFERENTIABLE = "one_shot", "multi_trial", "differentiable"
SEARCH_STRATEGIES = (ONE_SHOT, MULTI_TRIAL, DIFFERENTIABLE)
# --shared_update: what a one-shot training step updates (training/shared_update.py): every
# variable (Keras SGD; untaken candidates get zero gradients, so momentum and weight decay
# still move them) or only the variables of the candidates its architecture ran.
SHARED_UPDATES = ("all", "taken")
# Where training runs (distribute.make_placement).
DISTRIBUTION_STRATEGIES = ("default", "mirrored", "multi_worker")
# --cost_target 0 with a latency cost model (ms): this target.
DEFAULT_TARGET_MS = 7.0
# --export_format: the SavedModel folder, and TFLite files in it (float32, float16 weights,
# int8) and an ONNX file (the onnx extra).
EXPORT_FORMATS = ("saved_model", "tflite", "tflite_fp16", "tflite_int8", "onnx")


class ConfigError(ValueError):
  """A bad flag combination or input file; the message names the flag/file."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The network's skeleton; the searched part is a sample of `search_space` (spaces.of)."""
  image_size: int = 112
  num_layers: int = 5
  num_reductions: int = 3
  base_filters: int = 32
  stem_stride: int = 1
  embedding_dim: int = 512
  embedding_head: str = "gdc"
  embedding_dropout: float = 0.0
  dropblock_keep_prob: float = 0.9
  dropblock_size: int = 3
  search_space: str = "enas_macro"
  # The mobilefacenet space: every channel count scaled by this (its default sample is
  # MobileFaceNet at this width; the supernet's widest choice).
  width_multiplier: float = 1.0

  @property
  def final_feature_size(self) -> int:
    """H (= W) of the last feature map: image_size / stem_stride / 2^num_reductions."""
    return self.image_size // self.stem_stride // 2**self.num_reductions

  def validate(self) -> None:
    divisor = self.stem_stride * 2**self.num_reductions
    if self.image_size % divisor or self.image_size // divisor < 1:
      raise ConfigError(
          f"--image_size={self.image_size} cannot be reduced by the network: it must be a "
          f"positive multiple of stem_stride * 2^num_reductions = {self.stem_stride} * "
          f"2^{self.num_reductions} = {divisor} (e.g. {divisor * max(1, self.image_size // divisor)})")
    if self.num_reductions >= self.num_layers:
      raise ConfigError(f"--num_reductions={self.num_reductions} must be smaller than "
                        f"--num_layers={self.num_layers}: reductions sit between layers")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where images come from and how they are augmented."""
  dataset: str = "synthetic"
  image_size: int = 112
  synthetic_identities: int = 100
  synthetic_images_per_identity: int = 30
  synthetic_heldout_identities: int = 50
  synthetic_heldout_images_per_identity: int = 10
  synthetic_label_noise: float = 0.0  # training split only (data/synthetic.py)
  label_noise: float = 0.0  # any dataset: this fraction of training labels flipped (data/label_noise.py)
  synthetic_outliers: float = 0.0
  synthetic_near_duplicates: int = 0
  num_pairs: int = 600
  num_folds: int = 10
  random_flip: bool = True
  pad_pixels: int = 4
  cutout_size: int = 16
  seed: int = 0
  # Real data (ignored by the synthetic generator).
  pairs: str = ""
  align: str = "none"
  face_policy: str = "largest_central"
  min_face_confidence: float = 0.9
  min_images_per_identity: int = 3
  heldout_fraction: float = 0.1
  exclude_pair_identities: bool = True
  # Streaming (data/stream.py): auto streams tfrecord:/insightface: sets whose decoded
  # training images would exceed stream_memory_gb; always / never force it.
  stream: str = "auto"
  stream_memory_gb: float = 4.0
  shuffle_buffer: int = 10000  # encoded records in the streamed shuffle buffer
  stream_eval_images: int = 5000  # streamed: about this many val, test and sample images
  max_image_pixels: int = 50_000_000
  cache_dir: str = ""
  # --align=online: pad by this fraction of the longer side before MTCNN (= align.
  # DEFAULT_DETECT_PADDING, not imported: align imports this module); faceless images are
  # rejected or kept as a centred square resize ("center").
  detect_padding: float = 0.2
  # --align=online: the detector's retry rungs after "as_is", in order (= align.
  # DEFAULT_DETECT_RETRIES joined by commas; "none": no retry); see align.FaceAligner.
  detect_retries: str = "pad,onet"
  on_no_face: str = "reject"
  # Data cleaning (the comprehensive spaces): proxy embeddings of the training images
  # (cleaning.py); "" in a search = RUN_DIR/cleaning/proxy_embeddings.npz, trained first.
  cleaning_embeddings: str = ""
  # Images without identity labels for the distillation terms only (data/unlabelled.py):
  # small_identities, folder:DIR, tfrecord:DIR, comma-separated; "" = none. Each training
  # step mixes a batch of them (unlabelled_batch_size, 0 = --batch_size) into the labelled one.
  unlabelled: str = ""
  unlabelled_batch_size: int = 0

  def scaled_to_input(self, pixels_at_112: int) -> int:
    """round(pixels * image_size / 112): the paper's augmentation sizes at this input."""
    return int(round(pixels_at_112 * self.image_size / 112))

  @property
  def pad(self) -> int:
    return self.scaled_to_input(self.pad_pixels)

  @property
  def cutout(self) -> int:
    return self.scaled_to_input(self.cutout_size)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimiser and schedule of from-scratch training (paper Section 4)."""
  epochs: int = 150
  batch_size: int = 128
  lr_max: float = 0.1
  lr_min: float = 1e-4
  warmup_epochs: int = 20
  cosine_period_epochs: int = 0
  cosine_period_mult: float = 1.0
  momentum: float = 0.9
  weight_decay: float = 1e-4
  label_smoothing: float = 0.0
  keep_checkpoints: int = 3
  seed: int = 0
  # A run folder or checkpoint whose child weights start training (fixed runs and every
  # multi-trial trial) instead of a random initialisation; "" = from scratch.
  init_checkpoint: str = ""


HEADS = ("softmax", "cosface", "arcface", "sphereface", "combined", "arcnegface",
         "rescaled_margin")
# --margin when not given: the literature's value for each head (METHODS.md §1-§2).
DEFAULT_MARGINS = {"cosface": (0.35,), "arcface": (0.5,), "arcnegface": (0.5,),
                   "sphereface": (4.0,), "combined": (1.0, 0.3, 0.2)}


@dataclasses.dataclass(frozen=True)
class HeadConfig:
  """The classification head and its loss (heads.py has the formulas). Field names are
  the flags' names, so a refused resume can name the flag."""
  head: str = "softmax"
  margin_scale: str = "64"  # a number, or "auto" = sqrt(2) ln(C - 1) (AdaCos)
  margin: str = ""  # m, or m1,m2,m3 for combined; "" = DEFAULT_MARGINS[head]
  arcface_easy_margin: bool = False
  arcnegface_alpha: float = 1.2
  arcnegface_sigma: float = 2.0
  rescaled_s_pos: float = 64.0
  rescaled_s_neg: float = 64.0
  rescaled_m1: float = 1.0
  rescaled_m2: float = 0.5
  rescaled_m3: float = 0.0
  rescaled_clip_thresh: float = 1.0
  rescaled_clip_value: float = 1.0
  sphereface_lambda_base: float = 1000.0
  sphereface_lambda_gamma: float = 0.12
  sphereface_lambda_power: float = 1.0
  sphereface_lambda_min: float = 5.0
  regularface_weight: float = 0.0

  def margin_values(self) -> tuple[float, ...]:
    """--margin as numbers (the head's default when empty); () for softmax and rescaled."""
    if self.head in ("softmax", "rescaled_margin"):
      return ()
    if not self.margin:
      return DEFAULT_MARGINS[self.head]
    try:
      return tuple(float(v) for v in self.margin.split(","))
    except ValueError:
      raise ConfigError(f"--margin={self.margin!r}: expected a number, or m1,m2,m3 for "
                        "--head=combined") from None

  def validate(self) -> None:
    if self.head not in HEADS:
      raise ConfigError(f"--head={self.head!r}: expected one of {', '.join(HEADS)}")
    if self.margin_scale != "auto":
      try:
        scale = float(self.margin_scale)
      except ValueError:
        scale = float("nan")
      if not 0 < scale < 1e4:
        raise ConfigError(f"--margin_scale={self.margin_scale!r}: expected a number in (0, 1e4) "
                          "or 'auto' (sqrt(2) ln(C - 1))")
    margins = self.margin_values()
    if self.margin and self.head in ("softmax", "rescaled_margin"):
      raise ConfigError(f"--margin={self.margin!r} has no meaning for --head={self.head}"
                        + (" (use --rescaled_m1/m2/m3)" if self.head == "rescaled_margin" else ""))
    expected = 3 if self.head == "combined" else 1
    if margins and len(margins) != expected:
      raise ConfigError(f"--margin={self.margin!r}: --head={self.head} takes "
                        f"{'m1,m2,m3' if expected == 3 else 'one margin m'}")
    if self.head in ("cosface", "arcface", "arcnegface") and not 0 <= margins[0] < math.pi / 2:
      raise ConfigError(f"--margin={margins[0]} for --head={self.head} must be in [0, pi/2)")
    if self.head == "sphereface" and (margins[0] != int(margins[0]) or not 1 <= margins[0] <= 8):
      raise ConfigError(f"--margin={margins[0]} for --head=sphereface must be an integer "
                        "in [1, 8] (the angle multiplier; paper: 4)")
    if self.head == "combined" and not (margins[0] > 0 and margins[1] >= 0 and margins[2] >= 0):
      raise ConfigError(f"--margin={self.margin} for --head=combined: need m1 > 0, m2 >= 0, "
                        "m3 >= 0")
    if self.rescaled_s_pos <= 0 or self.rescaled_s_neg <= 0:
      raise ConfigError("--rescaled_s_pos and --rescaled_s_neg must be positive")
    if self.arcnegface_sigma <= 0:
      raise ConfigError(f"--arcnegface_sigma={self.arcnegface_sigma} must be positive")

  def changed_flags(self, other: "HeadConfig") -> list[str]:
    """The flags (= field names) whose values differ from `other`'s."""
    return [f.name for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)]


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Verification / identification protocol settings."""
  flip_test: bool = True
  far: float = 1e-3
  pca_components: int = 64
  batch_size: int = 256
  protocol: str = "exact"  # exact (ours) | insightface | both (verification.PROTOCOLS)
  eval_every: int = 1  # fixed training: verify every pair set every N epochs; 0 = at the end
  best_pairs: str = ""  # the pair set whose accuracy picks RUN_DIR/best/; "" = the primary
  checkpoint: str = "latest"  # eval/export: latest | best (RUN_DIR/best/)


QUALITY_NETS = ("qan", "qanpp")
AGGREGATIONS = ("mean", "best", "qan", "qanpp")


@dataclasses.dataclass(frozen=True)
class SetConfig:
  """Set-based recognition (--mode=quality, --aggregation): where the sets come from, how they
  are split and paired, and how a quality network is trained on a frozen embedder."""
  sets: str = "synthetic"  # synthetic | folder:DIR | tfrecord:DIR (data/frame_sets.py)
  set_size: int = 8  # frames per set (synthetic videos, images cut into sets)
  synthetic_identities: int = 60
  videos_per_identity: int = 5
  degraded_fraction: float = 0.3  # synthetic: always; real sets: degrade this fraction if > 0
  heldout: str = ""  # an LFW pairs file: its people are the held-out identities
  heldout_fraction: float = 0.5
  num_pairs: int = 600
  quality_net: str = "qanpp"  # --mode=quality: qan | qanpp
  aggregation: tuple[str, ...] = ()  # --mode=eval: mean,best,qan,qanpp; --mode=export: one
  quality_epochs: int = 5
  quality_steps_per_epoch: int = 50
  quality_lr: float = 1e-3
  quality_identities_per_batch: int = 16  # P identities x 2 sets per step
  quality_frames_per_set: int = 4  # frames drawn from each set per step
  quality_scale: float = 32.0  # s of the set contrastive loss
  seed: int = -1  # sets, their split and pairs, quality training; -1 = the run's data seed

  def resolved_seed(self, data_seed: int) -> int:
    return data_seed if self.seed < 0 else self.seed

  def validate(self) -> None:
    if self.set_size < 1:
      raise ConfigError(f"--set_size={self.set_size} must be >= 1")
    if not 0.0 <= self.degraded_fraction <= 1.0:
      raise ConfigError(f"--set_degraded_fraction={self.degraded_fraction} must be in [0, 1]")
    if not 0.0 < self.heldout_fraction < 1.0:
      raise ConfigError(f"--set_heldout_fraction={self.heldout_fraction} must be in (0, 1)")
    if self.heldout and not os.path.isfile(self.heldout):
      raise ConfigError(f"--set_heldout={self.heldout}: no such file")
    if self.quality_net not in QUALITY_NETS:
      raise ConfigError(f"--quality_net={self.quality_net!r}: one of {', '.join(QUALITY_NETS)}")
    bad = [a for a in self.aggregation if a not in AGGREGATIONS]
    if bad:
      raise ConfigError(f"--aggregation: {bad} not in {', '.join(AGGREGATIONS)}")
    for name in ("num_pairs", "quality_epochs", "quality_steps_per_epoch", "quality_frames_per_set",
                 "synthetic_identities", "videos_per_identity"):
      if getattr(self, name) < 1:
        raise ConfigError(f"--{flag_of(SetConfig, name)}={getattr(self, name)} must be >= 1")
    if self.quality_identities_per_batch < 2:
      raise ConfigError(f"--quality_identities_per_batch={self.quality_identities_per_batch} "
                        "must be >= 2 (a batch needs different identities)")
    if self.quality_lr <= 0 or self.quality_scale <= 0:
      raise ConfigError("--quality_lr and --quality_scale must be positive")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """ENAS search (Zhu 2019 Algorithm 1): child epochs alternating with controller steps."""
  epochs: int = 100
  controller: str = "enas"  # enas | random | evolution | local_search
  evolution_population: int = 16
  evolution_tournament: int = 4
  cost_band_low: float = 0.0  # samples' cost in [b T, T]; 0 = no band
  controller_steps: int = 50
  controller_samples: int = 10
  controller_hidden: int = 100
  controller_optimizer: str = "sgd"
  controller_lr: float = 0.1
  controller_lr_min: float = 1e-4
  controller_lr_decay_epochs: int = 20
  controller_temperature: float = 0.0
  controller_tanh_constant: float = 0.0
  entropy_weight: float = 1e-4
  baseline_decay: float = 0.99
  skip_target: float = 0.4
  skip_weight: float = 0.8
  grad_clip_norm: float = 5.0
  # TuNAS's warm-up (search/warmup.py): no policy step in the first floor(f * epochs) epochs,
  # and the one-shot training samples widened with probability p0 (1 - t/T) meanwhile.
  controller_warmup_fraction: float = 0.0
  path_dropout_warmup: float = 0.0
  reward: str = "paper"
  cost_model: str = "measured"  # measured | lut | tflite | flops | params (enas_face.costs)
  cost_target: float = DEFAULT_TARGET_MS  # T in the cost model's unit (ms, FLOPs or params)
  cost_exponent: float = -0.07
  cost_penalty: float = 0.05  # lambda of the two_sided reward
  cost_table: str = ""  # the lut cost model's table
  latency_warmup: int = 5
  latency_repeats: int = 20
  val_batch_size: int = 128
  num_final_samples: int = 20
  num_ranked: int = 10
  latency_cache: str = ""  # JSONL of measured latencies; default RUN_DIR/latency_cache.jsonl
  strategy: str = ONE_SHOT  # SEARCH_STRATEGIES
  shared_update: str = "all"  # SHARED_UPDATES: one_shot training of the shared child
  reward_metric: str = "classification"  # classification | verification | verification_auc
  reward_batches: int = 1  # classification minibatches per reward; 0 = the whole split
  reward_identities: int = 0  # training identities held out for verification rewards
  reward_pairs: int = 600
  trial_epochs: int = 2  # multi_trial: epochs of each sample's training from scratch
  halving_eta: int = 0  # multi_trial: successive halving over epochs per controller step; 0 = off
  trial_workers: int = 1  # multi_trial: trials trained side by side (Ray) when > 1
  ray_address: str = ""  # multi_trial: a Ray cluster to run the trials on ("" = local)
  trial_gpus: float = 0.0  # GPUs each Ray trial asks for (a cluster's GPU nodes)
  cleaning_proxy_epochs: int = 3  # epochs of the proxy model whose embeddings clean the data
  # The differentiable width/depth search (differentiable.py; TAS, METHODS.md §4).
  arch_lr: float = 1e-3  # Adam on the distributions' logits
  arch_weight_decay: float = 1e-3
  flops_loss_weight: float = 2.0  # lambda_F
  flops_tolerance: float = 0.05
  tau_max: float = 5.0  # Gumbel temperature, cosine from tau_max to tau_min
  tau_min: float = 0.1

  def validate(self) -> None:
    if self.shared_update not in SHARED_UPDATES:
      raise ConfigError(f"--shared_update={self.shared_update!r}; expected one of "
                        f"{', '.join(SHARED_UPDATES)}")
    if self.shared_update != "all" and self.strategy != ONE_SHOT:
      raise ConfigError(f"--shared_update={self.shared_update} applies to the one-shot "
                        f"search's shared child; --search_strategy={self.strategy} has none "
                        "(leave --shared_update=all)")


DISTILL_MISSING = ("error", "skip")


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  """Distillation from a trained teacher (distill.py): fixed training and the width/depth
  search. L = cross_entropy_weight (1 - kl_alpha) CE + embedding_weight (1 - cos)
  + relational_weight L_rel + kl_alpha T^2 KL."""
  # A run folder, SavedModel folder, .onnx file, dlib's model folder (through an embeddings
  # file only) or a teacher embeddings file (data/teacher_files.py); "" = no distillation.
  teacher: str = ""
  embedding_weight: float = 1.0
  kl_alpha: float = 0.0
  temperature: float = 4.0
  relational_weight: float = 0.0
  # Scales the classification term under distillation (0: the teacher's terms alone; the
  # head then never trains). Our choice, for small labelled sets where CE overfits.
  cross_entropy_weight: float = 1.0
  # An embeddings file's targets centred on their training mean before use (t - mu): a
  # teacher whose space is not centred (dlib: cos 0.83 between random faces) otherwise
  # teaches mostly its mean direction. Our choice.
  centre_targets: bool = True
  # An embeddings file without some training images: "error", or "skip" (they train without
  # the distillation terms).
  missing: str = "error"
  # An ONNX teacher's float input is fed (x - input_mean) / input_std, x in [0, 255].
  input_mean: float = 0.0
  input_std: float = 1.0

  def validate(self) -> None:
    if self.embedding_weight < 0:
      raise ConfigError(f"--distill_embedding_weight={self.embedding_weight} must be >= 0")
    if self.cross_entropy_weight < 0:
      raise ConfigError(f"--distill_ce_weight={self.cross_entropy_weight} must be >= 0")
    if self.cross_entropy_weight != 1.0 and not self.teacher:
      raise ConfigError(f"--distill_ce_weight={self.cross_entropy_weight} scales the "
                        "classification term beside a teacher's; give one with --distill_from")
    if self.relational_weight < 0:
      raise ConfigError(f"--distill_relational_weight={self.relational_weight} must be >= 0")
    if self.missing not in DISTILL_MISSING:
      raise ConfigError(f"--distill_missing={self.missing!r}: one of {', '.join(DISTILL_MISSING)}")
    if self.input_std <= 0:
      raise ConfigError(f"--teacher_input_std={self.input_std} must be positive")
    if not 0 <= self.kl_alpha < 1:
      raise ConfigError(f"--distill_kl_alpha={self.kl_alpha} must be in [0, 1)")
    if self.temperature <= 0:
      raise ConfigError(f"--distill_temperature={self.temperature} must be positive")


# --mode=embed|verify|identify: a trained or exported model applied to photos (recognition/).
PHOTO_MODES = ("embed", "verify", "identify")
PHOTO_OUTPUTS = ("table", "jsonl")


@dataclasses.dataclass(frozen=True)
class PhotoConfig:
  """--mode=embed|verify|identify: which model, which photos, which people, how to decide.
  The face detection fields are --align=online's flags (DataConfig's names), so photos are
  aligned as training images were."""
  mode: str
  model_path: str  # a run folder, a SavedModel folder, a .tflite or an .onnx file
  photos: tuple[str, ...]  # files, or folders searched for image files
  gallery_dir: str = ""  # identify: ROOT/<person>/<image>, enrolled before identifying
  gallery_file: str = ""  # the enrolled embeddings; "" = GALLERY_DIR/enas_face_gallery.jsonl
  threshold: str = "best_accuracy"  # a name in the model's thresholds.json, or a cosine
  identify_top_k: int = 1
  output: str = "table"  # PHOTO_OUTPUTS
  face_policy: str = "largest_central"
  min_face_confidence: float = 0.9
  detect_padding: float = 0.2
  on_no_face: str = "reject"
  detect_retries: str = DataConfig.detect_retries

  def aligner_options(self) -> dict[str, Any]:
    """data.align.FaceAligner's arguments from the detection flags."""
    return {"policy": self.face_policy, "min_confidence": self.min_face_confidence,
            "detect_padding": self.detect_padding, "on_no_face": self.on_no_face,
            "detect_retries": self.detect_retries}


# Section -> {field: its flag} where the names differ; every other field's flag is its name.
FLAG_RENAMES: dict[type, dict[str, str]] = {
    DataConfig: {"seed": "data_seed"},  # -1: --seed (flags.config_from_flags resolves it)
    EvalConfig: {"batch_size": "eval_batch_size"},
    SetConfig: {"synthetic_identities": "set_synthetic_identities",
                "videos_per_identity": "set_videos_per_identity",
                "degraded_fraction": "set_degraded_fraction", "heldout": "set_heldout",
                "heldout_fraction": "set_heldout_fraction", "num_pairs": "set_pairs",
                "seed": "set_seed"},
    SearchConfig: {"epochs": "search_epochs", "grad_clip_norm": "controller_grad_clip",
                   "val_batch_size": "search_val_batch_size", "strategy": "search_strategy",
                   "tau_max": "gumbel_tau_max", "tau_min": "gumbel_tau_min"},
    DistillConfig: {"teacher": "distill_from", "embedding_weight": "distill_embedding_weight",
                    "kl_alpha": "distill_kl_alpha", "temperature": "distill_temperature",
                    "relational_weight": "distill_relational_weight",
                    "cross_entropy_weight": "distill_ce_weight",
                    "centre_targets": "distill_centre_targets",
                    "missing": "distill_missing", "input_mean": "teacher_input_mean",
                    "input_std": "teacher_input_std"},
}


def flag_of(section: type, field: str) -> str:
  """The flag (without --) that sets `field` of the config class `section`."""
  return FLAG_RENAMES.get(section, {}).get(field, field)


# Fields renamed since older run folders wrote their config.json: old -> new.
SEARCH_RENAMES = {"target_latency_ms": "cost_target", "latency_exponent": "cost_exponent"}
RUN_RENAMES = {"strategy": "distribution_strategy"}


def _renamed(fields: dict, renames: dict) -> dict:
  return {renames.get(key, key): value for key, value in fields.items()}


@dataclasses.dataclass(frozen=True)
class RunConfig:
  mode: str
  run_dir: str
  arc: Any  # a sample of model.search_space (an enas_macro.Architecture by default)
  model: ModelConfig
  data: DataConfig
  train: TrainConfig
  eval: EvalConfig
  search: SearchConfig = SearchConfig()
  head: HeadConfig = HeadConfig()
  sets: SetConfig = SetConfig()  # set-based recognition (this invocation's, never saved state)
  distill: DistillConfig = DistillConfig()
  export_dir: str = ""
  export_format: tuple[str, ...] = ("saved_model",)  # a subset of EXPORT_FORMATS, in order
  top_k: int = 1
  candidate_arcs: tuple = ()  # ranked architectures (from a search) to train, best first
  # Where and how it runs (not part of the network: a run may resume under another strategy).
  distribution_strategy: str = "default"  # DISTRIBUTION_STRATEGIES
  num_replicas: int = 0
  deterministic: bool = False

  @property
  def resolved_export_dir(self) -> str:
    return self.export_dir or os.path.join(self.run_dir, runlog.SAVED_MODEL_DIR)

  def to_json(self, sample_to_json: Callable[[Any], Any]) -> dict[str, Any]:
    """The config as JSON; its samples (arc, candidate_arcs) through `sample_to_json`, their
    space's codec (spaces.config_to_json passes it: the config knows no space)."""
    out = dataclasses.asdict(dataclasses.replace(self, arc=None, candidate_arcs=()))
    out["arc"] = sample_to_json(self.arc)
    out["candidate_arcs"] = [sample_to_json(a) for a in self.candidate_arcs]
    return out

  @classmethod
  def from_json(cls, obj: dict[str, Any],
                sample_from_json: Callable[[Any, ModelConfig], Any]) -> "RunConfig":
    """Inverse of to_json: `sample_from_json(obj, model_config)` reads a sample (of
    model_config.search_space); ConfigError when `obj` is not a RunConfig."""
    obj = _renamed(obj, RUN_RENAMES)
    try:
      model = ModelConfig(**obj["model"])
      return cls(mode=obj["mode"], run_dir=obj["run_dir"],
                 arc=sample_from_json(obj["arc"], model),
                 model=model, data=DataConfig(**obj["data"]),
                 train=TrainConfig(**obj["train"]), eval=EvalConfig(**obj["eval"]),
                 search=SearchConfig(**_renamed(obj.get("search", {}), SEARCH_RENAMES)),
                 head=HeadConfig(**obj.get("head", {})),
                 distill=DistillConfig(**obj.get("distill", {})),
                 sets=SetConfig(**{k: tuple(v) if k == "aggregation" else v
                                   for k, v in obj.get("sets", {}).items()}),
                 export_dir=obj.get("export_dir", ""),
                 export_format=tuple(obj.get("export_format", ("saved_model",))),
                 top_k=obj.get("top_k", 1),
                 distribution_strategy=obj.get("distribution_strategy", "default"),
                 num_replicas=obj.get("num_replicas", 0),
                 deterministic=obj.get("deterministic", False),
                 candidate_arcs=tuple(sample_from_json(a, model)
                                      for a in obj.get("candidate_arcs", [])))
    except (KeyError, TypeError, ValueError) as e:
      raise ConfigError(f"config JSON does not describe a RunConfig: {e}") from e
