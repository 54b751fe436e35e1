"""Crash safety and reproducibility of the command line, on tiny synthetic runs:
SIGKILL in the middle of an epoch then rerun (fixed and search), a half-written
checkpoint, --deterministic, and the stop at a NaN/inf loss.

The runs use MirroredStrategy over 2 logical CPUs (as the paper's multi-GPU
setting would), so they also show that a mirrored run resumes and reproduces.
Both the fixed run and the search are killed in their last epoch (3 of 3): the kill
waits for the checkpoint of the previous epoch, measures the CPU seconds one epoch
took and lets the run spend a fraction of that, so it lands inside the epoch on a fast
or a loaded machine; each test asserts that it did.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

# Two layers, one reduction: 16x16 faces, 8 identities x 24 training images = 24 steps
# of 8 per epoch (about a second per epoch here).
TINY = ["--image_size=16", "--num_layers=2", "--num_reductions=1", "--synthetic_identities=8",
        "--synthetic_images_per_identity=30", "--synthetic_heldout_identities=4",
        "--synthetic_heldout_images_per_identity=5", "--num_pairs=20", "--base_filters=4",
        "--embedding_dim=8", "--batch_size=8", "--warmup_epochs=1", "--pca_components=8",
        "--eval_batch_size=64", "--distribution_strategy=mirrored", "--num_replicas=2",
        "--deterministic"]
FIXED_EPOCHS = 3
SEARCH_EPOCHS, CONTROLLER_STEPS, SAMPLES = 3, 2, 1
SEARCH = ["--mode=search", f"--search_epochs={SEARCH_EPOCHS}",
          f"--controller_steps={CONTROLLER_STEPS}", f"--controller_samples={SAMPLES}",
          "--controller_hidden=16", "--latency_warmup=1", "--latency_repeats=2",
          "--search_val_batch_size=8", "--num_final_samples=2", "--num_ranked=2"]


def command(*args):
  return [sys.executable, "-m", "enas_face.main", *args]


def run(*args):
  return subprocess.run(command(*args), cwd=ROOT, capture_output=True, text=True, env=ENV)


def start(*args):
  return subprocess.Popen(command(*args), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, env=ENV)


def checkpoint(run_dir, number):
  return os.path.join(run_dir, "checkpoints", f"ckpt-{number}.index")


def cpu_seconds(process) -> float:
  """User + system CPU seconds of `process`, all its threads (Linux /proc/<pid>/stat)."""
  with open(f"/proc/{process.pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(path, process, timeout=240, poll=0.01):
  """CPU seconds `process` spent until `path` exists; fails if the process ends first."""
  tic, cpu = time.time(), cpu_seconds(process)
  while not os.path.exists(path):
    assert process.poll() is None, f"the run ended (code {process.returncode}) before {path}"
    assert time.time() - tic < timeout, f"no {path} after {timeout} s"
    time.sleep(poll)
  return cpu_seconds(process) - cpu


def kill_inside_epoch(process, run_dir, epoch, fraction):
  """SIGKILLs `process` `fraction` of an epoch into `epoch` (>= 3: the cost of one epoch
  is measured between the checkpoints of the two before; epoch 1 includes tracing).

  The cost is counted in the process's own CPU seconds, not wall seconds: the other run
  of the fixture (or any other load on the machine) slows both alike, so the kill lands
  at the same point of the epoch on an idle or a loaded machine."""
  wait_for(checkpoint(run_dir, epoch - 2), process)
  epoch_cpu = wait_for(checkpoint(run_dir, epoch - 1), process)
  start = cpu_seconds(process)
  while process.poll() is None and cpu_seconds(process) - start < fraction * epoch_cpu:
    time.sleep(0.01)
  alive = process.poll() is None
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert alive, "the run ended before it could be killed"
  assert not os.path.exists(checkpoint(run_dir, epoch)), f"killed after epoch {epoch} ended"
  return epoch_cpu


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def tensorboard_scalars(run_dir, tag):
  """{step: value} of a scalar over every event file (a resumed run has several; the
  latest write of a step wins)."""
  import tensorflow as tf
  values = {}
  for path in sorted(glob.glob(os.path.join(run_dir, "tensorboard", "events.*")),
                     key=os.path.getmtime):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


@pytest.fixture(scope="module")
def fixed_runs(tmp_path_factory):
  """Run A: killed inside epoch 3 (the last), a half-written ckpt-3 left behind, rerun.
  Run B (same flags, alongside A): never interrupted."""
  base = tmp_path_factory.mktemp("fixed")
  killed, clean = str(base / "killed"), str(base / "clean")
  args = ["--mode=fixed", f"--epochs={FIXED_EPOCHS}", *TINY]
  process = start(f"--run_dir={killed}", *args)
  other = start(f"--run_dir={clean}", *args)
  try:
    kill_inside_epoch(process, killed, epoch=3, fraction=0.4)
    history_at_kill = read_jsonl(os.path.join(killed, "train_history.jsonl"))
    state_at_kill = open(os.path.join(killed, "checkpoints", "checkpoint")).read()
    # A crash while CheckpointManager saves ckpt-3: data files written, the `checkpoint`
    # state file (written last, atomically) still names ckpt-2.
    garbage = {checkpoint(killed, 3): b"\x00half-written index",
               os.path.join(killed, "checkpoints", "ckpt-3.data-00000-of-00001"): b"\x13" * 100}
    for path, content in garbage.items():
      with open(path, "wb") as f:
        f.write(content)
    resumed = run(f"--run_dir={killed}", *args)
    assert other.wait(timeout=300) == 0
  finally:
    for p in (process, other):
      if p.poll() is None:
        p.kill()
        p.wait()
  return {"killed": killed, "clean": clean, "resumed": resumed, "garbage": garbage,
          "history_at_kill": history_at_kill, "state_at_kill": state_at_kill}


@pytest.mark.slow
def test_fixed_run_killed_mid_epoch_resumes_without_gap_or_duplicate(fixed_runs):
  resumed, killed = fixed_runs["resumed"], fixed_runs["killed"]
  assert [h["epoch"] for h in fixed_runs["history_at_kill"]] == [1, 2]  # killed inside epoch 3
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  history = read_jsonl(os.path.join(killed, "train_history.jsonl"))
  assert [h["epoch"] for h in history] == list(range(1, FIXED_EPOCHS + 1))
  assert {h["replicas"] for h in history} == {2}  # mirrored, --num_replicas=2
  with open(os.path.join(killed, "checkpoints", "checkpoint")) as f:
    assert f.readline().strip() == f'model_checkpoint_path: "ckpt-{FIXED_EPOCHS}"'
  assert os.path.exists(os.path.join(killed, "metrics.json"))
  assert os.path.exists(os.path.join(killed, "saved_model", "saved_model.pb"))


@pytest.mark.slow
def test_half_written_checkpoint_is_ignored_and_replaced(fixed_runs):
  resumed, killed = fixed_runs["resumed"], fixed_runs["killed"]
  assert fixed_runs["state_at_kill"].startswith('model_checkpoint_path: "ckpt-2"')
  assert "resuming training from" in resumed.stderr and "ckpt-2 " in resumed.stderr, \
      resumed.stderr[-3000:]
  for path, content in fixed_runs["garbage"].items():  # epoch 3 was saved over them
    with open(path, "rb") as f:
      assert f.read() != content
  import tensorflow as tf
  reader = tf.train.load_checkpoint(os.path.join(killed, "checkpoints", "ckpt-3"))
  assert reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE") == 3


@pytest.mark.slow
def test_no_temporary_file_is_left_behind(fixed_runs, search_runs):
  for run_dir in (fixed_runs["killed"], fixed_runs["clean"], search_runs["killed"],
                  search_runs["clean"]):
    leftovers = [os.path.join(d, n) for d, dirs, files in os.walk(run_dir)
                 for n in dirs + files if ".tmp" in n]
    assert leftovers == [], leftovers
  for name in ("search_summary.json", "arcs_ranked.json"):
    json.load(open(os.path.join(search_runs["killed"], name)))


@pytest.mark.slow
def test_deterministic_fixed_runs_give_identical_losses(fixed_runs):
  """Bit-identical, although run A was killed and resumed from a checkpoint: the data
  pipeline is seeded per (seed, epoch, image), and the checkpoint holds every state."""
  killed = read_jsonl(os.path.join(fixed_runs["killed"], "train_history.jsonl"))
  clean = read_jsonl(os.path.join(fixed_runs["clean"], "train_history.jsonl"))
  keys = ("epoch", "loss", "train_accuracy", "val_accuracy", "lr")
  assert [[h[k] for k in keys] for h in killed] == [[h[k] for k in keys] for h in clean]
  assert len({h["loss"] for h in clean}) == FIXED_EPOCHS  # the losses did change


@pytest.fixture(scope="module")
def search_runs(tmp_path_factory):
  """Run A: killed inside epoch 3's child training, rerun to the end. Run B: the same
  flags, never interrupted, started after A.

  Both share one --latency_cache file: latency is measured wall time, the one input
  of the reward that no seed fixes, so B reads A's measurements (every architecture
  B samples, A sampled and measured first) and gets the same rewards, hence the same
  controller updates and the same architectures."""
  base = tmp_path_factory.mktemp("search")
  killed, clean = str(base / "killed"), str(base / "clean")
  args = [*SEARCH, *TINY, f"--latency_cache={base / 'latency_cache.jsonl'}"]
  process = start(f"--run_dir={killed}", *args)
  try:
    kill_inside_epoch(process, killed, epoch=3, fraction=0.25)
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
  log_at_kill = read_jsonl(os.path.join(killed, "sampled_arcs.jsonl"))
  resumed = run(f"--run_dir={killed}", *args)
  clean_result = run(f"--run_dir={clean}", *args)
  return {"killed": killed, "clean": clean, "resumed": resumed, "clean_result": clean_result,
          "log_at_kill": log_at_kill}


@pytest.mark.slow
def test_search_killed_mid_epoch_has_a_continuous_log(search_runs):
  resumed = search_runs["resumed"]
  assert {r["epoch"] for r in search_runs["log_at_kill"]} == {1, 2}  # killed inside epoch 3
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resuming search from" in resumed.stderr
  assert "MirroredStrategy over ['/cpu:0', '/cpu:1']" in resumed.stderr
  records = read_jsonl(os.path.join(search_runs["killed"], "sampled_arcs.jsonl"))
  keys = [(r["epoch"], r["step"], r["sample_index"]) for r in records]
  expected = [(e, (e - 1) * CONTROLLER_STEPS + s, q) for e in range(1, SEARCH_EPOCHS + 1)
              for s in range(1, CONTROLLER_STEPS + 1) for q in range(SAMPLES)]
  assert keys == expected  # epochs and controller steps contiguous, no duplicate
  with open(os.path.join(search_runs["killed"], "checkpoints", "checkpoint")) as f:
    assert f.readline().strip() == f'model_checkpoint_path: "ckpt-{SEARCH_EPOCHS}"'


@pytest.mark.slow
def test_deterministic_searches_sample_the_same_architectures(search_runs):
  assert search_runs["clean_result"].returncode == 0, search_runs["clean_result"].stderr[-3000:]
  killed = read_jsonl(os.path.join(search_runs["killed"], "sampled_arcs.jsonl"))
  clean = read_jsonl(os.path.join(search_runs["clean"], "sampled_arcs.jsonl"))
  assert killed == clean  # architectures, accuracies, latencies, rewards, log-probabilities
  assert len({r["arc"] for r in clean}) > 1
  losses = tensorboard_scalars(search_runs["killed"], "child_loss")
  assert sorted(losses) == list(range(1, SEARCH_EPOCHS + 1))
  assert losses == tensorboard_scalars(search_runs["clean"], "child_loss")
  ranked = [json.load(open(os.path.join(search_runs[k], "arcs_ranked.json")))["architectures"]
            for k in ("killed", "clean")]
  assert [e["encoding"] for e in ranked[0]] == [e["encoding"] for e in ranked[1]]


@pytest.mark.slow
def test_nan_loss_stops_with_exit_code_3_and_keeps_the_last_checkpoint(fixed_runs):
  """A real divergence: the finished clean run, rerun for one more epoch at --lr_max=1e30
  (a fixed run folder accepts other training and strategy settings), blows up at once.
  It resumes the mirrored run's checkpoint under the default strategy."""
  run_dir = fixed_runs["clean"]
  checkpoints = os.path.join(run_dir, "checkpoints")

  def snapshot():
    return {name: open(os.path.join(checkpoints, name), "rb").read()
            for name in sorted(os.listdir(checkpoints))}

  before = snapshot()
  history_before = open(os.path.join(run_dir, "train_history.jsonl")).read()
  result = run(f"--run_dir={run_dir}", "--mode=fixed", f"--epochs={FIXED_EPOCHS + 1}",
               "--lr_max=1e30", *TINY, "--distribution_strategy=default", "--num_replicas=0")
  assert result.returncode == 3, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, result.stderr[-3000:]
  assert ("nan" in errors[0] or "inf" in errors[0]) and f"ckpt-{FIXED_EPOCHS}" in errors[0]
  assert f"epoch {FIXED_EPOCHS + 1}" in errors[0]
  assert "Traceback" not in result.stderr
  assert snapshot() == before  # same files, same bytes: nothing saved after the NaN
  assert open(os.path.join(run_dir, "train_history.jsonl")).read() == history_before
