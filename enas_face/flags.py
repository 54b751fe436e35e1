"""Every command-line flag, with help text and bounds, and `config_from_flags`.

Defaults are the paper's settings (112x112, 5 search blocks, 150 epochs,
batch 128, SGD 0.1 -> 1e-4); `flags/demo.cfg` scales them down for a CPU.
This is the only module that reads absl flags; it turns them into a frozen
`config.RunConfig`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from absl import flags

from enas_face import costs
from enas_face import runlog
from enas_face import spaces
from enas_face.data import align as face_align  # no TensorFlow: numpy and OpenCV
from enas_face.data import sources
from enas_face.data import teacher_files  # no TensorFlow: numpy and runlog
from enas_face.search import rewards  # plain Python: the reward table
from enas_face.search import warmup  # numpy: the warm-up's schedules
from enas_face.spaces import enas_macro
from enas_face.spaces import mobilefacenet
from enas_face.config import (ALIGN_MODES, DEFAULT_TARGET_MS, DIFFERENTIABLE,
                              DISTILL_MISSING, DISTRIBUTION_STRATEGIES, EMBEDDING_HEADS,
                              EXPORT_FORMATS, HEADS, MULTI_TRIAL, ONE_SHOT, QUALITY_NETS,
                              SEARCH_STRATEGIES, SHARED_UPDATES, STREAM_MODES, ConfigError,
                              DataConfig, DistillConfig, EvalConfig, HeadConfig, ModelConfig,
                              PHOTO_MODES, PHOTO_OUTPUTS, PhotoConfig, RunConfig,
                              SearchConfig, SetConfig, TrainConfig, flag_of)

MODES = ("search", "fixed", "eval", "export", "quality", "evaluate_teacher", *PHOTO_MODES)
CONTROLLERS = ("enas", "categorical", "random", "evolution", "local_search")
REWARD_METRICS = ("classification", "verification", "verification_auc")

# Run.
flags.DEFINE_enum("mode", "fixed", MODES,
                  "search: ENAS search (controller + shared child), writes arcs_ranked.json; "
                  "fixed: train the architecture(s) from scratch, evaluate and export; "
                  "eval: evaluate the run's latest checkpoint; export: write its SavedModel; "
                  "quality: train a set quality network (--quality_net) on the run's frozen "
                  "embedder, on --sets; evaluate_teacher: verify --pairs with --distill_from's "
                  "embeddings (RUN_DIR/teacher_metrics.json); embed / verify / identify: apply "
                  "--model_path to --photos (docs/photos.md).")
flags.DEFINE_string("run_dir", "runs/default",
                    "Run folder: resolved flags, checkpoints, metrics.json, saved_model/. "
                    "Rerunning with the same folder resumes.")
flags.DEFINE_string("search_space", "enas_macro", "Registered search space (" +
                    ", ".join(spaces.names()) + "): what --arc, --arc_file and a search's "
                    "samples describe.")
flags.DEFINE_alias("model", "search_space")
flags.DEFINE_string("arc", None,
                    "A sample of --search_space as its integer encoding. enas_macro: per layer "
                    f"the op id ({', '.join(f'{i}={n}' for i, n in enumerate(enas_macro.OPS))}) "
                    "then one skip bit per earlier layer, e.g. '0 1 0 0 1 0'. Default: the "
                    "space's default (enas_macro: a hand-picked architecture of --num_layers "
                    "layers).")
flags.DEFINE_string("arc_file", None, "Sample JSON file: one sample, a list, or a search's "
                    "arcs_ranked.json (then --top_k of them are trained).")
flags.DEFINE_integer("top_k", 1, "With --mode=fixed and a ranked --arc_file: train the best k "
                     "from scratch (paper: 3), each in RUN_DIR/topK, and compare them.",
                     lower_bound=1)
flags.DEFINE_string("export_dir", "", "Export folder: the SavedModel and the TFLite files of "
                    "--export_format; default RUN_DIR/saved_model.")
flags.DEFINE_list("export_format", ["saved_model"],
                  "What --mode=export and the end of --mode=fixed write into --export_dir, "
                  "comma-separated: saved_model (the SavedModel), tflite (model.tflite, "
                  "float32), tflite_fp16 (model_fp16.tflite, float16 weights), tflite_int8 "
                  "(model_int8.tflite, full-integer, calibrated on 100 training images), onnx "
                  "(model.onnx; needs the onnx extra). Each file is checked against the "
                  "SavedModel on the run's pair images; the figures go to a .json beside it.")
flags.DEFINE_integer("seed", 0, "Seed of data generation, shuffling, augmentation and init.")
flags.DEFINE_integer("data_seed", -1, "Seed of the data alone (synthetic faces, splits, pairs); "
                     "-1: --seed. Set it to vary training seeds on the same data.", lower_bound=-1)
flags.DEFINE_boolean("deterministic", False,
                     "TensorFlow op determinism (tf.config.experimental.enable_op_determinism): "
                     "two runs with the same flags give the same architectures and losses. "
                     "Measured latency is the one input that varies: share --latency_cache "
                     "(or use --reward=accuracy) for identical rewards. Slower.")
flags.DEFINE_enum("distribution_strategy", "default", DISTRIBUTION_STRATEGIES,
                  "Where training runs (tf.distribute; --search_strategy is how a search scores "
                  "its samples): default: one device; mirrored: all local GPUs (or "
                  "--num_replicas logical CPU devices); multi_worker: "
                  "MultiWorkerMirroredStrategy from TF_CONFIG.")
flags.DEFINE_alias("strategy", "distribution_strategy")  # its name until the flags were renamed
flags.DEFINE_integer("num_replicas", 0, "mirrored: GPUs to use (0 = all), or, without GPUs, "
                     "logical CPU devices; multi_worker: logical CPU devices per worker.",
                     lower_bound=0, upper_bound=64)

# Data.
flags.DEFINE_string("dataset", "synthetic",
                    "Training data: 'synthetic' (embedded generator); 'folder:DIR' (one subfolder "
                    "of images per identity); 'tfrecord:DIR' (aligned shards written by "
                    "tools/align_dataset.py); 'insightface:DIR' (train.rec + train.idx, read "
                    "without MXNet).")
flags.DEFINE_string("pairs", "", "Verification pairs: 'lfw:PAIRS_TXT,IMAGES_DIR' (LFW pairs "
                    "format; IMAGES_DIR holds <Name>/<Name>_NNNN.jpg or is an aligned TFRecord "
                    "folder) or 'bin:FILE.bin' (insightface). Empty: pairs from identities held "
                    "out of --dataset (--heldout_fraction).")
flags.DEFINE_enum("align", "none", ALIGN_MODES,
                  "none: images are aligned faces already (resized, centre-cropped to square); "
                  "online: MTCNN five-point alignment in the tf.data pipeline, cached.")
flags.DEFINE_enum("face_policy", "largest_central",
                  ("largest_central", "largest", "central", "confident"),
                  "Which face to align when an image holds several (--align=online).")
flags.DEFINE_float("min_face_confidence", 0.9, "MTCNN detections below this are ignored.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("min_images_per_identity", 3, "Real data: identities with fewer images "
                     "are not trained on (each needs train, val and test images).",
                     lower_bound=1)
flags.DEFINE_float("heldout_fraction", 0.1, "Real data without --pairs: fraction of identities "
                   "held out of training for the verification pairs.", lower_bound=0.0,
                   upper_bound=0.9)
flags.DEFINE_boolean("exclude_pair_identities", True, "With --pairs=lfw:..., never train on an "
                     "identity named in the pairs file (the LFW protocol).")
flags.DEFINE_string("unlabelled", "", "Images without identity labels that only the "
                    "distillation terms see (needs --distill_from; --mode=fixed): a comma-"
                    "separated list of small_identities (the --dataset's identities with fewer "
                    "than --min_images_per_identity images), folder:DIR (face images at any "
                    "depth; a first-level subfolder names the person), tfrecord:DIR (aligned "
                    "records). Never an image of a person named by --pairs or held out for "
                    "pairs, nor one whose pixels are a pair's or a labelled image's.")
flags.DEFINE_integer("unlabelled_batch_size", 0, "With --unlabelled: unlabelled images in each "
                     "training step beside the --batch_size labelled ones (0 = --batch_size).",
                     lower_bound=0)
flags.DEFINE_enum("stream", "auto", STREAM_MODES, "tfrecord:/insightface: data: 'always' streams "
                  "the training split from disk (bounded memory), 'never' decodes it into memory; "
                  "'auto' streams when the decoded training images would exceed "
                  "--stream_memory_gb.")
flags.DEFINE_float("stream_memory_gb", 4.0, "--stream=auto: the decoded size above which the "
                   "training split streams.", lower_bound=0.0)
flags.DEFINE_integer("shuffle_buffer", 10000, "Streamed training: encoded records in the shuffle "
                     "buffer (memory ~ buffer x encoded image size).", lower_bound=1)
flags.DEFINE_integer("stream_eval_images", 5000, "Streamed data: about this many images each in "
                     "the val split, the test split and the in-memory sample of the training "
                     "split (statistics, identification gallery); at most 10 %% each.",
                     lower_bound=10)
flags.DEFINE_integer("max_image_pixels", 50_000_000, "Images with more pixels are rejected "
                     "(reported), not decoded.", lower_bound=1)
flags.DEFINE_string("cache_dir", "", "Cache of faces aligned with --align=online (MTCNN "
                    "runs once per file and setting); default RUN_DIR/data_cache.")
flags.DEFINE_float("detect_padding", DataConfig.detect_padding, "--align=online: an image "
                   "without a face is searched again padded by this fraction of its longer "
                   "side (0 = off); finds faces that fill the frame.", lower_bound=0.0, upper_bound=2.0)
flags.DEFINE_string("detect_retries", DataConfig.detect_retries, "--align=online: what the "
                    "detector tries, in this order, after the image as it is finds no usable "
                    "face: comma-separated rungs of pad (padded by --detect_padding), more_pad "
                    "(padded more), low_confidence (lower MTCNN thresholds), onet (MTCNN's last "
                    "stage on the whole image as the face box); 'none': no retry. Then "
                    "--on_no_face.")
flags.DEFINE_enum("on_no_face", "reject", ("reject", "center"), "--align=online: an image "
                  "without a usable face is rejected, or kept as its centred square resize "
                  "(counted as a fallback in the data report).")
# Photos: --mode=embed|verify|identify (recognition/; docs/photos.md).
flags.DEFINE_string("model_path", "", "--mode=embed|verify|identify: the model, a run folder "
                    "(its latest checkpoint), a SavedModel folder, a .tflite or an .onnx file; "
                    "its thresholds come from the thresholds.json of its export.")
flags.DEFINE_list("photos", [], "--mode=embed|verify|identify: image files, or folders searched "
                  "(recursively) for image files; verify takes exactly two.")
flags.DEFINE_string("gallery_dir", "", "--mode=identify: the people, one subfolder each "
                    "(GALLERY_DIR/<name>/<image>); images not yet in --gallery_file are enrolled "
                    "first.")
flags.DEFINE_string("gallery_file", "", "--mode=identify: the enrolled embeddings (JSON lines, "
                    "resumable, bound to one model); default GALLERY_DIR/enas_face_gallery.jsonl.")
flags.DEFINE_string("threshold", "best_accuracy", "--mode=verify|identify: same person iff "
                    "cosine > threshold: a name in the model's thresholds.json (best_accuracy, "
                    "far_1e-3, far_1e-4) or a number in [-1, 1].")
flags.DEFINE_integer("identify_top_k", 1, "--mode=identify: candidates listed per face.",
                     lower_bound=1)
flags.DEFINE_enum("output", "table", PHOTO_OUTPUTS, "--mode=embed|verify|identify: a readable "
                  "table, or one JSON object per line (embed: with the embeddings).")
flags.DEFINE_integer("image_size", 112, "Input height = width in pixels.", lower_bound=8,
                     upper_bound=1024)
flags.DEFINE_integer("synthetic_identities", 100, "Synthetic training identities.", lower_bound=2)
flags.DEFINE_integer("synthetic_images_per_identity", 30,
                     "Images per training identity (split 8:1:1 train/val/test).", lower_bound=3)
flags.DEFINE_integer("synthetic_heldout_identities", 50,
                     "Identities never trained on, used for the verification pairs.", lower_bound=2)
flags.DEFINE_integer("synthetic_heldout_images_per_identity", 10,
                     "Images per held-out identity.", lower_bound=2)
flags.DEFINE_float("label_noise", 0.0, "Any dataset: this fraction of the training images gets "
                   "a wrong identity, drawn uniformly from the others (seeded by --data_seed; "
                   "the truth in RUN_DIR/data_report.json: label_noise). For measuring a "
                   "cleaning's precision and recall; 0 = off.", lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_float("synthetic_label_noise", 0.0, "Fraction of the synthetic training images "
                   "given a wrong identity (the training split only: held-out pairs stay "
                   "clean; seeded by the data seed).", lower_bound=0.0, upper_bound=0.95)
flags.DEFINE_float("synthetic_outliers", 0.0, "Fraction of the synthetic training images "
                   "replaced by non-faces or destroyed faces of other people, labels kept (the "
                   "training split only: held-out pairs stay clean; seeded by the data seed).",
                   lower_bound=0.0, upper_bound=0.95)
flags.DEFINE_integer("synthetic_near_duplicates", 0, "Synthetic training identities drawn as "
                     "slightly perturbed copies of other training identities, at most half of "
                     "--synthetic_identities (training identities only: held-out pairs stay "
                     "clean; seeded by the data seed).", lower_bound=0)
flags.DEFINE_integer("num_pairs", 600, "Verification pairs (half same, half different).",
                     lower_bound=2)
flags.DEFINE_integer("num_folds", 10, "Verification folds (LFW protocol: 10).", lower_bound=2)
flags.DEFINE_boolean("random_flip", True, "Random horizontal flip in training.")
flags.DEFINE_integer("pad_pixels", 4, "Pad-then-random-crop margin at 112x112 (paper: 4, i.e. "
                     "pad to 120, crop 112); scaled with --image_size.", lower_bound=0)
flags.DEFINE_integer("cutout_size", 16, "Cutout square side at 112x112 (paper: 16); scaled with "
                     "--image_size; 0 disables.", lower_bound=0)

# Model.
flags.DEFINE_integer("num_layers", 5, "Search layers (paper: 5 search blocks).", lower_bound=1,
                     upper_bound=24)
flags.DEFINE_integer("num_reductions", 3, "Factorized reductions (each halves H, W and doubles "
                     "channels); paper: after each of the first three blocks.", lower_bound=0,
                     upper_bound=8)
flags.DEFINE_integer("base_filters", 32, "Channels of the stem and the first stage.",
                     lower_bound=2)
flags.DEFINE_integer("stem_stride", 1, "Stride of the stem conv (2 makes 112x112 ~4x cheaper).",
                     lower_bound=1, upper_bound=4)
flags.DEFINE_integer("embedding_dim", 512, "Face embedding size.", lower_bound=2)
flags.DEFINE_float("width_multiplier", 1.0, "--search_space=mobilefacenet: every channel count "
                   "scaled by this (the default sample is MobileFaceNet at this width; the "
                   "width/depth supernet's widest choice).", lower_bound=0.01)
flags.DEFINE_enum("embedding_head", "gdc", EMBEDDING_HEADS,
                  "Feature map -> embedding: global depthwise conv, global average pool, flatten.")
flags.DEFINE_float("embedding_dropout", 0.0, "Dropout before the embedding layer.",
                   lower_bound=0.0, upper_bound=0.95)
flags.DEFINE_float("dropblock_keep_prob", 0.9, "DropBlock keep probability after the last block "
                   "(1 disables).", lower_bound=0.05, upper_bound=1.0)
flags.DEFINE_integer("dropblock_size", 3, "DropBlock block side.", lower_bound=1)

# Training.
flags.DEFINE_integer("epochs", 150, "Training epochs (paper fixed training: 150).", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Global training batch size.", lower_bound=1)
flags.DEFINE_float("lr_max", 0.1, "Peak learning rate (after warmup).", lower_bound=0.0)
flags.DEFINE_float("lr_min", 1e-4, "Learning rate at the end of each cosine period.",
                   lower_bound=0.0)
flags.DEFINE_integer("warmup_epochs", 20, "Linear warmup 0 -> lr_max.", lower_bound=0)
flags.DEFINE_integer("cosine_period_epochs", 0,
                     "Eq. 6 period T_0 in epochs for warm restarts; 0 = one period to the end.",
                     lower_bound=0)
flags.DEFINE_float("cosine_period_mult", 1.0, "Growth of each restart period (T_i = T_0 m^i).",
                   lower_bound=1.0)
flags.DEFINE_float("momentum", 0.9, "SGD momentum.", lower_bound=0.0, upper_bound=0.999)
flags.DEFINE_float("weight_decay", 1e-4, "Decoupled weight decay on all trainable weights.",
                   lower_bound=0.0)
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing of the cross-entropy.",
                   lower_bound=0.0, upper_bound=0.5)
flags.DEFINE_string("init_checkpoint", "", "A run folder (its latest checkpoint) or a checkpoint "
                    "prefix whose child weights start --mode=fixed and every multi-trial trial "
                    "(modules with the same keys; the rest, the head and the optimiser start "
                    "fresh). Empty: from scratch.")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept in RUN_DIR/checkpoints.",
                     lower_bound=1)

# Head and loss (enas_face/models/heads.py; ../shared/METHODS.md §1-§3 for the formulas).
flags.DEFINE_enum("head", "softmax", HEADS,
                  "Classifier and loss: softmax (e W + b, Zhu 2019 Eq. 1); cosface s(c_y - m); "
                  "arcface s cos(theta_y + m); sphereface (A-Softmax, lambda-annealed); combined "
                  "s(cos(m1 theta_y + m2) - m3); arcnegface (Efficient PolyFace); "
                  "rescaled_margin (the comprehensive search's s_pos/s_neg family).")
flags.DEFINE_string("margin_scale", "64", "Scale s of the normalised heads (literature: 64; "
                    "30-32 for small sets), or 'auto' = sqrt(2) ln(C - 1) (AdaCos's fixed scale "
                    "for C training classes).")
flags.DEFINE_string("margin", "", "Margin m (cosface 0.35, arcface/arcnegface 0.5, sphereface "
                    "the integer multiplier 4), or m1,m2,m3 for --head=combined (1,0.3,0.2). "
                    "Empty: the head's literature default.")
flags.DEFINE_boolean("arcface_easy_margin", False, "ArcFace: cos(theta + m) only where "
                     "cos theta > 0, else cos theta (default: insightface's fallback "
                     "cos theta - m sin m past theta + m > pi).")
flags.DEFINE_float("arcnegface_alpha", 1.2, "ArcNegFace: peak weight alpha of the hard "
                   "negatives (paper code: 1.2; 1 with a huge sigma = ArcFace).", lower_bound=0.0,
                   upper_bound=10.0)
flags.DEFINE_float("arcnegface_sigma", 2.0, "ArcNegFace: width sigma of the negative weighting "
                   "exp(-(c_j - a_y)^2 / sigma) (paper code: 2).", lower_bound=1e-6)
flags.DEFINE_float("rescaled_s_pos", 64.0, "rescaled_margin: scale of the target logit "
                   "(ArcFace baseline 64; best found by the comprehensive search 40).",
                   lower_bound=1e-3, upper_bound=1e4)
flags.DEFINE_float("rescaled_s_neg", 64.0, "rescaled_margin: scale of the other logits "
                   "(baseline 64; best found 48).", lower_bound=1e-3, upper_bound=1e4)
flags.DEFINE_float("rescaled_m1", 1.0, "rescaled_margin: angle multiplier m1 (best found 1.15).",
                   lower_bound=0.0, upper_bound=4.0)
flags.DEFINE_float("rescaled_m2", 0.5, "rescaled_margin: additive angular margin m2 (best "
                   "found 0.22).", lower_bound=0.0, upper_bound=1.5)
flags.DEFINE_float("rescaled_m3", 0.0, "rescaled_margin: additive cosine margin m3.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("rescaled_clip_thresh", 1.0, "rescaled_margin: a target cosine above this "
                   "is replaced by --rescaled_clip_value (1 = off; our default).",
                   lower_bound=-1.0, upper_bound=1.0)
flags.DEFINE_float("rescaled_clip_value", 1.0, "rescaled_margin: the value a clipped target "
                   "cosine takes.", lower_bound=-1.0, upper_bound=1.0)
flags.DEFINE_float("sphereface_lambda_base", 1000.0, "SphereFace annealing: lambda = max(min, "
                   "base (1 + gamma t)^-power) at iteration t (paper code: 1000).",
                   lower_bound=0.0)
flags.DEFINE_float("sphereface_lambda_gamma", 0.12, "SphereFace annealing gamma (paper code: "
                   "0.12).", lower_bound=0.0)
flags.DEFINE_float("sphereface_lambda_power", 1.0, "SphereFace annealing power (paper code: 1).",
                   lower_bound=0.0)
flags.DEFINE_float("sphereface_lambda_min", 5.0, "SphereFace annealing floor (paper code: 5).",
                   lower_bound=0.0)
flags.DEFINE_float("regularface_weight", 0.0, "Weight of RegularFace's loss on the class "
                   "weights, (1/C) sum_i max_(j != i) cos(W_i, W_j); 0 = off. Memory O(C^2).",
                   lower_bound=0.0, upper_bound=100.0)

# Search.
flags.DEFINE_integer("search_epochs", 100, "Search epochs (paper: 100).", lower_bound=1)
flags.DEFINE_enum("controller", "enas", CONTROLLERS,
                  "enas: LSTM controller trained by REINFORCE; categorical: TuNAS's independent "
                  "softmax per decision (Bender et al. 2020), trained by the same REINFORCE "
                  "(moving-average baseline, --controller_optimizer); random: uniform sampling "
                  "with the same budget (the random-search baseline); evolution: regularized "
                  "evolution (Real et al. 2019); local_search: mutate the best so far (White et "
                  "al. 2020). evolution and local_search are told each sample's reward "
                  "(search/proposers.py).")
flags.DEFINE_integer("evolution_population", 16, "--controller=evolution: the ageing "
                     "population P (the last P samples told; the first P asks are random).",
                     lower_bound=1)
flags.DEFINE_integer("evolution_tournament", 4, "--controller=evolution: tournament size S "
                     "(the best of S population members drawn is mutated); S <= P.",
                     lower_bound=1)
flags.DEFINE_float("cost_band_low", 0.0, "Sample only architectures whose cost lies in the "
                   "band [b T, T] (T = --cost_target): random, evolution and local_search "
                   "reject or repair samples outside it. 0 = no band. Needs a cheap "
                   "--cost_model (flops, params or lut).", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("controller_steps", 50, "Controller steps S per epoch.", lower_bound=1)
flags.DEFINE_integer("controller_samples", 10, "Architectures Q per controller step, each "
                     "rewarded on its own validation minibatch.", lower_bound=1)
flags.DEFINE_integer("controller_hidden", 100, "LSTM units of the controller.", lower_bound=1)
flags.DEFINE_enum("controller_optimizer", "sgd", ("sgd", "adam"),
                  "Controller optimiser: plain SGD (paper) or Adam (original ENAS).")
flags.DEFINE_float("controller_lr", 0.1, "Controller learning rate at the start.", lower_bound=0.0)
flags.DEFINE_float("controller_lr_min", 1e-4, "Controller learning-rate floor.", lower_bound=0.0)
flags.DEFINE_integer("controller_lr_decay_epochs", 20, "Controller lr x0.1 every this many "
                     "epochs (paper: 20).", lower_bound=1)
flags.DEFINE_float("controller_temperature", 0.0, "Logits / temperature before sampling "
                   "(0 = off).", lower_bound=0.0)
flags.DEFINE_float("controller_tanh_constant", 0.0, "Logits -> c * tanh(logits) (0 = off; "
                   "ENAS used 1.5 or 2.5).", lower_bound=0.0)
flags.DEFINE_float("entropy_weight", 1e-4, "Entropy bonus added to the reward.", lower_bound=0.0)
flags.DEFINE_float("baseline_decay", 0.99, "Moving-average decay of the REINFORCE baseline.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("skip_target", 0.4, "Target skip probability of the KL penalty.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("skip_weight", 0.8, "Weight of the skip-density KL penalty.", lower_bound=0.0)
flags.DEFINE_float("controller_grad_clip", 5.0, "Global-norm clip of controller gradients.",
                   lower_bound=0.0)
flags.DEFINE_float("controller_warmup_fraction", 0.0, "Search (one_shot, multi_trial): no "
                   "controller updates in the first floor(f * --search_epochs) epochs: the "
                   "policy stays uniform, its baseline still averages the rewards (TuNAS: "
                   "0.25). 0 = updates from the first epoch.", lower_bound=0.0, upper_bound=0.95)
flags.DEFINE_float("path_dropout_warmup", 0.0, "one_shot: p0 of TuNAS's path dropout warm-up: "
                   "during the --controller_warmup_fraction epochs, each decision of a training "
                   "step's sample is replaced by its widest choice (all its paths: every channel, "
                   "every block) with probability p0 (1 - t/T), t the step, T the warm-up's "
                   "steps (TuNAS: 1). 0 = off. Spaces whose choices nest (mobilefacenet).",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_enum("reward", "paper", tuple(rewards.REWARDS),
                  "With c the --cost_model's cost and T --cost_target: paper: arcsin(Acc (c/T)^q); "
                  "mnasnet_soft/mnasnet_hard: Acc (c/T)^w; budget: Acc within T, Acc T/c over "
                  "it, and over-budget samples are never ranked; two_sided: Acc - lambda "
                  "|c/T - 1|; accuracy: Acc alone.")
flags.DEFINE_enum("cost_model", "measured", costs.COST_MODELS,
                  "What a sample costs: measured (batch-1 tf.function ms on this machine), lut "
                  "(a latency table's sum, --cost_table), tflite (batch-1 LiteRT ms), flops or "
                  "params (analytic counts, nothing built).")
flags.DEFINE_float("cost_target", 0.0, "Target (or budget) T of the reward in the cost model's "
                   f"unit (ms, FLOPs or params); 0 = {DEFAULT_TARGET_MS} ms for the latency "
                   "models, required for flops and params.", lower_bound=0.0)
flags.DEFINE_alias("target_latency_ms", "cost_target")
flags.DEFINE_float("cost_exponent", -0.07, "Exponent q of the cost term of paper and "
                   "mnasnet_soft (negative penalises cost over T).")
flags.DEFINE_alias("latency_exponent", "cost_exponent")
flags.DEFINE_float("cost_penalty", 0.05, "lambda of --reward=two_sided: the reward lost per "
                   "100%% deviation from --cost_target (0.05: Zhang et al. 2022).", lower_bound=0.0)
flags.DEFINE_string("cost_table", "", "Latency table of --cost_model=lut (JSON written by "
                    "tools/build_latency_table.py for the same model flags).")
flags.DEFINE_integer("latency_warmup", 5, "Untimed batch-1 inferences before timing.",
                     lower_bound=0)
flags.DEFINE_integer("latency_repeats", 20, "Timed batch-1 inferences; latency = median.",
                     lower_bound=1)
flags.DEFINE_integer("search_val_batch_size", 128, "Validation minibatch for one reward.",
                     lower_bound=1)
flags.DEFINE_enum("search_strategy", ONE_SHOT, SEARCH_STRATEGIES,
                  "one_shot: ENAS weight sharing, one sample per child minibatch, rewards with "
                  "the shared weights; multi_trial: every sample trained from scratch for "
                  "--trial_epochs, then rewarded (spaces without a shared model, and decisions "
                  "that do not change a forward pass).")
flags.DEFINE_enum("shared_update", "all", SHARED_UPDATES,
                  "one_shot: what a child training step updates. all: every weight of the "
                  "shared child (Keras SGD; candidates the step's architecture did not run get "
                  "zero gradients, yet momentum and weight decay still move them, as ENAS's L2 "
                  "did); taken: only the candidates it ran (weights, momentum, decay) and what "
                  "every architecture runs (stem, layer BNs, main-path reductions, head; in the "
                  "mobilefacenet supernet: the blocks within its depths and its widths' affine "
                  "rows, the sliced kernels as a whole); the others stay as they are, as in "
                  "PyTorch ENAS ports, and the update is cheaper.")
flags.DEFINE_float("arch_lr", 1e-3, "differentiable: Adam learning rate of the width/depth "
                   "distributions' logits (TAS: 1e-3).", lower_bound=0.0)
flags.DEFINE_float("arch_weight_decay", 1e-3, "differentiable: weight decay of the logits (TAS: "
                   "1e-3).", lower_bound=0.0)
flags.DEFINE_float("flops_loss_weight", 2.0, "differentiable: lambda_F of the FLOPs loss "
                   "(TAS: 2).", lower_bound=0.0)
flags.DEFINE_float("flops_tolerance", 0.05, "differentiable: no FLOPs loss while the argmax "
                   "architecture is within [T (1 - tol), T] (TAS: 5%%).", lower_bound=0.0,
                   upper_bound=0.99)
flags.DEFINE_float("gumbel_tau_max", 5.0, "differentiable: Gumbel-softmax temperature at the "
                   "first epoch (cosine down to --gumbel_tau_min; TAS: 5 -> 0.1).", lower_bound=0.0)
flags.DEFINE_float("gumbel_tau_min", 0.1, "differentiable: temperature at the last epoch.",
                   lower_bound=1e-3)
flags.DEFINE_string("distill_from", "", "A teacher to distil from: a run folder trained with "
                    "--mode=fixed (embedding and, with --distill_kl_alpha, logit distillation), "
                    "an exported SavedModel (uint8 images -> embeddings), an .onnx model (the "
                    "onnx extra), or a teacher embeddings .jsonl file written by "
                    "tools/teacher_embeddings.py (precomputed targets; the way dlib's model "
                    "folder teaches: the dlib extra). --mode=fixed, "
                    "--search_strategy=differentiable and --mode=evaluate_teacher; empty = no "
                    "teacher.")
flags.DEFINE_alias("teacher_run_dir", "distill_from")
flags.DEFINE_float("distill_embedding_weight", 1.0, "w_e of the embedding term "
                   "w_e (1 - cos(P e_student, e_teacher)).", lower_bound=0.0)
flags.DEFINE_float("distill_relational_weight", 0.0, "w_r of the relational term: the mean over "
                   "batch pairs i != j of (cos(e_s_i, e_s_j) - cos(e_t_i, e_t_j))^2 (after "
                   "Tung & Mori 2019; no projection); 0 = off.", lower_bound=0.0)
flags.DEFINE_float("distill_ce_weight", 1.0, "With --distill_from: the classification "
                   "(cross-entropy) term's weight, times (1 - --distill_kl_alpha); 0 = the "
                   "teacher's terms alone (the head does not train; val accuracy is then "
                   "chance).", lower_bound=0.0)
flags.DEFINE_bool("distill_centre_targets", True, "A teacher embeddings file's targets are "
                  "centred on the mean of the training images' (t - mu) before the "
                  "distillation terms normalise them: dlib's raw embeddings of two random faces "
                  "have cosine 0.83 on average, so without centring the cosine and relational "
                  "terms mostly teach that mean direction. A teacher run on the batch is used "
                  "as it is.")
flags.DEFINE_enum("distill_missing", "error", DISTILL_MISSING, "A teacher embeddings file "
                  "without some training images: error (naming the file and the count), or "
                  "skip (those images train without the distillation terms).")
flags.DEFINE_float("teacher_input_mean", 0.0, "An ONNX teacher with a float input is fed "
                   "(x - mean) / std of the pixels x in [0, 255] (insightface's models: 127.5).")
flags.DEFINE_float("teacher_input_std", 1.0, "See --teacher_input_mean (insightface: 127.5).")
flags.DEFINE_float("distill_kl_alpha", 0.0, "alpha of the logit term: (1 - alpha) CE + alpha "
                   "T^2 KL(teacher || student) (TAS retraining: 0.9; needs a teacher run with "
                   "the same identities).", lower_bound=0.0)
flags.DEFINE_float("distill_temperature", 4.0, "T of the logit term (TAS: 4).", lower_bound=1e-3)
flags.DEFINE_integer("halving_eta", 0, "multi_trial: successive halving (multi-fidelity) "
                     "within each controller step: its Q samples are trained to epoch "
                     "E / eta^2, the best 1/eta of them go on to E / eta, the best of those to "
                     "E = --trial_epochs (the same E-epoch schedule, resumed; each sample "
                     "rewarded with the score of the last epoch it reached). 0 = off; e.g. 3. "
                     "Recommended in a FLOPs band with --controller=random or local_search: "
                     "the one lever that beat random search in the face-NAS table "
                     "(docs/enas-search.md).",
                     lower_bound=0)
flags.DEFINE_integer("trial_epochs", 2, "multi_trial: epochs of each sample's training.",
                     lower_bound=1)
flags.DEFINE_integer("trial_workers", 1, "multi_trial: trials trained side by side on Ray "
                     "workers (the ray extra: pip install -e '.[ray]'); 1 = one after another "
                     "in this process.", lower_bound=1)
flags.DEFINE_string("ray_address", "", "multi_trial: the Ray cluster that runs the trials "
                    "(e.g. ray://head:10001 or auto); empty = a local Ray with --trial_workers "
                    "workers.")
flags.DEFINE_float("trial_gpus", 0.0, "multi_trial on Ray: GPUs each trial asks for (1 on a "
                   "GPU cluster: one trial per GPU).", lower_bound=0.0)
flags.DEFINE_integer("cleaning_proxy_epochs", 3, "Comprehensive/data_only search: epochs of "
                     "the proxy model (default architecture, softmax, raw data) whose embeddings "
                     "the data-cleaning decisions use.", lower_bound=1)
flags.DEFINE_string("cleaning_embeddings", "", "Embeddings of the training images that data "
                    "cleaning uses: a proxy's .npz (by image content; a search without this "
                    "flag trains one into RUN_DIR/cleaning/proxy_embeddings.npz) or a teacher "
                    "embeddings .jsonl from tools/teacher_embeddings.py (by image key: source "
                    "path or pixel hash). --mode=fixed takes it from the --arc_file a "
                    "comprehensive search wrote when not given.")
flags.DEFINE_enum("reward_metric", "classification", REWARD_METRICS,
                  "What the reward's Acc is: classification = top-1 of the head on validation "
                  "images of the training identities; verification = 10-fold accuracy (or "
                  "verification_auc = ROC AUC) on pairs of --reward_identities, held out of "
                  "training and disjoint from the evaluation pairs.")
flags.DEFINE_integer("reward_batches", 1, "classification rewards: validation minibatches of "
                     "--search_val_batch_size per reward (0 = the whole validation split).",
                     lower_bound=0)
flags.DEFINE_integer("reward_identities", 0, "Search: training identities held out (all their "
                     "images) to make the verification reward's pairs; 0 = none (needed by "
                     "--reward_metric=verification).", lower_bound=0)
flags.DEFINE_integer("reward_pairs", 600, "Pairs of the reward identities (a multiple of 2 * "
                     "--num_folds).", lower_bound=2)
flags.DEFINE_integer("num_final_samples", 20, "Architectures sampled after the search and "
                     "ranked on the whole validation split.", lower_bound=1)
flags.DEFINE_integer("num_ranked", 10, "Architectures kept in arcs_ranked.json.", lower_bound=1)
flags.DEFINE_string("latency_cache", "", "JSONL file of measured latencies, reused across "
                    "searches of the same model settings on this machine; default "
                    "RUN_DIR/latency_cache.jsonl.")

# Evaluation.
flags.DEFINE_boolean("flip_test", True, "Embed e(x) + e(flip(x)) for evaluation.")
flags.DEFINE_float("far", 1e-3, "False accept rate for the TAR@FAR metric.", lower_bound=0.0,
                   upper_bound=1.0)
flags.DEFINE_enum("protocol", "exact", ("exact", "insightface", "both"),
                  "Verification protocol: exact = our 10-fold accuracy over every score "
                  "threshold (s > t on cosines); insightface = insightface's (squared distance of "
                  "unit embeddings, thresholds 0..4 step 0.01, same iff d < t, VAL@FAR); both.")
flags.DEFINE_integer("eval_every", 1, "Fixed training: verify every --pairs set every N epochs "
                     "(and after the last); 0 = only after the last.", lower_bound=0)
flags.DEFINE_string("best_pairs", "", "The --pairs set (by name: the file stem) whose "
                    "verification accuracy picks the best epoch, kept as RUN_DIR/best/; empty = "
                    "the first set.")
flags.DEFINE_enum("checkpoint", "latest", ("latest", "best"),
                  "--mode=eval/export: the run's latest checkpoint or RUN_DIR/best/.")
flags.DEFINE_integer("pca_components", 64, "Components of the pixel-PCA baseline.", lower_bound=1)
flags.DEFINE_integer("eval_batch_size", 256, "Batch size for embedding extraction.", lower_bound=1)


# Sets: set-to-set recognition with quality-aware aggregation (QAN, QAN++).
flags.DEFINE_string("sets", "synthetic", "Where sets of faces come from (--mode=quality, "
                    "--aggregation): synthetic (seeded videos with degraded frames), "
                    "folder:DIR (DIR/<person>/<video>/<frame>: a video folder is a set; "
                    "DIR/<person>/<image>: images cut into sets of --set_size), tfrecord:DIR "
                    "(an aligned folder, images cut into sets).")
flags.DEFINE_integer("set_size", 8, "Frames per set: per synthetic video, and per set cut from "
                     "a person's images.", lower_bound=1)
flags.DEFINE_integer("set_synthetic_identities", 60, "--sets=synthetic: identities (none in "
                     "the synthetic training set).", lower_bound=2)
flags.DEFINE_integer("set_videos_per_identity", 5, "--sets=synthetic: videos per identity.",
                     lower_bound=1)
flags.DEFINE_float("set_degraded_fraction", 0.3, "Fraction of each set's frames badly degraded "
                   "(blur, noise, occlusion, contrast, darkness; levels known): always for "
                   "synthetic videos; real sets only when > 0 is given for them.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_string("set_heldout", "", "An LFW pairs file whose people are the held-out "
                    "identities (set pairs are drawn there; the quality network trains on the "
                    "others); empty = a seeded --set_heldout_fraction of the identities.")
flags.DEFINE_float("set_heldout_fraction", 0.5, "Fraction of identities held out for set pairs "
                   "when --set_heldout is empty.")
flags.DEFINE_integer("set_pairs", 600, "Set pairs (half same person) for set-to-set "
                     "verification, in --num_folds folds.", lower_bound=2)
flags.DEFINE_enum("quality_net", "qanpp", QUALITY_NETS,
                  "--mode=quality: qan (a sigmoid quality branch on the frozen embedder's "
                  "features) or qanpp (QAN++: a separate small CNN, min-max normalised scores). "
                  "Trained into RUN_DIR/quality/<net>/.")
flags.DEFINE_list("aggregation", [], "--mode=eval: set-to-set verification with these poolings "
                  "(mean, best, qan, qanpp; qan/qanpp need --mode=quality first) next to the "
                  "image-level metrics; --mode=export: one of them, exported as a set SavedModel "
                  "in EXPORT_DIR/set_<aggregation>/.")
flags.DEFINE_integer("quality_epochs", 5, "--mode=quality: epochs.", lower_bound=1)
flags.DEFINE_integer("quality_steps_per_epoch", 50, "--mode=quality: steps per epoch.",
                     lower_bound=1)
flags.DEFINE_float("quality_lr", 1e-3, "--mode=quality: Adam learning rate.")
flags.DEFINE_integer("quality_identities_per_batch", 16, "--mode=quality: P identities x 2 sets "
                     "per step.", lower_bound=2)
flags.DEFINE_integer("quality_frames_per_set", 4, "--mode=quality: frames drawn from each set "
                     "per step (few frames: a bad frame moves the set, so the loss sees it).",
                     lower_bound=1)
flags.DEFINE_integer("set_seed", -1, "Seed of the sets (synthetic videos, cutting, degrading), "
                     "their identity split and pairs, and quality training; -1 = the run's "
                     "data seed.", lower_bound=-1)
flags.DEFINE_float("quality_scale", 32.0, "--mode=quality: scale s of the set contrastive loss.")

# EvalConfig fields that --mode=eval/export take from the command line when their flag is given
# there (config.flag_of); the others come from the run folder's config.json.
EVAL_OVERRIDES = ("flip_test", "far", "pca_components", "batch_size", "protocol", "checkpoint")


def own_flags(flag_values: flags.FlagValues) -> list[flags.Flag]:
  """The flags this module defines (not absl's own)."""
  return flag_values.get_flags_for_module(__name__)


def flags_as_flagfile(flag_values: flags.FlagValues) -> str:
  """The resolved flags in flagfile syntax, one per line."""
  return "\n".join(f.serialize() for f in own_flags(flag_values) if f.value is not None) + "\n"


def _samples(flag_values: flags.FlagValues, model: ModelConfig) -> list:
  """The sample(s) of --search_space to train, best first (--arc, --arc_file, or the default)."""
  if flag_values.arc and flag_values.arc_file:
    raise ConfigError("give either --arc or --arc_file, not both")
  space = spaces.of(model)
  try:
    if flag_values.arc_file:
      return spaces.load_samples(flag_values.arc_file, space, model)
    if flag_values.arc:
      return [space.from_string(flag_values.arc, model)]
  except (spaces.SampleError, OSError) as e:
    source = f"--arc_file={flag_values.arc_file}" if flag_values.arc_file else "--arc"
    raise ConfigError(f"{source}: {e}") from e
  return [space.default(model)]


def _cleaning_embeddings(flag_values: flags.FlagValues) -> str:
  """--cleaning_embeddings, else the file named by the --arc_file a comprehensive search wrote."""
  if flag_values.cleaning_embeddings:
    path = flag_values.cleaning_embeddings
    if not os.path.isfile(path):
      raise ConfigError(f"--cleaning_embeddings={path}: no such file (a proxy's .npz, or a "
                        f"teacher embeddings {teacher_files.EXTENSION} from "
                        f"{teacher_files.TOOL})")
    if not path.lower().endswith((".npz", teacher_files.EXTENSION)):
      raise ConfigError(f"--cleaning_embeddings={path}: expected a proxy's .npz or a teacher "
                        f"embeddings {teacher_files.EXTENSION} file")
    return os.path.abspath(path)
  if flag_values.arc_file:
    try:
      with open(flag_values.arc_file, encoding="utf-8") as handle:
        obj = json.load(handle)
    except (OSError, ValueError):
      return ""  # _samples has named the file already
    if isinstance(obj, dict) and isinstance(obj.get("cleaning_embeddings"), str):
      return obj["cleaning_embeddings"]
  return ""


def _check_search(search: SearchConfig, model: ModelConfig, num_folds: int) -> None:
  """Search settings that only make sense together."""
  search.validate()
  if search.strategy == DIFFERENTIABLE:
    if not spaces.of(model).has_supernet:
      raise ConfigError(f"--search_strategy=differentiable needs a width/depth supernet, which "
                        f"--search_space={model.search_space} does not have; use "
                        "--search_space=mobilefacenet")
    if search.cost_model != "flops" or search.cost_target <= 0:
      raise ConfigError("--search_strategy=differentiable searches under a FLOPs budget: give "
                        "--cost_model=flops and --cost_target=FLOPS (e.g. 50e6)")
    if search.tau_min > search.tau_max:
      raise ConfigError(f"--gumbel_tau_min={search.tau_min} must not exceed --gumbel_tau_max="
                        f"{search.tau_max}")
  if search.strategy == DIFFERENTIABLE and (search.controller_warmup_fraction
                                            or search.path_dropout_warmup):
    raise ConfigError("--controller_warmup_fraction and --path_dropout_warmup are options of "
                      "the controller's searches (one_shot, multi_trial); "
                      "--search_strategy=differentiable has no controller")
  if search.path_dropout_warmup:
    if search.strategy != ONE_SHOT:
      raise ConfigError(f"--path_dropout_warmup={search.path_dropout_warmup} widens the shared "
                        f"model's training samples: it needs --search_strategy=one_shot, not "
                        f"{search.strategy}")
    if spaces.of(model).widest_choices(model) is None:
      raise ConfigError(f"--path_dropout_warmup: the choices of --search_space="
                        f"{model.search_space} do not nest (no widest choice holds the others); "
                        "use --search_space=mobilefacenet or --path_dropout_warmup=0")
    if warmup.controller_warmup_epochs(search.controller_warmup_fraction, search.epochs) < 1:
      raise ConfigError(f"--path_dropout_warmup={search.path_dropout_warmup} ramps down over the "
                        f"warm-up, floor(--controller_warmup_fraction="
                        f"{search.controller_warmup_fraction} * --search_epochs={search.epochs}) "
                        "= 0 epochs: give a fraction of at least one epoch (TuNAS: 0.25)")
  if search.strategy == ONE_SHOT and not spaces.of(model).supports_weight_sharing:
    raise ConfigError(f"--search_strategy=one_shot needs a weight-sharing model, which "
                      f"--search_space={model.search_space} does not have; use "
                      "--search_strategy=multi_trial")
  if search.reward_metric.startswith("verification") and search.reward_identities == 0:
    raise ConfigError(f"--reward_metric={search.reward_metric} needs --reward_identities > 0: "
                      "the reward's pairs come from training identities held out for it (never "
                      "from the evaluation pairs)")
  if search.cost_band_low > 0:
    if search.cost_model not in ("flops", "params", "lut") or search.cost_target <= 0:
      raise ConfigError(f"--cost_band_low={search.cost_band_low} needs a cheap cost model and "
                        "its band's top: --cost_model=flops, params or lut and --cost_target > 0")
    if search.controller in ("enas", "categorical"):
      raise ConfigError("--cost_band_low holds the samples of --controller=random, evolution or "
                        f"local_search; the {search.controller} controller learns the cost from "
                        "its reward")
    if search.cost_band_low >= 1:
      raise ConfigError(f"--cost_band_low={search.cost_band_low} must be below 1 (the band is "
                        "[b T, T])")
  if search.halving_eta:
    if search.halving_eta < 2:
      raise ConfigError(f"--halving_eta={search.halving_eta}: use 2 or more (0 = off)")
    if search.strategy != MULTI_TRIAL:
      raise ConfigError(f"--halving_eta trains multi_trial samples in rungs; --search_strategy="
                        f"{search.strategy} does not train its samples")
    if search.trial_workers > 1 or search.ray_address:
      raise ConfigError("--halving_eta runs its rungs in this process; it does not take "
                        "--trial_workers > 1 or --ray_address yet")
  if search.evolution_tournament > search.evolution_population:
    raise ConfigError(f"--evolution_tournament={search.evolution_tournament} must not exceed "
                      f"--evolution_population={search.evolution_population}")
  if search.cost_model == "lut" and not search.cost_table:
    raise ConfigError("--cost_model=lut needs --cost_table=PATH (tools/build_latency_table.py "
                      "writes one)")
  if search.cost_table and not os.path.exists(search.cost_table):
    raise ConfigError(f"--cost_table={search.cost_table}: no such file")
  if search.reward_identities and search.reward_pairs % (2 * num_folds):
    raise ConfigError(f"--reward_pairs={search.reward_pairs} must be a multiple of 2 * "
                      f"--num_folds = {2 * num_folds}")


def _dataset_value(value: str) -> str:
  """--dataset with its paths checked and made absolute (a run folder resumes from any cwd)."""
  spec = sources.parse_dataset_spec(value)
  return spec.kind if spec.kind == "synthetic" else f"{spec.kind}:{spec.path}"


def _unlabelled_value(value: str) -> str:
  """--unlabelled with its sources checked and their paths made absolute."""
  return ",".join(spec.value() for spec in sources.parse_unlabelled_spec(value))


def _check_unlabelled(data: DataConfig, distill: DistillConfig, mode: str) -> None:
  """--unlabelled needs a teacher (its images have no labels: only the distillation terms
  see them), --mode=fixed (or the tools' modes that read the data), and a real --dataset
  for small_identities."""
  if not data.unlabelled:
    return
  if not distill.teacher:
    raise ConfigError(f"--unlabelled={data.unlabelled}: unlabelled images are seen by the "
                      "distillation terms only; give a teacher with --distill_from")
  if mode == "search":
    raise ConfigError(f"--unlabelled={data.unlabelled}: unlabelled images teach --mode=fixed "
                      "(the differentiable search does not mix them in yet)")
  if sources.SMALL_IDENTITIES in data.unlabelled.split(",") and data.dataset == "synthetic":
    raise ConfigError(f"--unlabelled={data.unlabelled}: {sources.SMALL_IDENTITIES} needs a real "
                      "--dataset (folder:, tfrecord:, insightface:): the synthetic faces have "
                      "no identities below --min_images_per_identity")
  if data.stream == "always":
    raise ConfigError(f"--unlabelled={data.unlabelled} with --stream=always: unlabelled images "
                      "are mixed in from memory beside an in-memory training split; use "
                      "--stream=never")


def _pairs_value(value: str) -> str:
  """--pairs with its sets checked and their paths made absolute."""
  return ",".join(spec.value() for spec in sources.parse_pairs_spec(value))


def pair_set_names(pairs: str) -> list[str]:
  """The names of the --pairs sets (the held-out pairs' name when empty)."""
  from enas_face.data.base import DEFAULT_PAIR_SET
  return [spec.name for spec in sources.parse_pairs_spec(pairs)] or [DEFAULT_PAIR_SET]


def _export_format(values: list[str]) -> tuple[str, ...]:
  """--export_format as a tuple of distinct EXPORT_FORMATS, in the order given."""
  formats = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
  unknown = [f for f in formats if f not in EXPORT_FORMATS]
  if unknown or not formats:
    raise ConfigError(f"--export_format={','.join(values)}: "
                      + (f"unknown format(s) {', '.join(unknown)}" if unknown else "empty")
                      + f"; choose a comma-separated list of {', '.join(EXPORT_FORMATS)}")
  if "onnx" in formats:
    import importlib.util
    missing = [m for m in ("tf2onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
      raise ConfigError(f"--export_format={','.join(values)}: onnx needs the onnx extra "
                        f"(pip install -e '.[onnx]'); {', '.join(missing)} not installed")
  return formats


def from_flags(section: type, flag_values: flags.FlagValues, **resolved: Any):
  """The config class `section` filled by reflection: each field from its flag (config.flag_of:
  the field's own name unless config.FLAG_RENAMES names another), except the fields given in
  `resolved` (values worked out from their flags: absolute paths, defaults filled in)."""
  fields = [field.name for field in dataclasses.fields(section)]
  unknown = sorted(set(resolved) - set(fields))
  if unknown:
    raise TypeError(f"{section.__name__} has no field(s) {', '.join(unknown)}")
  return section(**{name: resolved[name] if name in resolved
                    else getattr(flag_values, flag_of(section, name)) for name in fields})


def _detect_retries(fv: flags.FlagValues) -> str:
  """--detect_retries in canonical form; ConfigError naming the flag when it is not one."""
  try:
    return face_align.format_detect_retries(fv.detect_retries)
  except ValueError as e:  # "detect_retries: ..." names the flag
    raise ConfigError(f"--{e}") from e


def _abspath(path: str) -> str:
  """An absolute path, or "" for an empty flag."""
  return os.path.abspath(path) if path else ""


def photo_config_from_flags(flag_values: flags.FlagValues) -> PhotoConfig:
  """--mode=embed|verify|identify: the validated PhotoConfig; ConfigError names the flag
  (checked before TensorFlow loads)."""
  fv = flag_values
  if not fv.model_path:
    raise ConfigError(f"--mode={fv.mode} needs --model_path (a run folder, a SavedModel folder, "
                      "a .tflite or an .onnx file)")
  if not os.path.exists(fv.model_path):
    raise ConfigError(f"--model_path={fv.model_path}: no such file or folder")
  if not fv.photos:
    raise ConfigError(f"--mode={fv.mode} needs --photos (image files or folders)")
  for photo in fv.photos:
    if not os.path.exists(photo):
      raise ConfigError(f"--photos: {photo}: no such file or folder")
  if fv.mode == "verify" and (len(fv.photos) != 2 or any(os.path.isdir(p) for p in fv.photos)):
    raise ConfigError(f"--mode=verify compares two photos: --photos=A,B (two files), got "
                      f"{','.join(fv.photos)}")
  if fv.mode == "identify" and not (fv.gallery_dir or fv.gallery_file):
    raise ConfigError("--mode=identify needs --gallery_dir (one subfolder per person) or an "
                      "enrolled --gallery_file")
  if fv.gallery_dir and not os.path.isdir(fv.gallery_dir):
    raise ConfigError(f"--gallery_dir={fv.gallery_dir}: no such folder")
  if fv.gallery_file and not fv.gallery_dir and not os.path.isfile(fv.gallery_file):
    raise ConfigError(f"--gallery_file={fv.gallery_file}: no such file (give --gallery_dir to "
                      "enrol one)")
  try:
    value = float(fv.threshold)
  except ValueError:
    value = None
  if value is not None and not -1.0 <= value <= 1.0:
    raise ConfigError(f"--threshold={fv.threshold}: a cosine threshold must lie in [-1, 1]")
  return from_flags(PhotoConfig, fv, model_path=os.path.abspath(fv.model_path),
                    photos=tuple(fv.photos), gallery_dir=_abspath(fv.gallery_dir),
                    gallery_file=_abspath(fv.gallery_file),
                    detect_retries=_detect_retries(fv))


def _check_teacher(distill: DistillConfig, mode: str) -> None:
  """--distill_from's kind against the mode (data/teacher_files.teacher_kind: a missing extra
  names its pip command). dlib's model teaches through an embeddings file only: main refuses
  it for the modes that run a teacher (tools/teacher_embeddings.py runs it)."""
  if not distill.teacher:
    if mode == "evaluate_teacher":
      raise ConfigError("--mode=evaluate_teacher needs --distill_from (the teacher to verify "
                        "--pairs with)")
    return
  teacher_files.teacher_kind(distill.teacher)


def config_from_flags(flag_values: flags.FlagValues) -> RunConfig:
  """Validated, frozen run configuration; ConfigError names the offending flag."""
  fv = flag_values
  if fv.search_space not in spaces.names():
    raise ConfigError(f"--search_space={fv.search_space} is not a registered search space; "
                      f"registered: {', '.join(spaces.names())}")
  model = from_flags(ModelConfig, fv)
  model.validate()
  if fv.search_space == "mobilefacenet":
    mobilefacenet.check_geometry(model)
  arcs = _samples(fv, model)
  if fv.top_k > len(arcs):
    raise ConfigError(f"--top_k={fv.top_k} but --arc_file={fv.arc_file} lists {len(arcs)} "
                      "sample(s)")
  arc = arcs[0]
  if fv.base_filters % 2:
    raise ConfigError(f"--base_filters={fv.base_filters} must be even (factorized reduction "
                      "splits channels in two)")
  data = from_flags(
      DataConfig, fv, seed=fv.seed if fv.data_seed < 0 else fv.data_seed,
      pairs=_pairs_value(fv.pairs), detect_retries=_detect_retries(fv),
      cache_dir=os.path.abspath(fv.cache_dir or os.path.join(fv.run_dir, runlog.DATA_CACHE_DIR)),
      cleaning_embeddings=_cleaning_embeddings(fv), dataset=_dataset_value(fv.dataset),
      unlabelled=_unlabelled_value(fv.unlabelled))
  if data.synthetic_label_noise + data.synthetic_outliers >= 1.0:
    raise ConfigError(f"--synthetic_label_noise={data.synthetic_label_noise} + "
                      f"--synthetic_outliers={data.synthetic_outliers} must be < 1")
  if data.synthetic_near_duplicates > data.synthetic_identities // 2:
    raise ConfigError(f"--synthetic_near_duplicates={data.synthetic_near_duplicates} must be at "
                      f"most half of --synthetic_identities={data.synthetic_identities}")
  sources.check_stream(data.stream, data.dataset)
  if data.dataset == "synthetic" and (data.pairs or data.align != "none"):
    raise ConfigError("--pairs and --align=online need a real --dataset (folder:, tfrecord:, "
                      "insightface:); the synthetic faces make their own pairs")
  if data.dataset != "synthetic" and not data.pairs and fv.heldout_fraction <= 0:
    raise ConfigError("--heldout_fraction must be positive when --pairs is not given: the "
                      "verification pairs come from held-out identities")
  if fv.num_pairs % (2 * fv.num_folds):
    raise ConfigError(f"--num_pairs={fv.num_pairs} must be a multiple of 2 * --num_folds = "
                      f"{2 * fv.num_folds} (each fold: half same, half different)")
  train = from_flags(TrainConfig, fv, init_checkpoint=_abspath(fv.init_checkpoint))
  if fv.warmup_epochs >= fv.epochs:
    raise ConfigError(f"--warmup_epochs={fv.warmup_epochs} must be smaller than --epochs="
                      f"{fv.epochs}")
  if fv.init_checkpoint and not (os.path.exists(fv.init_checkpoint)
                                 or os.path.exists(fv.init_checkpoint + ".index")):
    raise ConfigError(f"--init_checkpoint={fv.init_checkpoint}: no such run folder or checkpoint")
  if fv.lr_min > fv.lr_max:
    raise ConfigError(f"--lr_min={fv.lr_min} must not exceed --lr_max={fv.lr_max}")
  cost_target = fv.cost_target
  if cost_target == 0 and costs.UNITS[fv.cost_model] == "ms":
    cost_target = DEFAULT_TARGET_MS
  if cost_target == 0 and fv.mode == "search" and fv.reward != "accuracy":
    raise ConfigError(f"--reward={fv.reward} with --cost_model={fv.cost_model} needs "
                      f"--cost_target > 0 in {costs.UNITS[fv.cost_model]} (e.g. "
                      f"--cost_target=350e6 for 350 MFLOPs)")
  if fv.controller_lr_min > fv.controller_lr:
    raise ConfigError(f"--controller_lr_min={fv.controller_lr_min} must not exceed "
                      f"--controller_lr={fv.controller_lr}")
  search = from_flags(SearchConfig, fv, cost_target=cost_target,
                      cost_table=_abspath(fv.cost_table), latency_cache=_abspath(fv.latency_cache))
  distill = from_flags(DistillConfig, fv, teacher=_abspath(fv.distill_from))
  distill.validate()
  _check_teacher(distill, fv.mode)
  _check_unlabelled(data, distill, fv.mode)
  if distill.teacher and fv.mode == "search" and search.strategy != DIFFERENTIABLE:
    raise ConfigError(f"--distill_from with --search_strategy={search.strategy}: only the "
                      "differentiable search distils (or retrain with --mode=fixed --distill_from)")
  if fv.mode == "search":
    _check_search(search, model, fv.num_folds)
    if search.strategy == DIFFERENTIABLE and fv.distribution_strategy != "default":
      raise ConfigError(f"--search_strategy=differentiable runs on one device; "
                        f"--distribution_strategy={fv.distribution_strategy} is not supported "
                        "by it")
    if search.halving_eta and fv.distribution_strategy != "default":
      raise ConfigError(f"--halving_eta runs its rungs on one device; --distribution_strategy="
                        f"{fv.distribution_strategy} is not supported with it yet")
  if fv.mode == "search" and fv.warmup_epochs >= fv.search_epochs:
    raise ConfigError(f"--warmup_epochs={fv.warmup_epochs} must be smaller than --search_epochs="
                      f"{fv.search_epochs}")
  head = from_flags(HeadConfig, fv)
  head.validate()
  if spaces.of(model).owns_loss and head.head != "softmax":
    raise ConfigError(f"--head={head.head} with --search_space={model.search_space}: the loss is "
                      "part of this space's samples (held at softmax where it is not searched); "
                      "leave --head at softmax")
  export_format = _export_format(fv.export_format)
  evaluation = from_flags(EvalConfig, fv)
  if fv.best_pairs:
    set_names = pair_set_names(data.pairs)
    if fv.best_pairs not in set_names:
      raise ConfigError(f"--best_pairs={fv.best_pairs}: no such pair set; the sets are "
                        f"{', '.join(set_names)}")
  sets = from_flags(SetConfig, fv, heldout=_abspath(fv.set_heldout),
                    aggregation=tuple(fv.aggregation))
  sets.validate()
  from enas_face.data import frame_sets  # no TensorFlow: numpy and OpenCV
  frame_sets.parse_sets_spec(sets.sets)
  if fv.mode == "export" and len(sets.aggregation) > 1:
    raise ConfigError(f"--aggregation={','.join(sets.aggregation)}: --mode=export writes one set "
                      "model; name one aggregation")
  if fv.set_pairs % (2 * fv.num_folds):
    raise ConfigError(f"--set_pairs={fv.set_pairs} must be a multiple of 2 * --num_folds = "
                      f"{2 * fv.num_folds}")
  return from_flags(RunConfig, fv, run_dir=os.path.abspath(fv.run_dir), arc=arc, model=model,
                    data=data, train=train, eval=evaluation, search=search, head=head,
                    sets=sets, distill=distill, export_dir=_abspath(fv.export_dir),
                    export_format=export_format,
                    candidate_arcs=tuple(arcs[:fv.top_k]) if fv.top_k > 1 else ())
