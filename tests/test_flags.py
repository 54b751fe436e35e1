"""Every shipped flagfile parses into a valid frozen config; configs round-trip JSON."""
import dataclasses
import glob
import os

import pytest
from absl import flags

from enas_face import flags as enas_flags
from enas_face import config
from enas_face.config import ConfigError
from enas_face import spaces

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGFILES = sorted(glob.glob(os.path.join(ROOT, "flags", "*.cfg")))


def parse(*argv):
  values = flags.FLAGS
  values.unparse_flags()
  values(["prog", *argv])
  return enas_flags.config_from_flags(values)


def test_flagfiles_exist():
  names = {os.path.basename(p) for p in FLAGFILES}
  assert {"demo.cfg", "paper_fixed.cfg", "paper_search.cfg"} <= names


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
@pytest.mark.parametrize("mode", ["search", "fixed"])
def test_flagfile_gives_a_valid_config(path, mode, tmp_path, monkeypatch):
  # Real-data recipes name data/... relative to the checkout; give them stand-in files.
  aligned = tmp_path / "data" / "lfw" / "aligned_112"
  aligned.mkdir(parents=True)
  (aligned / "manifest.json").write_text("{}")
  (tmp_path / "data" / "lfw" / "pairsDevTest.txt").write_text("1\nA 1 2\nA 1 B 1\n")
  (tmp_path / "flags").symlink_to(os.path.join(ROOT, "flags"))  # a flagfile naming another
  monkeypatch.chdir(tmp_path)
  config = parse(f"--flagfile={path}", f"--mode={mode}")
  assert spaces.config_from_json(spaces.config_to_json(config)) == config


def test_paper_settings():
  search = parse(f"--flagfile={ROOT}/flags/paper_search.cfg", "--mode=search")
  assert (search.model.image_size, search.model.num_layers, search.search.epochs) == (112, 5, 100)
  assert search.search.controller_hidden == 100 and search.train.batch_size == 1024
  assert (search.search.controller_lr, search.search.controller_lr_decay_epochs) == (0.1, 20)
  fixed = parse(f"--flagfile={ROOT}/flags/paper_fixed.cfg", "--mode=fixed")
  assert (fixed.train.epochs, fixed.train.warmup_epochs, fixed.train.lr_max) == (150, 20, 0.1)
  assert search.distribution_strategy == fixed.distribution_strategy == "mirrored"


def test_every_flag_has_help_text():
  for flag in enas_flags.own_flags(flags.FLAGS):
    assert flag.help and len(flag.help) > 10, flag.name


def test_export_format_is_validated_and_round_trips():
  assert parse().export_format == ("saved_model",)
  config = parse("--export_format=tflite_int8,saved_model,tflite_int8")
  assert config.export_format == ("tflite_int8", "saved_model")
  assert spaces.config_from_json(spaces.config_to_json(config)) == config


@pytest.mark.parametrize("value", ["saved_model,coreml", "tflite_int4", ""])
def test_bad_export_format_names_the_flag(value):
  with pytest.raises(ConfigError, match="--export_format"):
    parse(f"--export_format={value}")


def test_set_flags_become_a_set_config_that_round_trips():
  config = parse("--mode=eval", "--aggregation=mean,qanpp", "--set_size=4", "--set_pairs=200")
  assert config.sets.aggregation == ("mean", "qanpp") and config.sets.set_size == 4
  assert config.sets.num_pairs == 200
  assert spaces.config_from_json(spaces.config_to_json(config)) == config


@pytest.mark.parametrize("argv, flag", [
    (["--aggregation=mean,median"], "--aggregation"),
    (["--mode=export", "--aggregation=mean,qanpp"], "--aggregation"),
    (["--set_pairs=30"], "--set_pairs=30"),
    (["--set_heldout=/no/such/pairs.txt"], "--set_heldout"),
    (["--set_heldout_fraction=1.0"], "--set_heldout_fraction"),
    (["--sets=video:clips"], "--sets=video:clips"),
    (["--sets=folder:/no/such/frames"], "--sets=folder:/no/such/frames"),
])
def test_bad_set_flags_name_the_flag(argv, flag):
  with pytest.raises(ConfigError, match=flag):
    parse(*argv)


def test_synthetic_noise_flags_reach_the_data_config_and_bad_values_name_the_flag():
  config = parse("--synthetic_label_noise=0.2", "--synthetic_outliers=0.05",
                 "--synthetic_near_duplicates=3")
  assert (config.data.synthetic_label_noise, config.data.synthetic_outliers,
          config.data.synthetic_near_duplicates) == (0.2, 0.05, 3)
  with pytest.raises(ConfigError, match="--synthetic_label_noise=0.6 \\+ --synthetic_outliers"):
    parse("--synthetic_label_noise=0.6", "--synthetic_outliers=0.5")
  with pytest.raises(ConfigError, match="--synthetic_near_duplicates=60"):
    parse("--synthetic_near_duplicates=60")
  for bad in ("--synthetic_label_noise=0.99", "--synthetic_outliers=-0.1",
              "--synthetic_near_duplicates=-2"):
    with pytest.raises(flags.IllegalFlagValueError, match=bad):
      parse(bad)


def choices(name: str) -> tuple[str, ...]:
  return tuple(flags.FLAGS[name].parser.enum_values)


def test_flag_choices_are_the_implementations_registries():
  """Every enum flag offers exactly the names its implementation knows: a name added to one
  side only fails here."""
  # pylint: disable=import-outside-toplevel
  from enas_face import config, costs
  from enas_face.data import align
  from enas_face.evaluation import sets, verification
  from enas_face.search import controller, rewards, strategies
  assert set(choices("reward")) == set(rewards.REWARDS)
  from enas_face.search import proposer_sampler
  assert set(choices("controller")) == set(controller.SAMPLERS) | set(
      proposer_sampler.PROPOSER_CONTROLLERS)
  assert choices("search_strategy") == config.SEARCH_STRATEGIES
  # The search loop runs one_shot and multi_trial; the differentiable search has its own loop.
  assert set(config.SEARCH_STRATEGIES) - set(strategies.LOOP_STRATEGIES) == {config.DIFFERENTIABLE}
  assert set(strategies.LOOP_STRATEGIES) < set(config.SEARCH_STRATEGIES)
  assert choices("distribution_strategy") == config.DISTRIBUTION_STRATEGIES
  assert choices("cost_model") == costs.COST_MODELS
  assert choices("quality_net") == config.QUALITY_NETS
  assert choices("head") == config.HEADS
  # Lists the flags cannot import without loading scikit-learn or OpenCV: checked equal here.
  assert choices("protocol") == verification.PROTOCOLS
  assert choices("face_policy") == align.FACE_POLICIES
  assert choices("on_no_face") == align.NO_FACE_POLICIES
  assert config.AGGREGATIONS == sets.METHODS


def test_flags_import_no_tensorflow():
  """Bad flags fail before TensorFlow loads: flags and config import no deep-learning framework
  (a fresh interpreter, since this one may have TensorFlow loaded already)."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  code = ("import sys, enas_face.flags, enas_face.config\n"
          "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
          "sys.exit(f'imported {bad}' if bad else 0)\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]


SECTIONS = (config.ModelConfig, config.DataConfig, config.TrainConfig, config.EvalConfig,
            config.SearchConfig, config.HeadConfig, config.SetConfig, config.DistillConfig,
            config.PhotoConfig,
            config.RunConfig)
# RunConfig fields no flag sets: the sections, and the samples (--arc / --arc_file).
NOT_FROM_A_FLAG = {"arc", "candidate_arcs", "model", "data", "train", "eval", "search", "head",
                   "sets", "distill"}
# Flags that feed no field of their own name.
NOT_A_FIELD = {"arc": "--arc and --arc_file become RunConfig.arc / candidate_arcs",
               "arc_file": "--arc and --arc_file become RunConfig.arc / candidate_arcs"}
# Deliberate differences between a flag's default and its field's default, and why.
DEFAULTS_THAT_DIFFER = {
    (config.SearchConfig, "cost_target"):
        "--cost_target=0 means 'the cost model's default': DEFAULT_TARGET_MS for the latency "
        "models (the default, measured, included), required for flops and params",
    (config.DataConfig, "seed"):
        "--data_seed=-1 means 'the --seed' (default 0, DataConfig.seed's default)",
}


def test_every_field_is_filled_from_a_flag_of_its_section_or_a_listed_rename():
  """config_from_flags fills every section by reflection (flags.from_flags): each field's flag
  (its name, or config.FLAG_RENAMES) exists, and every flag feeds a field."""
  own = {flag.name: flag for flag in enas_flags.own_flags(flags.FLAGS)}
  fed = set()
  for section in SECTIONS:
    for field in dataclasses.fields(section):
      if section is config.RunConfig and field.name in NOT_FROM_A_FLAG:
        continue
      name = config.flag_of(section, field.name)
      assert name in own, f"{section.__name__}.{field.name}: no flag --{name}"
      fed.add(name)
  aliases = {name for name, flag in own.items() if flag.help.startswith("Alias for --")}
  assert set(own) - fed - aliases == set(NOT_A_FIELD)


def test_every_flag_default_equals_its_config_field_default():
  """The flag and the dataclass cannot drift apart: a default changed in one place only fails
  here, except the listed, deliberate differences (which must still differ)."""
  def plain(value):
    return tuple(value) if isinstance(value, list) else value

  for section in SECTIONS:
    for field in dataclasses.fields(section):
      if field.default is dataclasses.MISSING or (section is config.RunConfig
                                                  and field.name in NOT_FROM_A_FLAG):
        continue
      name = config.flag_of(section, field.name)
      flag_default = plain(flags.FLAGS[name].default)
      where = f"{section.__name__}.{field.name} = {field.default!r}, --{name} = {flag_default!r}"
      if (section, field.name) in DEFAULTS_THAT_DIFFER:
        assert flag_default != field.default, f"{where}: no longer differ; drop the exception"
      else:
        assert flag_default == field.default, where


def test_the_default_flags_give_the_default_sections():
  """With no flag given, each section equals its dataclass's defaults but for the resolved
  fields (paths made absolute, defaults filled in) and the deliberate exceptions."""
  run = parse()
  assert run.model == config.ModelConfig()
  assert run.train == config.TrainConfig() and run.eval == config.EvalConfig()
  assert run.head == config.HeadConfig() and run.distill == config.DistillConfig()
  assert run.search == config.SearchConfig() and run.sets == config.SetConfig()
  assert run.data == dataclasses.replace(config.DataConfig(), cache_dir=run.data.cache_dir)
  assert run.export_format == config.RunConfig.export_format


def test_stream_always_needs_a_dataset_that_streams(tmp_path):
  """--stream=always is refused, naming the flag, where nothing streams (the synthetic faces are
  made in memory, a folder is decoded image by image), before any data or TensorFlow loads."""
  with pytest.raises(ConfigError, match="--stream=always with --dataset=synthetic: only "
                                        "tfrecord: and insightface: datasets stream"):
    parse("--stream=always")
  (tmp_path / "alice").mkdir()
  with pytest.raises(ConfigError, match=f"--stream=always with --dataset=folder:{tmp_path}"):
    parse(f"--dataset=folder:{tmp_path}", "--stream=always")
  assert parse("--stream=never").data.stream == "never"
  assert parse(f"--dataset=folder:{tmp_path}", "--stream=auto").data.stream == "auto"


def test_the_old_strategy_flag_still_sets_the_distribution_strategy():
  """--distribution_strategy (tf.distribute) was --strategy, easily taken for --search_strategy:
  the old name stays as an alias, and a config.json written before the rename still loads."""
  assert parse("--strategy=mirrored").distribution_strategy == "mirrored"
  assert parse("--distribution_strategy=mirrored").distribution_strategy == "mirrored"
  assert parse().distribution_strategy == "default"
  with pytest.raises(flags.IllegalFlagValueError, match="one_shot"):
    parse("--strategy=one_shot")  # a search strategy is not a distribution strategy
  config = parse("--distribution_strategy=mirrored", "--search_strategy=multi_trial")
  old = spaces.config_to_json(config)
  old["strategy"] = old.pop("distribution_strategy")
  assert spaces.config_from_json(old) == config
  assert spaces.config_from_json(old).search.strategy == "multi_trial"


TUNAS = ["--mode=search", "--search_space=mobilefacenet", "--image_size=32",
         "--cost_model=flops", "--cost_target=12e6", "--search_epochs=8", "--warmup_epochs=1"]


def test_tunas_warmup_flags_reach_the_search_config():
  config = parse(*TUNAS, "--controller=categorical", "--controller_warmup_fraction=0.25",
                 "--path_dropout_warmup=1")
  assert config.search.controller == "categorical"
  assert (config.search.controller_warmup_fraction, config.search.path_dropout_warmup) == (0.25, 1.0)


@pytest.mark.parametrize("argv,message", [
    (["--path_dropout_warmup=1"], "--controller_warmup_fraction=0.0 * --search_epochs=8"),
    (["--path_dropout_warmup=1", "--controller_warmup_fraction=0.1"], "= 0 epochs"),
    (["--path_dropout_warmup=1", "--controller_warmup_fraction=0.25",
      "--search_strategy=multi_trial"], "needs --search_strategy=one_shot"),
    (["--path_dropout_warmup=0.5", "--controller_warmup_fraction=0.25",
      "--search_space=enas_macro"], "--search_space=enas_macro do not nest"),
    (["--controller_warmup_fraction=0.25", "--search_strategy=differentiable"],
     "--search_strategy=differentiable has no controller"),
])
def test_bad_tunas_warmup_flags_name_the_flag(argv, message):
  with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace(".", r"\.")):
    parse(*TUNAS, *argv)


def test_shared_update_is_validated_and_names_the_flag():
  assert parse("--mode=search", "--shared_update=taken").search.shared_update == "taken"
  assert parse().search.shared_update == "all"
  with pytest.raises(flags.IllegalFlagValueError, match="shared_update"):
    parse("--shared_update=untaken")
  with pytest.raises(ConfigError, match="--shared_update=taken .*--search_strategy=multi_trial"):
    parse("--mode=search", "--search_strategy=multi_trial", "--shared_update=taken")
