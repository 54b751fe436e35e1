"""The ENAS controller (Pham et al. 2018, `general_controller.py`), driven by decision kinds, and REINFORCE.

An LSTM emits a sample one decision at a time, in the order of the space's decision list
(`spaces.base.Decision`). With h the LSTM output and x its next input:

    categorical (group g)  z = W_soft[g] h,  c ~ softmax(z),  x = W_emb[g][c]
      ... opening anchor i  then h_i = LSTM(x) is anchor a_i; x = g_emb unless skips follow
    skip block of layer i  q_j = v^T tanh(W_1 a_j + W_2 h_i),  z_j = [-q_j, q_j],
                           bit_j ~ softmax(z_j) for j < i (one draw for the block),
                           x = sum_j bit_j a_j / (1 + sum_j bit_j)

The first input is g_emb. For the ENAS macro space (per layer: an op decision opening its
anchor, then its skip bits) this is ENAS's macro controller exactly; a space of
categorical decisions only gets the NAS-RL controller of Zoph & Le (2017).

optionally with z <- z / temperature and z <- tanh_constant * tanh(z). The
skip penalty is KL(Bernoulli(p_j) || Bernoulli(skip_target)) with
p_j = softmax(z_j)[1], summed over skip decisions.

`CategoricalController` is TuNAS's policy instead (Bender et al. 2020): one independent
softmax per decision, no LSTM. Both have the interface of `RandomSampler` (sample, evaluate)
and `unroll`, through which `ReinforceTrainer` trains either.

Everything the controller knows about the child network comes from the
decision list. Sub-layers, weights and the random generator are plain named
attributes (not dicts or lists: with Keras 3 on TensorFlow those are not
tracked by `tf.train.Checkpoint`).
"""
from __future__ import annotations

import re
from typing import NamedTuple, Sequence

import keras
import numpy as np
import tensorflow as tf

from enas_face.spaces.base import Decision


class ControllerSample(NamedTuple):
  """One architecture and its statistics under the distribution that produced it."""
  arc: tf.Tensor           # int32 [n], ENAS integer encoding
  log_prob: tf.Tensor      # float32: sum_k log p(choice_k)  (<= 0)
  entropy: tf.Tensor       # float32: sum_k H(p_k)
  num_skips: tf.Tensor     # float32: number of skip bits set
  skip_penalty: tf.Tensor  # float32: sum_skips KL(Bernoulli(p_skip) || Bernoulli(skip_target))


class _Step(NamedTuple):
  """One draw of the unrolled controller: a categorical decision or a block of skip bits."""
  kind: str          # "categorical" | "skip"
  position: int      # index of its (first) decision
  width: int         # decisions drawn at once (1, or i skip bits of layer i)
  group: str         # categorical: the group whose softmax and embedding it uses
  anchor: int | None  # categorical: the anchor it opens (None: none); skip: its layer


def _plan(decisions: Sequence[Decision]) -> tuple[_Step, ...]:
  """The draws of a decision list, with the checks the unrolled LSTM relies on.

  Categorical decisions of one group need one num_choices; anchors open in order 0, 1, ...;
  the skip block of layer i directly follows the decision opening anchor i and holds the
  2-way skips from sources 0..i-1, in order.
  """
  decisions = list(decisions)
  if not decisions:
    raise ValueError("the controller needs at least one decision, got none")
  steps, position, anchors, choices_of_group = [], 0, 0, {}
  while position < len(decisions):
    head = decisions[position]
    if head.kind == "skip":
      raise ValueError(f"decision {position} ({head.name!r}): skip decisions must directly "
                       f"follow the categorical decision opening their layer {head.layer}")
    if choices_of_group.setdefault(head.group, head.num_choices) != head.num_choices:
      raise ValueError(f"decision {position} ({head.name!r}): group {head.group!r} has "
                       f"{choices_of_group[head.group]} choices elsewhere, {head.num_choices} here")
    if head.layer is not None and head.layer != anchors:
      raise ValueError(f"decision {position} ({head.name!r}) opens anchor {head.layer}; "
                       f"expected {anchors} (anchors open in order)")
    steps.append(_Step("categorical", position, 1, head.group, head.layer))
    position += 1
    if head.layer is None:
      continue
    layer = head.layer
    anchors += 1
    following = decisions[position:position + layer]
    if following and following[0].kind == "skip":
      for source in range(layer):
        k = position + source
        if (k >= len(decisions) or decisions[k].kind != "skip" or decisions[k].layer != layer
            or decisions[k].source != source):
          raise ValueError(f"decision {k} should be the skip from layer {source} into layer {layer}")
      steps.append(_Step("skip", position, layer, "", layer))
      position += layer
  return tuple(steps)


def _attribute(prefix: str, group: str) -> str:
  """Attribute name of a group's layer (attributes, not dicts: tracked by tf.train.Checkpoint)."""
  return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', group)}"


def _bernoulli_kl(p, target: float):
  """KL(Bernoulli(p) || Bernoulli(t)) = p log(p/t) + (1-p) log((1-p)/(1-t)), 0 log 0 = 0."""
  p = tf.clip_by_value(p, 1e-7, 1.0 - 1e-7)
  return p * tf.math.log(p / target) + (1.0 - p) * tf.math.log((1.0 - p) / (1.0 - target))


class _PolicySampling:
  """sample() and evaluate() of a policy with `unroll(arcs=None, seeds=None, batch_size)`
  -> (ControllerSample of [B] fields, extra), `rng` (a tf.random.Generator) and
  `_num_draws` (seeds one sample takes)."""

  @tf.function(autograph=False)
  def _sample_graph(self) -> ControllerSample:
    result, _ = self.unroll(seeds=self.rng.make_seeds(self._num_draws), batch_size=1)
    return ControllerSample(*(value[0] for value in result))

  def sample(self) -> ControllerSample:
    """Draw one architecture: arc [n] and scalar log p, H, num_skips, skip penalty."""
    return self._sample_graph()

  @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, None], tf.int32)])
  def evaluate_batch(self, arcs) -> ControllerSample:
    """Teacher-forced statistics of arcs [B, n] (each of shape [B]); differentiable in the
    policy's weights."""
    return self.unroll(arcs=arcs)[0]

  def evaluate(self, arc) -> ControllerSample:
    """log p, H, num_skips, penalty of the given arc [n] (scalars) or arcs [B, n] ([B])."""
    arc = tf.convert_to_tensor(arc, dtype=tf.int32)
    if arc.shape.rank == 1:
      return ControllerSample(*(value[0] for value in self.evaluate_batch(arc[None, :])))
    return self.evaluate_batch(arc)


class Controller(_PolicySampling, keras.Model):
  """The ENAS controller: one LSTMCell driven through the decision list.

  Output projections (each group's w_soft kernel and bias, v_attn kernel) start at zero, so
  the untrained controller is exactly uniform: every decision has probability
  1/num_choices and entropy = sum_k log(num_choices_k). (ENAS used a small
  uniform init; zero output init makes the untrained controller exactly random
  search.) Randomness comes from `self.rng`, a seeded stateful
  tf.random.Generator that checkpoints with the weights, so a restored
  controller continues the same random stream.
  """

  def __init__(self, decisions: Sequence[Decision], hidden_units: int = 100,
               temperature: float | None = None, tanh_constant: float | None = None,
               skip_target: float = 0.4, seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 < skip_target < 1.0:
      raise ValueError(f"skip_target must be in (0, 1), got {skip_target}")
    if temperature is not None and temperature <= 0:
      raise ValueError(f"temperature must be positive or None, got {temperature}")
    self._plan = _plan(decisions)
    self._decision_tuple = tuple(decisions)
    self.num_decisions = len(self._decision_tuple)
    self.num_layers = sum(1 for d in self._decision_tuple if d.kind == "categorical" and d.layer is not None)
    self.num_skip_decisions = sum(1 for d in self._decision_tuple if d.kind == "skip")
    self.hidden_units = int(hidden_units)
    self.temperature = temperature
    self.tanh_constant = tanh_constant
    self.skip_target = float(skip_target)
    self.seed = int(seed)
    groups = {}
    for d in self._decision_tuple:
      if d.kind == "categorical":
        groups.setdefault(d.group, d.num_choices)
    self.groups = tuple(groups)

    hidden = self.hidden_units
    # Construction order fixes the initializers' seeds (Keras draws them when a layer is
    # made): lstm, each group's softmax and embedding, attention, g_emb, as ENAS's controller.
    self.lstm = keras.layers.LSTMCell(hidden, name="lstm")
    for group, num_choices in groups.items():
      setattr(self, _attribute("w_soft", group), keras.layers.Dense(
          num_choices, kernel_initializer="zeros", bias_initializer="zeros",
          name=_attribute("w_soft", group)))
      setattr(self, _attribute("w_emb", group),
              keras.layers.Embedding(num_choices, hidden, name=_attribute("w_emb", group)))
    built = [self.lstm] + [getattr(self, _attribute("w_soft", g)) for g in groups]
    if self.num_skip_decisions:
      self.w_attn_1 = keras.layers.Dense(hidden, use_bias=False, name="w_attn_1")
      self.w_attn_2 = keras.layers.Dense(hidden, use_bias=False, name="w_attn_2")
      self.v_attn = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", name="v_attn")
      built += [self.w_attn_1, self.w_attn_2, self.v_attn]
    self.g_emb = self.add_weight(shape=(1, hidden), initializer=keras.initializers.RandomUniform(-0.1, 0.1),
                                 name="g_emb")
    for layer in built:
      layer.build((None, hidden))
    for group in groups:
      getattr(self, _attribute("w_emb", group)).build((None,))
    self.rng = tf.random.Generator.from_seed(self.seed)

  # ---------------------------------------------------------------- helpers
  def _shape_logits(self, logits):
    """z <- z / temperature, then z <- tanh_constant * tanh(z) (each if set)."""
    if self.temperature is not None:
      logits = logits / self.temperature
    if self.tanh_constant is not None:
      logits = self.tanh_constant * tf.tanh(logits)
    return logits

  def unroll(self, arcs=None, seeds=None, batch_size: int = 1):
    """The decision loop, unrolled in Python; samples (seeds [2, draws]) or teacher-forces `arcs` [B, n].

    Plain method (no tf.function) so callers such as ReinforceTrainer can inline it into their own graph.

    Returns (ControllerSample of per-arc values [B], p_skip [B, num_skip_decisions]) with
    log p = sum_k log softmax(z_k)[c_k], H = -sum_k sum_c p_k(c) log p_k(c) and the skip KL penalty.
    """
    if arcs is not None:
      arcs = tf.ensure_shape(arcs, [None, self.num_decisions])
    batch = tf.shape(arcs)[0] if arcs is not None else batch_size
    hidden = self.hidden_units
    state = [tf.zeros([batch, hidden]), tf.zeros([batch, hidden])]
    inputs = tf.tile(self.g_emb, [batch, 1])
    anchors, anchors_w_1, choices, skip_probs = [], [], [], []
    log_prob = tf.zeros([batch])
    entropy = tf.zeros([batch])
    num_skips = tf.zeros([batch])
    skip_penalty = tf.zeros([batch])
    draw = 0

    def choose(logits, position, width):
      """Choices [B, width] (sampled or read from arcs) for logits [B, width, C]."""
      nonlocal draw
      if arcs is not None:
        return arcs[:, position:position + width]
      flat = tf.reshape(logits, [-1, logits.shape[-1]])
      picked = tf.random.stateless_categorical(flat, 1, seed=seeds[:, draw], dtype=tf.int32)
      draw += 1
      return tf.reshape(picked, [batch, width])

    def accumulate(logits, chosen):
      """log p of `chosen` [B, W] and entropy under logits [B, W, C], both summed to [B]."""
      log_p = tf.nn.log_softmax(logits, axis=-1)
      # one_hot * log_p rather than gather: its gradient traces far faster.
      chosen_log_p = tf.reduce_sum(tf.one_hot(chosen, logits.shape[-1]) * log_p, axis=-1)
      return (tf.reduce_sum(chosen_log_p, axis=-1),
              -tf.reduce_sum(tf.exp(log_p) * log_p, axis=[-2, -1]))

    for index, step in enumerate(self._plan):
      if step.kind == "skip":
        continue  # drawn with the categorical decision that opens its layer
      h, state = self.lstm(inputs, state)
      logits = self._shape_logits(getattr(self, _attribute("w_soft", step.group))(h))[:, None, :]
      choice = choose(logits, step.position, 1)
      lp, ent = accumulate(logits, choice)
      log_prob, entropy = log_prob + lp, entropy + ent
      choices.append(choice)
      inputs = getattr(self, _attribute("w_emb", step.group))(choice[:, 0])
      if step.anchor is None:
        continue
      h, state = self.lstm(inputs, state)
      skips = self._plan[index + 1] if index + 1 < len(self._plan) else None
      if skips is not None and skips.kind == "skip":
        query = tf.tanh(tf.stack(anchors_w_1, axis=1) + self.w_attn_2(h)[:, None, :])  # [B, i, H]
        q = self.v_attn(query)  # [B, i, 1]
        logits = self._shape_logits(tf.concat([-q, q], axis=-1))  # [B, i, 2]
        bits = choose(logits, skips.position, skips.width)
        lp, ent = accumulate(logits, bits)
        log_prob, entropy = log_prob + lp, entropy + ent
        p_skip = tf.nn.softmax(logits, axis=-1)[..., 1]
        skip_penalty += tf.reduce_sum(_bernoulli_kl(p_skip, self.skip_target), axis=-1)
        skip_probs.append(p_skip)
        choices.append(bits)
        bits_float = tf.cast(bits, tf.float32)
        count = tf.reduce_sum(bits_float, axis=-1, keepdims=True)
        num_skips += count[:, 0]
        inputs = tf.einsum("bi,bih->bh", bits_float, tf.stack(anchors, axis=1)) / (1.0 + count)
      else:
        inputs = tf.tile(self.g_emb, [batch, 1])
      anchors.append(h)
      if self.num_skip_decisions:
        anchors_w_1.append(self.w_attn_1(h))
    arc = tf.concat(choices, axis=1) if arcs is None else arcs
    p_skip = tf.concat(skip_probs, axis=1) if skip_probs else tf.zeros([batch, 0])
    return ControllerSample(tf.cast(arc, tf.int32), log_prob, entropy, num_skips, skip_penalty), p_skip

  @property
  def _num_draws(self) -> int:
    """One draw per categorical decision and one per layer's block of skip bits."""
    return len(self._plan)

  def call(self, arcs):
    """Keras entry point: evaluate_batch(arcs).log_prob."""
    return self.unroll(arcs=tf.cast(arcs, tf.int32))[0].log_prob

  @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, None], tf.int32)])
  def _skip_probabilities_graph(self, arcs):
    return self.unroll(arcs=arcs)[1]

  def skip_probabilities(self, arc):
    """Teacher-forced p_skip = softmax([-q_j, q_j])[1] per skip decision: [S] for [n], [B, S] for [B, n]."""
    arc = tf.convert_to_tensor(arc, dtype=tf.int32)
    if arc.shape.rank == 1:
      return self._skip_probabilities_graph(arc[None, :])[0]
    return self._skip_probabilities_graph(arc)

  @property
  def decision_list(self) -> tuple[Decision, ...]:
    return self._decision_tuple


class CategoricalController(_PolicySampling, tf.Module):
  """TuNAS's independent categorical policy (Bender et al. 2020; `independent_sample` of its
  released code): logits z_k per decision k, zero at the start (exactly uniform), nothing
  shared between decisions:

      p_k = softmax(shape(z_k)),  c_k ~ p_k,  log p(arc) = sum_k log p_k(c_k),
      H = sum_k H(p_k),  d log p(arc) / d z_k = onehot(c_k) - p_k  (without shape)

  shape(z) = z / temperature, then tanh_constant * tanh(z), each if set (TuNAS: neither).
  A skip decision is a 2-way decision like any other, with the Controller's penalty
  KL(Bernoulli(p_k(1)) || Bernoulli(skip_target)). The logits are one [D, K] variable
  (K = the most choices), entries past a decision's choice count masked out. Randomness:
  `self.rng`, a seeded tf.random.Generator that checkpoints with the logits.
  """

  def __init__(self, decisions: Sequence[Decision], temperature: float | None = None,
               tanh_constant: float | None = None, skip_target: float = 0.4, seed: int = 0,
               name: str = "categorical_controller"):
    super().__init__(name=name)
    decisions = tuple(decisions)
    if not decisions:
      raise ValueError("the controller needs at least one decision, got none")
    if not 0.0 < skip_target < 1.0:
      raise ValueError(f"skip_target must be in (0, 1), got {skip_target}")
    if temperature is not None and temperature <= 0:
      raise ValueError(f"temperature must be positive or None, got {temperature}")
    self._decision_tuple = decisions
    self.num_decisions = len(decisions)
    self.num_skip_decisions = sum(1 for d in decisions if d.kind == "skip")
    self.temperature, self.tanh_constant = temperature, tanh_constant
    self.skip_target = float(skip_target)
    counts = np.array([d.num_choices for d in decisions])
    self._valid = np.arange(counts.max())[None, :] < counts[:, None]  # [D, K]
    self._skip_rows = np.array([k for k, d in enumerate(decisions) if d.kind == "skip"], np.int32)
    self.logits = tf.Variable(tf.zeros(self._valid.shape), name="logits")
    self.rng = tf.random.Generator.from_seed(int(seed))

  @property
  def decision_list(self) -> tuple[Decision, ...]:
    return self._decision_tuple

  def log_probabilities(self):
    """log p_k(c), [D, K]; -1e9 past a decision's choices."""
    logits = self.logits
    if self.temperature is not None:
      logits = logits / self.temperature
    if self.tanh_constant is not None:
      logits = self.tanh_constant * tf.tanh(logits)
    return tf.nn.log_softmax(tf.where(self._valid, logits, -1e9), axis=-1)

  def probabilities(self) -> list[np.ndarray]:
    """p_k per decision (numpy, its own length each)."""
    p = tf.exp(self.log_probabilities()).numpy()
    return [p[k, :d.num_choices] for k, d in enumerate(self._decision_tuple)]

  def unroll(self, arcs=None, seeds=None, batch_size: int = 1):
    """Samples (seeds [2, 1]) or teacher-forces `arcs` [B, n]; as Controller.unroll:
    (ControllerSample of per-arc values [B], p_skip [B, num_skip_decisions])."""
    log_p = self.log_probabilities()  # [D, K]
    if arcs is None:
      arcs = tf.transpose(tf.random.stateless_categorical(log_p, batch_size, seed=seeds[:, 0],
                                                          dtype=tf.int32))
    arcs = tf.cast(tf.ensure_shape(arcs, [None, self.num_decisions]), tf.int32)
    batch = tf.shape(arcs)[0]
    chosen = tf.one_hot(arcs, self._valid.shape[1])  # [B, D, K]
    log_prob = tf.reduce_sum(chosen * log_p[None], axis=[1, 2])
    entropy = -tf.reduce_sum(tf.where(self._valid, tf.exp(log_p) * log_p, 0.0))
    p_skip = tf.gather(tf.exp(log_p)[:, 1] if log_p.shape[1] > 1 else tf.zeros_like(log_p[:, 0]),
                       self._skip_rows)  # [S]
    penalty = tf.reduce_sum(_bernoulli_kl(p_skip, self.skip_target))
    num_skips = tf.reduce_sum(tf.cast(tf.gather(arcs, self._skip_rows, axis=1), tf.float32), -1)
    ones = tf.ones([batch])
    return (ControllerSample(arcs, log_prob, entropy * ones, num_skips, penalty * ones),
            tf.tile(p_skip[None], [batch, 1]))

  _num_draws = 1  # one seed pair draws every decision at once


class RandomSampler(tf.Module):
  """Random-search baseline with the controller's sample()/evaluate() interface.

  Every decision is uniform: log p = -sum_k log(num_choices_k) and
  H = sum_k log(num_choices_k) for every arc; skip_penalty is the constant
  (number of skip decisions) * KL(Bernoulli(0.5) || Bernoulli(skip_target)).
  No trainable weights; `self.rng` is a seeded, checkpointable tf.random.Generator.
  """

  def __init__(self, decisions: Sequence[Decision], seed: int = 0, skip_target: float = 0.4):
    super().__init__(name="random_sampler")
    decisions = tuple(decisions)
    if not decisions:
      raise ValueError("the sampler needs at least one decision, got none")
    self._decision_tuple = decisions
    self.num_decisions = len(decisions)
    self.skip_target = float(skip_target)
    self._num_choices = np.array([d.num_choices for d in decisions], np.float32)
    self._is_skip = np.array([d.kind == "skip" for d in decisions], np.float32)
    self.log_prob_value = -float(np.sum(np.log(self._num_choices.astype(np.float64))))
    self.penalty_value = float(np.sum(self._is_skip)) * float(
        _bernoulli_kl(tf.constant(0.5), self.skip_target).numpy())
    self.rng = tf.random.Generator.from_seed(int(seed))

  def _stats(self, arc) -> ControllerSample:
    num_skips = tf.reduce_sum(tf.cast(arc, tf.float32) * self._is_skip)
    return ControllerSample(tf.cast(arc, tf.int32), tf.constant(self.log_prob_value),
                            tf.constant(-self.log_prob_value), num_skips, tf.constant(self.penalty_value))

  @tf.function(autograph=False)
  def _sample_graph(self) -> ControllerSample:
    uniform = self.rng.uniform([self.num_decisions], dtype=tf.float32)
    arc = tf.minimum(tf.floor(uniform * self._num_choices), self._num_choices - 1.0)
    return self._stats(tf.cast(arc, tf.int32))

  def sample(self) -> ControllerSample:
    """One architecture with every decision c_k ~ U{0..num_choices_k - 1}."""
    return self._sample_graph()

  def evaluate(self, arc) -> ControllerSample:
    """Statistics of a given arc [n] (the same constants for every arc)."""
    return self._stats(tf.convert_to_tensor(arc, dtype=tf.int32))


class ReinforceTrainer(tf.Module):
  """ENAS REINFORCE with a moving-average baseline (of a Controller or a CategoricalController).

  r'_q = r_q + entropy_weight * H_q (no gradient);
  b <- b - (1 - baseline_decay) (b - mean_q r'_q), updated before the advantages;
  A_q = r'_q - b;  loss = -mean_q(A_q log p(arc_q)) + skip_weight * mean_q KL_q;
  gradients clipped to global norm grad_clip_norm, one optimizer step.
  """

  def __init__(self, controller: Controller | CategoricalController,
               optimizer: keras.optimizers.Optimizer,
               baseline_decay: float = 0.99, entropy_weight: float = 1e-4, skip_weight: float = 0.8,
               grad_clip_norm: float | None = 5.0):
    super().__init__(name="reinforce_trainer")
    self.controller = controller
    self.optimizer = optimizer
    self.baseline_decay = float(baseline_decay)
    self.entropy_weight = float(entropy_weight or 0.0)
    self.skip_weight = float(skip_weight or 0.0)
    self.grad_clip_norm = grad_clip_norm
    self.baseline = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="baseline")
    if not optimizer.built:
      optimizer.build(controller.trainable_variables)

  def _advantage(self, stats, rewards):
    """r' = r + entropy_weight H; the baseline moves towards mean r'; A = r' - b."""
    rewards = rewards + self.entropy_weight * tf.stop_gradient(stats.entropy)
    self.baseline.assign_sub((1.0 - self.baseline_decay) * (self.baseline - tf.reduce_mean(rewards)))
    return tf.stop_gradient(rewards - self.baseline)

  def _report(self, stats, advantage, loss, grad_norm) -> dict:
    num_skip_decisions = max(self.controller.num_skip_decisions, 1)
    return {"loss": loss, "baseline": tf.identity(self.baseline),
            "advantage": tf.reduce_mean(advantage), "grad_norm": grad_norm,
            "entropy": tf.reduce_mean(stats.entropy), "skip_penalty": tf.reduce_mean(stats.skip_penalty),
            "skip_density": tf.reduce_mean(stats.num_skips) / num_skip_decisions,
            "log_prob": tf.reduce_mean(stats.log_prob)}

  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.float32)])
  def _update_graph(self, arcs, rewards):
    variables = self.controller.trainable_variables
    with tf.GradientTape() as tape:
      stats, _ = self.controller.unroll(arcs=arcs)  # inlined: a nested tf.function is slow to differentiate
      advantage = self._advantage(stats, rewards)
      loss = (-tf.reduce_mean(advantage * stats.log_prob)
              + self.skip_weight * tf.reduce_mean(stats.skip_penalty))
    grads = tape.gradient(loss, variables)
    grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
    if self.grad_clip_norm is not None:
      grads, grad_norm = tf.clip_by_global_norm(grads, self.grad_clip_norm)
    else:
      grad_norm = tf.linalg.global_norm(grads)
    self.optimizer.apply_gradients(zip(grads, variables))
    return self._report(stats, advantage, loss, grad_norm)

  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.float32)])
  def _observe_graph(self, arcs, rewards):
    stats, _ = self.controller.unroll(arcs=arcs)
    return self._report(stats, self._advantage(stats, rewards), tf.constant(0.0), tf.constant(0.0))

  @staticmethod
  def _batch(arcs, rewards):
    arcs = tf.convert_to_tensor(arcs, dtype=tf.int32)
    rewards = tf.reshape(tf.convert_to_tensor(rewards, dtype=tf.float32), [-1])
    if arcs.shape.rank == 1:
      arcs = arcs[None, :]
    if arcs.shape[0] != rewards.shape[0]:
      raise ValueError(f"got {arcs.shape[0]} arcs but {rewards.shape[0]} rewards")
    return arcs, rewards

  def update(self, arcs, rewards) -> dict[str, float]:
    """One REINFORCE step on arcs [Q, n] with rewards [Q]; returns python floats."""
    return {key: float(value) for key, value in self._update_graph(*self._batch(arcs, rewards)).items()}

  def observe(self, arcs, rewards) -> dict[str, float]:
    """The baseline's update alone, the policy and its optimiser untouched (the controller
    warm-up: TuNAS's zero controller learning rate, its baseline still averaging)."""
    return {key: float(value) for key, value in self._observe_graph(*self._batch(arcs, rewards)).items()}


# --controller by name (flags.CONTROLLERS spells the same names: the flags load no TensorFlow;
# tests/test_flags.py checks they agree). search.loop.make_sampler builds them.
SAMPLERS = {"enas": Controller, "categorical": CategoricalController, "random": RandomSampler}


def controller_optimizer(name: str, learning_rate_schedule) -> keras.optimizers.Optimizer:
  """"sgd": plain SGD (no momentum); "adam": Adam with ENAS's beta_1=0, epsilon=1e-3."""
  key = str(name).strip().lower()
  if key == "sgd":
    return keras.optimizers.SGD(learning_rate=learning_rate_schedule, momentum=0.0)
  if key == "adam":
    return keras.optimizers.Adam(learning_rate=learning_rate_schedule, beta_1=0.0, epsilon=1e-3)
  raise ValueError(f"unknown controller optimizer {name!r}; expected 'sgd' or 'adam'")


@keras.saving.register_keras_serializable("enas_face")
class StepDecayWithFloor(keras.optimizers.schedules.LearningRateSchedule):
  """lr(step) = max(lr_end, lr_start * factor ** floor(step / steps_per_decay))."""

  def __init__(self, lr_start: float, lr_end: float, steps_per_decay: int, factor: float = 0.1):
    if steps_per_decay < 1:
      raise ValueError(f"steps_per_decay must be >= 1, got {steps_per_decay}")
    if not 0 <= lr_end <= lr_start:
      raise ValueError(f"need 0 <= lr_end <= lr_start, got lr_start={lr_start}, lr_end={lr_end}")
    if not 0 < factor <= 1:
      raise ValueError(f"factor must be in (0, 1], got {factor}")
    self.lr_start, self.lr_end = float(lr_start), float(lr_end)
    self.steps_per_decay, self.factor = int(steps_per_decay), float(factor)

  def __call__(self, step):
    decays = tf.floor(tf.cast(step, tf.float32) / float(self.steps_per_decay))
    return tf.maximum(self.lr_end, self.lr_start * tf.pow(self.factor, decays))

  def get_config(self):
    return {"lr_start": self.lr_start, "lr_end": self.lr_end,
            "steps_per_decay": self.steps_per_decay, "factor": self.factor}


def piecewise_lr(lr_start: float = 0.1, lr_end: float = 1e-4, *, steps_per_decay: int,
                 factor: float = 0.1) -> StepDecayWithFloor:
  """Paper schedule: lr = max(lr_end, lr_start * factor ** floor(step / steps_per_decay)).

  Zhu 2019: 0.1 -> 1e-4, x0.1 every 20 epochs (steps_per_decay = 20 * controller steps per epoch).
  """
  return StepDecayWithFloor(lr_start, lr_end, steps_per_decay, factor)


__all__ = ["ControllerSample", "Controller", "CategoricalController", "RandomSampler", "ReinforceTrainer",
           "SAMPLERS", "controller_optimizer", "piecewise_lr", "StepDecayWithFloor"]
