"""--shared_update=taken: a one-shot step updates only the candidates its architecture ran.

Keras SGD with momentum mu and decoupled weight decay wd (keras/src/optimizers/sgd.py,
base_optimizer.apply), on a variable v with gradient g, lr = schedule(t) at the step count
t before the step, the decay first:

    v <- v - v (wd lr);   m <- m mu - g lr;   v <- v + m;   t <- t + 1 once per step

(v <- v - g lr without momentum. Keras writes the decay (v wd) lr; inside a tf.function
grappler multiplies the two scalars first, so Keras computes v (wd lr) too.)

--shared_update=all is Keras's own apply_gradients on every variable: a candidate the
step's architecture did not run has g = 0, yet momentum and decay still move it and its
update costs as much as a taken one's. `TakenUpdate` computes the same numbers, bit for
bit, for the variables every architecture runs and, inside one `tf.switch_case` per op
decision and one `tf.cond` per skip bit (or per skip-only reduction: OR of its skips'
bits), for the candidates the architecture ran; the others and their momentum stay
bit-identical, as in PyTorch ENAS ports where their gradient is None. It is also leaner
where it updates: lr and wd lr once per step (Keras's decay evaluates the schedule once
per variable) and momentum in one fused kernel per variable (ResourceApplyKerasMomentum).
It uses the optimizer's own schedule, momentum slots and iteration counter, so
checkpoints and resume see the same optimizer either way.

A supernet whose candidates are rows of one variable (the MobileFaceNet supernet's
per-width affine [K, C]: row j serves width candidate j) declares them as `rows`:
(position, variable) pairs; only row arc[position] of such a variable moves (the same
step, on that row: a sparse momentum kernel, ResourceSparseApplyKerasMomentum).

Under a tf.distribute strategy the gradients are summed over the replicas first (as Keras
does) and each replica updates its own copy of the variables (Keras variables aggregate
"none": an assignment in replica context writes the local copy); every replica sees the
same sums and the same architecture, so the copies stay equal.
"""
from __future__ import annotations

import collections

import keras
import tensorflow as tf

SHARED_UPDATE_FLAG = "--shared_update"

Condition = tuple[tuple[int, int], ...]  # the module runs iff arc[p] == v for some (p, v)


def check_optimizer(optimizer: keras.optimizers.Optimizer) -> None:
  """ValueError unless `optimizer` is the SGD `TakenUpdate` reproduces (make_optimizer's)."""
  problems = []
  if not isinstance(optimizer, keras.optimizers.SGD):
    problems.append(f"it is {type(optimizer).__name__}, not SGD")
  else:
    if optimizer.nesterov:
      problems.append("nesterov=True")
    for name in ("clipnorm", "clipvalue", "global_clipnorm", "loss_scale_factor",
                 "gradient_accumulation_steps"):
      if getattr(optimizer, name, None):
        problems.append(f"{name}={getattr(optimizer, name)}")
    if optimizer.use_ema:
      problems.append("use_ema=True")
  if problems:
    raise ValueError(f"{SHARED_UPDATE_FLAG}=taken reproduces Keras SGD (momentum, decoupled "
                     f"weight decay) only; this optimizer has {', '.join(problems)}")


class TakenUpdate:
  """`update(gradients, arc)`: the SGD step above on `variables` (gradients in that order),
  called inside the train step where `optimizer.apply_gradients` would be.

  `conditional`: (condition, trainable variables) per module only some architectures run
  (a supernet's conditional_variables); every other variable updates every step.
  `rows`: (position, variable) whose row arc[position] alone is the taken candidate (a
  supernet's row_variables).
  """

  def __init__(self, optimizer: keras.optimizers.Optimizer, variables,
               conditional: list[tuple[Condition, list]], rows=()):
    check_optimizer(optimizer)
    if not optimizer.built:
      optimizer.build(variables)
    self.optimizer, self.variables = optimizer, list(variables)
    constrained = [v.path for v in self.variables if v.constraint is not None]
    if constrained:  # Keras's apply would project them after the step
      raise ValueError(f"{SHARED_UPDATE_FLAG}=taken does not apply variable constraints; "
                       f"constrained: {', '.join(constrained)}")
    index = {id(v): k for k, v in enumerate(self.variables)}
    by_condition = collections.defaultdict(list)
    for condition, module_variables in conditional:
      for v in module_variables:
        if id(v) not in index:
          raise ValueError(f"{SHARED_UPDATE_FLAG}=taken: candidate variable {v.path} is not "
                           "among the trained variables")
        by_condition[tuple(condition)].append(index[id(v)])
    self.row_position = {}
    for position, v in rows:
      if id(v) not in index:
        raise ValueError(f"{SHARED_UPDATE_FLAG}=taken: candidate variable {v.path} is not "
                         "among the trained variables")
      self.row_position[index[id(v)]] = int(position)
    taken_somewhere = {k for ks in by_condition.values() for k in ks}
    self.always = [k for k in range(len(self.variables)) if k not in taken_somewhere]
    # Conditions on one position with several values share a switch (an op decision);
    # the rest (a skip bit, an OR of skip bits) get a cond each.
    by_position = collections.defaultdict(dict)
    self.conds = []
    for condition, ks in by_condition.items():
      if len(condition) == 1:
        (position, value), = condition
        by_position[position][value] = sorted(ks)
      else:
        self.conds.append((condition, sorted(ks)))
    self.switches = []
    for position, branches in sorted(by_position.items()):
      if len(branches) == 1:
        (value, ks), = branches.items()
        self.conds.append((((position, value),), ks))
      else:
        self.switches.append((position, branches))
    try:
      indices = [optimizer._get_variable_index(v) for v in self.variables]  # pylint: disable=protected-access
    except KeyError as e:
      raise ValueError(f"{SHARED_UPDATE_FLAG}=taken: the optimizer was built on other "
                       f"variables than the train step's ({e})") from e
    self.slots = [optimizer.momentums[i] if optimizer.momentum else None for i in indices]
    self.decays = [optimizer.weight_decay is not None
                   and optimizer._use_weight_decay(v)  # pylint: disable=protected-access
                   for v in self.variables]
    self.dtypes = sorted({_tf_variable(v).dtype for v in self.variables}, key=str)

  def _apply(self, ks, gradients, scalars, arc) -> None:
    """The Keras SGD step on the variables `ks`; scalars[dtype] = (lr, wd lr, mu)."""
    for k in ks:
      if gradients[k] is None:  # Keras skips a variable without a gradient altogether
        continue
      variable, slot = _tf_variable(self.variables[k]), self.slots[k]
      lr, decay, momentum = scalars[variable.dtype]
      gradient = tf.cast(gradients[k], variable.dtype)
      if k in self.row_position:
        self._apply_row(k, arc[self.row_position[k]], gradient, lr, decay, momentum)
        continue
      if self.decays[k]:
        variable.assign_sub(variable * decay)
      if slot is None:
        variable.assign_sub(gradient * lr)
      else:  # m <- m mu - g lr; v <- v + m in one kernel (Keras: two assignments, 5 ops)
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=_tf_variable(slot).handle, lr=lr, grad=gradient,
            momentum=momentum, use_nesterov=False)

  def _apply_row(self, k, row, gradient, lr, decay, momentum) -> None:
    """The step above on row `row` of variable k alone; its other rows and theirs in the
    momentum slot stay as they are."""
    variable, slot = _tf_variable(self.variables[k]), self.slots[k]
    row = tf.reshape(tf.cast(row, tf.int32), [1])
    if self.decays[k]:
      variable.scatter_sub(tf.IndexedSlices(tf.gather(variable, row) * decay, row))
    gradient = tf.gather(gradient, row)
    if slot is None:
      variable.scatter_sub(tf.IndexedSlices(gradient * lr, row))
    else:
      tf.raw_ops.ResourceSparseApplyKerasMomentum(
          var=variable.handle, accum=_tf_variable(slot).handle, lr=lr, grad=gradient,
          indices=row, momentum=momentum, use_nesterov=False)

  def __call__(self, gradients, arc) -> None:
    """Inside the replica function, where `optimizer.apply_gradients` would be."""
    gradients = list(gradients)
    if len(gradients) != len(self.variables):
      raise ValueError(f"{len(gradients)} gradients for {len(self.variables)} variables")
    optimizer = self.optimizer
    learning_rate = optimizer.learning_rate  # schedule(t), t before this step, read once
    scalars = {}
    for dtype in self.dtypes:  # built here: a tensor made inside a branch stays there
      lr = tf.cast(learning_rate, dtype)
      scalars[dtype] = (lr, tf.cast(optimizer.weight_decay or 0.0, dtype) * lr,
                        tf.cast(optimizer.momentum, dtype))
    if tf.distribute.has_strategy():  # sum over replicas, as Keras's apply does
      present = [k for k, g in enumerate(gradients) if g is not None]
      summed = tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, [gradients[k] for k in present])
      for k, g in zip(present, summed):
        gradients[k] = g
    arc = tf.cast(arc, tf.int32)
    self._apply(self.always, gradients, scalars, arc)
    for position, branches in self.switches:
      cases = [lambda ks=branches.get(value, []): self._apply(ks, gradients, scalars, arc)
               for value in range(max(branches) + 1)]
      tf.switch_case(arc[position], cases, default=lambda: None)
    for condition, ks in self.conds:
      taken = tf.reduce_any(tf.stack([tf.equal(arc[p], v) for p, v in condition]))
      tf.cond(taken, lambda ks=ks: self._apply(ks, gradients, scalars, arc), lambda: None)
    optimizer.iterations.assign_add(1)


def _tf_variable(variable):
  """The tf.Variable behind a Keras variable (what Keras's TF optimizer assigns to)."""
  return variable.value if isinstance(variable, keras.Variable) else variable
