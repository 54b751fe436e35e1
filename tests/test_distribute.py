"""tf.distribute on this CPU: a mirrored training step equals one device's, two-process
multi-worker runs of both modes finish with only the chief writing, and bad settings
fail with one `error:` line. (The end-to-end --distribution_strategy=mirrored
--num_replicas=2 runs of both modes are in test_resume.py, which also kills and resumes them.)

Logical CPU devices must be configured before TensorFlow initialises its runtime,
so every strategy runs in a subprocess (tests/distributed_check.py or the CLI).
Run with -s to see the measured differences and the two-worker wall times.
"""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
TINY = ["--image_size=16", "--num_layers=2", "--num_reductions=1", "--synthetic_identities=8",
        "--synthetic_images_per_identity=6", "--synthetic_heldout_identities=4",
        "--synthetic_heldout_images_per_identity=5", "--num_pairs=20", "--base_filters=4",
        "--embedding_dim=8", "--batch_size=8", "--warmup_epochs=1", "--pca_components=8",
        "--eval_batch_size=64"]
SEARCH = ["--mode=search", "--search_epochs=2", "--controller_steps=1",
          "--controller_samples=1", "--controller_hidden=16", "--latency_warmup=1",
          "--latency_repeats=2", "--search_val_batch_size=8", "--num_final_samples=2"]
FIXED = ["--mode=fixed", "--epochs=2"]


def command(*args):
  return [sys.executable, "-m", "enas_face.main", *args]


def run_main(*args, env=None):
  return subprocess.run(command(*args), cwd=ROOT, capture_output=True, text=True,
                        env=env or ENV)


def run_together(*commands, timeout=400):
  """Runs (args, env) pairs at the same time; returns their CompletedProcesses and the
  wall time until the last one ended."""
  tic = time.perf_counter()
  processes = [subprocess.Popen(command(*args), cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
               for args, env in commands]
  results = []
  try:
    for process, (args, _) in zip(processes, commands):
      stdout, stderr = process.communicate(timeout=timeout)
      results.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.wait()
  return results, time.perf_counter() - tic


def free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def mirrored_report():
  """One run of tests/distributed_check.py: three SGD steps on global batches of 16 (8 per
  replica) from identical weights, for the fixed child, the shared child and the shared
  child with --shared_update=taken."""
  result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "distributed_check.py"),
                           "--replicas=2", "--steps=3", "--batch=16",
                           "--children=fixed,shared,shared_taken"],
                          cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  line = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


@pytest.mark.slow
def test_mirrored_training_step_matches_one_device(mirrored_report):
  """Tolerances: float32 sums taken in another order (two half-batch sums, a ring
  all-reduce) differ by ~1e-7 relative per step, amplified by three steps at lr 0.1
  with momentum: measured loss differences 4e-7 (fixed) and 2e-6 (shared) relative,
  weight differences <= 1e-6 (fixed; numpy.allclose rtol=1e-5 atol=1e-6 holds) and
  5e-6 (shared) absolute, while the weights moved by ~0.3. The bounds below are 5x
  and 20x those figures; the bugs they guard against are far larger: a loss
  divided by the per-replica instead of the global batch doubles the step
  (weights off by ~0.1-0.3), and per-replica BatchNorm in the fixed child changes
  the loss by 2 % (0.05) and the weights by 0.28 (`distributed_check.py --gaps`).
  """
  report = mirrored_report
  assert report["replicas"] == 2
  for kind in ("fixed", "shared"):
    mirrored = report[kind]["mirrored"]
    print(f"{kind}: loss max rel diff {mirrored['loss_max_rel']:.2e}, weight max abs diff "
          f"{mirrored['weight_max_abs']:.2e} (allclose ratio {mirrored['weight_max_ratio']:.2f}, "
          f"{mirrored['worst']}); weights moved {report[kind]['weights_moved_max_abs']:.3f}")
    assert len(mirrored["losses"]) == 3
    assert report[kind]["weights_moved_max_abs"] > 0.05  # the steps did something
    assert mirrored["loss_max_rel"] < 1e-5
    assert mirrored["weight_max_abs"] < 1e-4
  assert report["fixed"]["mirrored"]["weight_max_ratio"] < 5  # allclose(rtol 5e-5, atol 5e-6)
  assert report["fixed"]["mirrored"]["compared_weights"] > report["shared"]["mirrored"][
      "compared_weights"] / 2  # moving statistics included for the fixed child


@pytest.mark.slow
def test_mirrored_taken_update_keeps_replicas_equal_and_matches_one_device(mirrored_report):
  """--shared_update=taken under MirroredStrategy (2 logical CPUs): each replica updates its
  own copy from the summed gradients, so the copies stay bit-identical; modules no step ran
  keep their initial weights; losses and weights agree with the one-device reference (same
  TakenUpdate). Weight bound: measured 1.0e-4 at layer0_sep5x5, whose first run is the
  third step on ghost batches of 8 (a sensitive gradient: `all` shows up to 1.7e-3 on the
  same module with --steps=6); a wrong sum or a replica left behind is off by ~0.1."""
  taken = mirrored_report["shared_taken"]
  mirrored = taken["mirrored"]
  print(f"taken: loss max rel diff {mirrored['loss_max_rel']:.2e}, weight max abs diff "
        f"{mirrored['weight_max_abs']:.2e} ({mirrored['worst']}), replica spread "
        f"{mirrored['replica_spread_max_abs']}, {mirrored['untaken_weights']} untaken weights "
        f"moved {mirrored['untaken_moved_max_abs']}")
  assert taken["weights_moved_max_abs"] > 0.05
  assert mirrored["replica_spread_max_abs"] == 0.0
  assert mirrored["untaken_weights"] > 0 and mirrored["untaken_moved_max_abs"] == 0.0
  # `all` moves the untaken modules (momentum, weight decay): the check can tell them apart.
  assert mirrored_report["shared"]["mirrored"]["untaken_moved_max_abs"] > 0.0
  assert mirrored["loss_max_rel"] < 1e-5
  assert mirrored["weight_max_abs"] < 5e-4


def tf_config(ports, index):
  return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                     "task": {"type": "worker", "index": index}})


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
  """Two processes (MultiWorkerMirroredStrategy on 127.0.0.1): a search, then a fixed
  run of its best architecture; each pair shares one --run_dir."""
  base = tmp_path_factory.mktemp("workers")
  runs = {}
  for mode, args in (("search", SEARCH),
                     ("fixed", [*FIXED, f"--arc_file={base / 'search' / 'arcs_ranked.json'}"]),
                     ("multi_trial", [*SEARCH, "--search_strategy=multi_trial", "--trial_epochs=1",
                                      "--reward=accuracy"])):
    ports = free_ports(2)
    run_dir = str(base / mode)
    results, seconds = run_together(*[
        ([*args, "--distribution_strategy=multi_worker", f"--run_dir={run_dir}", *TINY],
         {**ENV, "TF_CONFIG": tf_config(ports, index)}) for index in range(2)])
    print(f"two-worker {mode} run: {seconds:.1f} s wall")
    runs[mode] = (run_dir, results, seconds)
  return runs


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["search", "fixed", "multi_trial"])
def test_two_workers_finish_and_only_the_chief_writes(two_workers, mode):
  run_dir, (chief, other), seconds = two_workers[mode]
  assert chief.returncode == 0, chief.stderr[-4000:]
  assert other.returncode == 0, other.stderr[-4000:]
  assert "worker 0 of 2 (chief), 2 replicas in sync" in chief.stderr
  assert "worker 1 of 2, 2 replicas in sync" in other.stderr
  names = set(os.listdir(run_dir))
  assert {"config.json", "metrics.json" if mode == "fixed" else "sampled_arcs.jsonl"} <= names
  assert "workers" not in names  # the other worker's scratch checkpoints are gone
  assert "results" in chief.stdout and other.stdout.strip() == ""
  if mode == "multi_trial":  # every trial trained by both workers, written by the chief
    records = read_jsonl(os.path.join(run_dir, "sampled_arcs.jsonl"))
    trials = read_jsonl(os.path.join(run_dir, "trials.jsonl"))
    assert [r["epoch"] for r in records] == [1, 2]
    assert sorted(t["encoding"] for t in trials) == sorted({r["encoding"] for r in records})
    for trial in os.listdir(os.path.join(run_dir, "trials")):
      history = read_jsonl(os.path.join(run_dir, "trials", trial, "train_history.jsonl"))
      assert {h["replicas"] for h in history} == {2}
      assert "workers" not in os.listdir(os.path.join(run_dir, "trials", trial))
  elif mode == "search":
    records = read_jsonl(os.path.join(run_dir, "sampled_arcs.jsonl"))
    assert [r["epoch"] for r in records] == [1, 2]  # written once, not once per worker
  else:
    history = read_jsonl(os.path.join(run_dir, "train_history.jsonl"))
    assert [h["epoch"] for h in history] == [1, 2] and {h["replicas"] for h in history} == {2}
  assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == [
      "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index",
      "ckpt-2.data-00000-of-00001", "ckpt-2.index"]


@pytest.mark.parametrize("value, expected", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{not json", "TF_CONFIG is not valid"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "TF_CONFIG is not valid"),
    ('{"cluster": ["127.0.0.1:1"], "task": {"type": "worker", "index": 0}}', "TF_CONFIG"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
     "TF_CONFIG task 'worker' 1 is not in its"),
])
def test_bad_tf_config_is_one_error_line_and_exit_code_2(tmp_path, value, expected):
  env = {k: v for k, v in ENV.items() if k != "TF_CONFIG"}
  if value is not None:
    env["TF_CONFIG"] = value
  result = run_main("--mode=fixed", "--distribution_strategy=multi_worker",
                    f"--run_dir={tmp_path / 'run'}", env=env)
  assert result.returncode == 2, result.stderr[-3000:]
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
  assert not os.path.exists(tmp_path / "run")  # refused before the run folder is made


def test_the_old_strategy_flag_reaches_the_distribution_strategy(tmp_path):
  """--strategy, the flag's name before --distribution_strategy, still sets it."""
  env = {k: v for k, v in ENV.items() if k != "TF_CONFIG"}
  result = run_main("--mode=fixed", "--strategy=multi_worker", f"--run_dir={tmp_path / 'run'}",
                    env=env)
  assert result.returncode == 2, result.stderr[-3000:]
  assert "error: --distribution_strategy=multi_worker needs the TF_CONFIG" in result.stderr


def test_batch_not_divisible_by_the_replicas_is_a_clear_error(tmp_path):
  result = run_main("--mode=fixed", "--distribution_strategy=mirrored", "--num_replicas=3",
                    f"--run_dir={tmp_path / 'run'}", *TINY)  # --batch_size=8
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and "--batch_size=8" in errors[0] and "3 replicas" in errors[0], \
      result.stderr[-3000:]
  assert "Traceback" not in result.stderr
