"""--shared_update: taken updates only the candidates a step ran, with Keras SGD's arithmetic.

The numpy reference is Keras SGD (keras/src/optimizers/sgd.py, base_optimizer.apply) on a
variable v with gradient g, momentum slot m, lr = schedule(t) before the step:

    v <- v - v (wd lr);   m <- m mu - g lr;   v <- v + m

applied to every variable (all) or to those the step's architecture ran (taken). (Keras
writes the decay (v wd) lr; inside a tf.function grappler multiplies the scalars first,
and numpy's (v wd) lr then differs by an ulp here and there.)
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_face.config import ConfigError, ModelConfig, SearchConfig, TrainConfig
from enas_face.models import heads
from enas_face.models.child import FixedChild, SharedChild
from enas_face.spaces import enas_macro
from enas_face.training import shared_update
from enas_face.training import step as train_lib

# Three layers, one reduction after layer 0: layer 2's skip from layer 0 needs reduce0_to1
# only through the skip (a skip-only reduction, conditional on that bit).
MODEL = ModelConfig(image_size=16, num_layers=3, num_reductions=1, base_filters=4,
                    embedding_dim=8, dropblock_keep_prob=1.0)
TRAIN = TrainConfig(lr_max=0.1, lr_min=1e-3, warmup_epochs=1, epochs=4, momentum=0.9,
                    weight_decay=1e-2)  # a large decay, so an untouched weight would show
NUM_CLASSES, BATCH = 5, 8
# Encodings [op0, op1, s10, op2, s20, s21]: no step runs layer0_avgpool3x3, layer1_sep5x5
# (convolutions and BatchNorm) or layer2_avgpool3x3; reduce0_to1 and layer2_skip0 run only
# at step 1.
ARCS = [[0, 2, 0, 3, 0, 1], [1, 3, 1, 0, 1, 0], [3, 2, 1, 1, 0, 0], [0, 0, 0, 3, 0, 1]]
NEVER_RUN = ("layer0_avgpool3x3", "layer1_sep5x5", "layer2_avgpool3x3")


def build(seed=1, train=TRAIN):
  keras.utils.set_random_seed(seed)
  child = SharedChild(MODEL, name="child").build_for_input()
  head = heads.SoftmaxHead(NUM_CLASSES, name="head")
  head.build((None, MODEL.embedding_dim))
  optimizer = train_lib.make_optimizer(train, steps_per_epoch=2, epochs=train.epochs)
  optimizer.build(child.trainable_variables + head.trainable_variables)
  return child, head, optimizer


def batches(count, seed=0):
  rng = np.random.default_rng(seed)
  return [(tf.constant(rng.uniform(0, 255, (BATCH, 16, 16, 3)).astype(np.float32)),
           tf.constant(rng.integers(0, NUM_CLASSES, BATCH).astype(np.int32)))
          for _ in range(count)]


def runs(child, arc) -> set[int]:
  """ids of the variables the architecture runs (every variable without a condition too)."""
  conditional = child.conditional_variables()
  skipped = {id(v) for condition, variables in conditional
             if not any(arc[p] == value for p, value in condition) for v in variables}
  return {id(v) for v in child.trainable_variables} - skipped


def numpy_sgd(weights, slots, gradients, moved, lr, momentum, decay):
  """One Keras SGD step in float32 numpy on the variables whose index is in `moved`."""
  lr, momentum, decay = np.float32(lr), np.float32(momentum), np.float32(decay)
  for k in moved:
    w = weights[k] - weights[k] * (decay * lr)
    if momentum:
      slots[k] = slots[k] * momentum - gradients[k] * lr
      weights[k] = w + slots[k]
    else:
      weights[k] = w - gradients[k] * lr


def slot_of(optimizer, variable):
  return optimizer.momentums[optimizer._get_variable_index(variable)]  # pylint: disable=protected-access


@pytest.mark.parametrize("mode, momentum", [("all", 0.9), ("taken", 0.9), ("taken", 0.0)])
def test_the_update_equals_numpy_keras_sgd_and_taken_leaves_untaken_candidates_alone(
    mode, momentum):
  """Four steps with given gradients (zero for what the architecture did not run, as the
  switch's gradient is): `taken` moves exactly the variables run at each step, bit for bit
  as numpy's Keras SGD on them; `all` (optimizer.apply_gradients) moves every variable
  as numpy's Keras SGD on all of them."""
  train = dataclasses.replace(TRAIN, momentum=momentum)
  child, head, optimizer = build(train=train)
  variables = child.trainable_variables + head.trainable_variables
  update = shared_update.TakenUpdate(optimizer, variables, child.conditional_variables())

  @tf.function
  def step(gradients, arc):
    lr = optimizer.learning_rate  # schedule(t) before the step, as the update reads it
    if mode == "taken":
      update(gradients, arc)
    else:
      optimizer.apply_gradients(zip(gradients, variables))
    return lr

  rng = np.random.default_rng(3)
  weights = [v.numpy() for v in variables]
  slots = [np.zeros_like(w) for w in weights]
  start = [w.copy() for w in weights]
  ever_run = set()
  for t, arc in enumerate(ARCS):
    ran = runs(child, arc) | {id(v) for v in head.trainable_variables}
    ever_run |= ran
    gradients = [rng.normal(0, 0.1, w.shape).astype(np.float32) if id(v) in ran
                 else np.zeros_like(w) for v, w in zip(variables, weights)]
    lr = step([tf.constant(g) for g in gradients], tf.constant(arc, tf.int32)).numpy()
    moved = [k for k, v in enumerate(variables) if mode == "all" or id(v) in ran]
    numpy_sgd(weights, slots, gradients, moved, lr, momentum, TRAIN.weight_decay)
    assert int(optimizer.iterations) == t + 1
  never = [k for k, v in enumerate(variables) if id(v) not in ever_run]
  assert {variables[k].path for k in never} == {
      v.path for key in NEVER_RUN for v in child.module(key).trainable_variables}
  for k, v in enumerate(variables):
    np.testing.assert_array_equal(v.numpy(), weights[k], err_msg=v.path)
    if momentum:
      np.testing.assert_array_equal(slot_of(optimizer, v).numpy(), slots[k], err_msg=v.path)
  for k in never:  # decay moves them under `all` (but a zero BN beta: 0 - 0 wd lr = 0)
    moved = not np.array_equal(variables[k].numpy(), start[k])
    assert moved == (mode == "all" and bool(np.any(start[k]))), variables[k].path


def train(child, head, optimizer, mode, data, arcs):
  step = train_lib.make_train_step(child, head, optimizer, 0.0, NUM_CLASSES, BATCH,
                                   takes_arc=True, shared_update=mode)
  return [float(step(x, y, tf.constant(arc, tf.int32))[0]) for (x, y), arc in zip(data, arcs)]


def snapshot(child, head, optimizer):
  variables = child.trainable_variables + head.trainable_variables
  return ({v.path: v.numpy() for v in child.weights + head.weights},
          {v.path: slot_of(optimizer, v).numpy() for v in variables})


def test_a_taken_train_step_keeps_untaken_candidates_and_their_momentum_bit_identical():
  """Through make_train_step: after the steps, every candidate no step ran has its initial
  weights and zero momentum; with `all` the same candidates have moved (decay)."""
  data = batches(len(ARCS))
  for mode in ("taken", "all"):
    child, head, optimizer = build()
    start = {v.path: v.numpy() for v in child.trainable_variables}
    losses = train(child, head, optimizer, mode, data, ARCS)
    assert all(np.isfinite(losses)) and int(optimizer.iterations) == len(ARCS)
    for key in NEVER_RUN:
      for v in child.module(key).trainable_variables:
        unchanged = np.array_equal(v.numpy(), start[v.path])
        assert unchanged == (mode == "taken" or not np.any(start[v.path])), (mode, v.path)
        if mode == "taken":
          assert not np.any(slot_of(optimizer, v).numpy()), v.path
    stem = child.stem.trainable_variables[0]
    assert not np.array_equal(stem.numpy(), start[stem.path])  # shared weights do train


def test_the_first_taken_step_equals_keras_on_what_it_ran():
  """From the same state, one step of each mode on the same batch and architecture: every
  variable the architecture ran (and its momentum) agrees, the others differ (decayed under
  `all`). Not bit for bit: the two steps are two graphs, and a BatchNorm gradient summed in
  another order differs by an ulp (measured: 1 element of 4 in stem/bn/gamma)."""
  data = batches(1)
  results = {}
  for mode in ("all", "taken"):
    child, head, optimizer = build()
    optimizer.iterations.assign(2)  # past the warmup's lr = 0 at t = 0
    train(child, head, optimizer, mode, data, ARCS[:1])
    results[mode] = snapshot(child, head, optimizer)
    ran = {v.path for v in child.trainable_variables if id(v) in runs(child, ARCS[0])}
  (all_w, all_m), (taken_w, taken_m) = results["all"], results["taken"]
  for path in taken_m:
    if path in ran or path.startswith("head"):
      np.testing.assert_allclose(taken_w[path], all_w[path], rtol=1e-6, atol=1e-9,
                                 err_msg=path)
      np.testing.assert_allclose(taken_m[path], all_m[path], rtol=1e-6, atol=1e-9,
                                 err_msg=path)
    else:
      assert not np.array_equal(taken_w[path], all_w[path]) or not np.any(taken_w[path]), path


def test_a_checkpoint_taken_mid_way_resumes_to_identical_weights(tmp_path):
  """Two taken steps, save (child, head, optimizer), two more steps; a fresh build from
  other random weights restored from the save and given the same two steps ends equal."""
  data = batches(len(ARCS))
  child, head, optimizer = build()
  train(child, head, optimizer, "taken", data[:2], ARCS[:2])
  path = tf.train.Checkpoint(child=child, head=head, optimizer=optimizer).write(
      str(tmp_path / "ckpt"))
  train(child, head, optimizer, "taken", data[2:], ARCS[2:])
  straight = snapshot(child, head, optimizer)

  child2, head2, optimizer2 = build(seed=7)
  tf.train.Checkpoint(child=child2, head=head2, optimizer=optimizer2).read(
      path).assert_consumed()
  assert int(optimizer2.iterations) == 2
  train(child2, head2, optimizer2, "taken", data[2:], ARCS[2:])
  resumed = snapshot(child2, head2, optimizer2)
  for part in (0, 1):
    assert straight[part].keys() == resumed[part].keys()
    for name, value in straight[part].items():
      np.testing.assert_array_equal(resumed[part][name], value, err_msg=name)


def test_bad_shared_update_values_and_combinations_name_the_flag():
  with pytest.raises(ConfigError, match="--shared_update='some'"):
    SearchConfig(shared_update="some").validate()
  with pytest.raises(ConfigError, match="--shared_update=taken .*--search_strategy=multi_trial"):
    SearchConfig(shared_update="taken", strategy="multi_trial").validate()
  SearchConfig(shared_update="taken").validate()
  child, head, optimizer = build()
  with pytest.raises(ValueError, match="--shared_update='none'"):
    train_lib.make_train_step(child, head, optimizer, 0.0, NUM_CLASSES, BATCH, takes_arc=True,
                              shared_update="none")
  fixed = FixedChild(MODEL, enas_macro.Architecture.from_ints(ARCS[0])).build_for_input()
  with pytest.raises(ValueError, match="--shared_update=taken needs a weight-sharing child"):
    train_lib.make_train_step(fixed, head, optimizer, 0.0, NUM_CLASSES, BATCH,
                              shared_update="taken")
  constrained = keras.Variable(np.ones(2, np.float32), name="nonneg")
  constrained.constraint = keras.constraints.NonNeg()
  with pytest.raises(ValueError, match="--shared_update=taken does not apply variable "
                                       "constraints"):
    shared_update.TakenUpdate(keras.optimizers.SGD(), [constrained], [])
  adam = keras.optimizers.Adam()
  with pytest.raises(ValueError, match="--shared_update=taken reproduces Keras SGD"):
    train_lib.make_train_step(child, head, adam, 0.0, NUM_CLASSES, BATCH, takes_arc=True,
                              shared_update="taken")


# The MobileFaceNet supernet: its candidates are the blocks beyond a stage's depth
# (conditional_variables) and the rows of each unit's per-width affine (row_variables).
SUPERNET = ModelConfig(image_size=16, embedding_dim=8, search_space="mobilefacenet",
                       width_multiplier=0.25)


def build_supernet(seed=1):
  from enas_face.models import builders  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(seed)
  child = builders.build_shared(SUPERNET, name="child")
  head = heads.SoftmaxHead(NUM_CLASSES, name="head")
  head.build((None, SUPERNET.embedding_dim))
  optimizer = train_lib.make_optimizer(TRAIN, steps_per_epoch=2, epochs=TRAIN.epochs)
  optimizer.build(child.trainable_variables + head.trainable_variables)
  return child, head, optimizer


def supernet_arcs(child, count, seed=0):
  """Random architectures whose depth choices stay below the largest (some blocks never run)."""
  from enas_face import spaces  # pylint: disable=import-outside-toplevel
  decisions = spaces.get("mobilefacenet").decisions(SUPERNET)
  rng = np.random.default_rng(seed)
  return [[int(rng.integers(max(1, d.num_choices - 1) if "depth" in d.name else d.num_choices))
           for d in decisions] for _ in range(count)]


def test_the_mobilefacenet_supernet_taken_step_moves_only_the_blocks_and_affine_rows_it_ran():
  """Given gradients (zero where the architecture did not run, as the step's are): `taken`
  moves the blocks the arc ran and row arc[position] of each per-width affine, bit for bit
  as numpy's Keras SGD on exactly those rows; every other block and row (and its momentum)
  stays as it was."""
  child, head, optimizer = build_supernet()
  variables = child.trainable_variables + head.trainable_variables
  rows = child.row_variables()
  update = shared_update.TakenUpdate(optimizer, variables, child.conditional_variables(), rows)
  row_position = {id(v): p for p, v in rows}
  assert rows and child.conditional_variables()

  @tf.function
  def step(gradients, arc):
    lr = optimizer.learning_rate
    update(gradients, arc)
    return lr

  rng = np.random.default_rng(3)
  weights = [v.numpy() for v in variables]
  slots = [np.zeros_like(w) for w in weights]
  start = [w.copy() for w in weights]
  arcs = supernet_arcs(child, 3)
  for arc in arcs:
    skipped = {id(v) for condition, vs in child.conditional_variables()
               if not any(arc[p] == value for p, value in condition) for v in vs}
    gradients = []
    for v, w in zip(variables, weights):
      g = np.zeros_like(w) if id(v) in skipped else rng.normal(0, 0.1, w.shape).astype(np.float32)
      if id(v) in row_position:  # the other candidates' rows are multiplied by 0
        g[np.arange(len(g)) != arc[row_position[id(v)]]] = 0
      gradients.append(g)
    lr = step([tf.constant(g) for g in gradients], tf.constant(arc, tf.int32)).numpy()
    for k, v in enumerate(variables):
      if id(v) in skipped:
        continue
      if id(v) in row_position:  # numpy's step on the taken row alone
        r = arc[row_position[id(v)]]
        w, m = weights[k][r:r + 1], slots[k][r:r + 1]
        ws, ms = [w.copy()], [m.copy()]
        numpy_sgd(ws, ms, [gradients[k][r:r + 1]], [0], lr, TRAIN.momentum, TRAIN.weight_decay)
        weights[k][r], slots[k][r] = ws[0][0], ms[0][0]
      else:
        numpy_sgd(weights, slots, gradients, [k], lr, TRAIN.momentum, TRAIN.weight_decay)
  for k, v in enumerate(variables):
    np.testing.assert_array_equal(v.numpy(), weights[k], err_msg=v.path)
    np.testing.assert_array_equal(slot_of(optimizer, v).numpy(), slots[k], err_msg=v.path)
  # something stayed: a block no arc ran, and the affine rows of widths no arc chose
  condition_of = {id(v): condition for condition, vs in child.conditional_variables()
                  for v in vs}
  never = [k for k, v in enumerate(variables) if id(v) in condition_of and not any(
      arc[p] == value for arc in arcs for p, value in condition_of[id(v)])]
  assert never and all(np.array_equal(variables[k].numpy(), start[k]) for k in never)
  for position, v in rows:
    k = next(i for i, u in enumerate(variables) if u is v)
    untouched = sorted(set(range(len(start[k]))) - {arc[position] for arc in arcs})
    if untouched and np.any(start[k][untouched]):
      np.testing.assert_array_equal(v.numpy()[untouched], start[k][untouched], err_msg=v.path)


def test_a_taken_train_step_trains_the_mobilefacenet_supernet():
  """Through make_train_step on real batches: finite losses, the shared stem trains, a block
  beyond every arc's depth keeps its weights under `taken` and decays under `all`."""
  data = batches(3)
  for mode in ("taken", "all"):
    child, head, optimizer = build_supernet()
    arcs = supernet_arcs(child, 3)
    start = {v.path: v.numpy() for v in child.trainable_variables}
    images = [(tf.image.resize(x, (SUPERNET.image_size, SUPERNET.image_size)), y) for x, y in data]
    losses = train(child, head, optimizer, mode, images, arcs)
    assert all(np.isfinite(losses))
    stem = child.stem_conv.conv.kernel
    assert not np.array_equal(stem.numpy(), start[stem.path])
    last = child.block_names[0][-1]
    kernel = getattr(child, f"{last}_expand").conv.kernel
    assert np.array_equal(kernel.numpy(), start[kernel.path]) == (mode == "taken"), mode
