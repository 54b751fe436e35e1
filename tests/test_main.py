"""The command line: bad input gives one line and exit code 2; a tiny run trains,
evaluates, exports and resumes."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = ["--image_size=16", "--synthetic_identities=8", "--synthetic_images_per_identity=6",
        "--synthetic_heldout_identities=4", "--synthetic_heldout_images_per_identity=5",
        "--num_pairs=20", "--base_filters=4", "--embedding_dim=8", "--batch_size=8",
        "--warmup_epochs=1", "--pca_components=8", "--eval_batch_size=64"]


def run_main(*args, check=False):
  return subprocess.run([sys.executable, "-m", "enas_face.main", *args], cwd=ROOT,
                        capture_output=True, text=True, check=check,
                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.mark.parametrize("args, expected", [
    (["--mode=search_all"], "--mode=search_all"),
    (["--arc=0 1 x"], "--arc"),
    (["--arc=0 1 1"], "--arc"),  # 3 ints encode no whole number of layers
    (["--arc=7 0 0 0 0 0 0 0 0 0 0 0 0 0 0"], "--arc"),
    (["--arc_file=/no/such/arc.json"], "/no/such/arc.json"),
    (["--flagfile=/no/such/flags.cfg"], "/no/such/flags.cfg"),
    (["--image_size=36"], "--image_size=36"),
    (["--batch_size=0"], "--batch_size"),
    (["--batch_size=-4"], "--batch_size"),
    (["--warmup_epochs=10", "--epochs=5"], "--warmup_epochs"),
    (["--num_pairs=30"], "--num_pairs"),
    (["--stream=always"], "--stream=always with --dataset=synthetic"),  # nothing to stream
    (["--mode=eval", "--run_dir=/no/such/run"], "/no/such/run"),
    (["positional"], "positional"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, expected):
  result = run_main(*args)
  assert result.returncode == 2, result.stderr
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
  assert expected in lines[0]
  assert "Traceback" not in result.stderr


def test_bad_arc_file_content_names_the_file(tmp_path):
  path = tmp_path / "arc.json"
  path.write_text("{not json")
  result = run_main(f"--arc_file={path}")
  assert result.returncode == 2 and str(path) in result.stderr


@pytest.fixture(scope="module")
def tiny_run(tiny_fixed_run, tmp_path_factory):
  """This module's copy of the session's tiny run (tests/conftest.py), trained with
  `--mode=fixed --epochs=2 *TINY`: its tests evaluate, export, resume and refuse in it."""
  assert tiny_fixed_run.args[:2] == ["--mode=fixed", f"--run_dir={tiny_fixed_run.run_dir}"]
  assert sorted(tiny_fixed_run.args[2:]) == sorted(
      ["--epochs=2", "--export_format=saved_model,tflite", *TINY])
  return tiny_fixed_run.copy(str(tmp_path_factory.mktemp("run") / "tiny"))


@pytest.mark.slow
def test_fixed_run_writes_everything(tiny_run):
  with open(os.path.join(tiny_run, "metrics.json")) as f:
    metrics = json.load(f)
  for key in ("verification_accuracy", "verification_std", "tar_at_far_1e-3", "roc_auc",
              "identification_top1", "pca_baseline_verification_accuracy", "params", "flops"):
    assert key in metrics, key
  assert 0.0 <= metrics["verification_accuracy"] <= 1.0
  assert metrics["params"] > 0 and metrics["flops"] > 0
  assert os.path.exists(os.path.join(tiny_run, "saved_model", "saved_model.pb"))
  assert os.path.exists(os.path.join(tiny_run, "flags.txt"))
  assert "--epochs=2" in open(os.path.join(tiny_run, "flags.txt")).read()
  assert os.path.isdir(os.path.join(tiny_run, "tensorboard"))


@pytest.mark.slow
def test_eval_and_export_modes_use_the_run_folder(tiny_run, main_in_process):
  before = json.load(open(os.path.join(tiny_run, "metrics.json")))
  result = main_in_process("--mode=eval", f"--run_dir={tiny_run}")
  assert result.returncode == 0, result.stderr[-3000:]
  after = json.load(open(os.path.join(tiny_run, "metrics.json")))
  assert after["verification_accuracy"] == pytest.approx(before["verification_accuracy"])
  export_dir = os.path.join(tiny_run, "exported_again")
  result = main_in_process("--mode=export", f"--run_dir={tiny_run}", f"--export_dir={export_dir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.exists(os.path.join(export_dir, "saved_model.pb"))


@pytest.mark.slow
def test_rerun_resumes_after_the_last_epoch(tiny_run, tiny_fixed_run, main_in_process):
  result = main_in_process("--mode=fixed", f"--run_dir={tiny_run}", "--epochs=3", *TINY,
                           tiny_fixed_run.same_data())
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resuming training from" in result.stderr
  history = [json.loads(l) for l in open(os.path.join(tiny_run, "train_history.jsonl"))]
  assert [h["epoch"] for h in history] == [1, 2, 3]


@pytest.mark.slow
def test_run_folder_of_another_network_is_refused(tiny_run, tiny_fixed_run):
  result = run_main("--mode=fixed", f"--run_dir={tiny_run}", "--epochs=3", "--arc_file=",
                    "--arc=1 0 0 0 0 0 0 0 0 0 0 0 0 0 0", *TINY, tiny_fixed_run.same_data())
  assert result.returncode == 2
  assert "another network" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("changed, flag", [(["--head=arcface"], "--head"),
                                           (["--margin_scale=auto"], "--margin_scale"),
                                           (["--regularface_weight=0.1"], "--regularface_weight")])
def test_resume_with_another_head_or_loss_is_refused(tiny_run, tiny_fixed_run, changed, flag):
  """The run folder remembers its head: one error line naming the flag, nothing written."""
  before = open(os.path.join(tiny_run, "config.json")).read()
  result = run_main("--mode=fixed", f"--run_dir={tiny_run}", "--epochs=3", *TINY,
                    tiny_fixed_run.same_data(), *changed)
  assert result.returncode == 2, result.stderr[-2000:]
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], result.stderr
  assert open(os.path.join(tiny_run, "config.json")).read() == before


@pytest.mark.parametrize("args, expected", [
    (["--head=cosface", "--margin=0.3,0.2"], "--margin"),
    (["--head=combined", "--margin=0.5"], "--margin"),
    (["--head=sphereface", "--margin=2.5"], "--margin"),
    (["--head=softmax", "--margin=0.5"], "--margin"),
    (["--head=arcface", "--margin_scale=big"], "--margin_scale"),
    (["--head=arcface", "--margin_scale=0"], "--margin_scale"),
    (["--head=magface"], "--head"),
    (["--regularface_weight=-1"], "--regularface_weight"),
])
def test_bad_head_flags_are_one_line_and_exit_code_2(args, expected):
  result = run_main(*args)
  assert result.returncode == 2, result.stderr
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
