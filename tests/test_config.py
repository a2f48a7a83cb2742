"""The config system: merge order, typed overrides, numeric ranges, and one-line errors."""

import subprocess
import sys

import pytest

from agent.config import (
    CONFIG_DIR,
    RANGES_NAME,
    RANGES_PATH,
    ConfigError,
    check_ranges,
    dump_config,
    first_difference,
    flatten,
    load_config,
    load_ranges,
    load_yaml_file,
    merge,
    numeric_keys,
    parse_override,
    parse_range,
    preset_names,
)

DEFAULTS = load_yaml_file(CONFIG_DIR / "defaults.yaml")


def test_defaults_define_every_key_of_every_preset():
    names = preset_names()
    assert RANGES_NAME not in names and "debug" in names and "gem_hopper" in names
    assert {p.stem for p in CONFIG_DIR.glob("*.yaml")} == {*names, RANGES_NAME}
    for name in names:
        load_config([str(CONFIG_DIR / f"{name}.yaml")])  # raises on any unknown key or wrong type


def test_a_preset_includes_others_first_and_its_own_keys_win(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("train:\n  steps: 100\n  batch_size: 7\n")
    b.write_text(f"include: [{a}]\ntrain:\n  steps: 200\n")
    cfg = load_config([str(b)])
    assert (cfg.train.steps, cfg.train.batch_size) == (200, 7)
    assert "include" not in cfg
    assert load_config(["leq_hopper_cpu"]) == load_config(["hopper_medium_replay", "leq_cpu"])
    assert load_config(["default"]) == load_config(["leq_hopper_cpu"])


def test_each_leq_task_cpu_preset_is_leq_cpu_on_one_dataset():
    names = [n for n in preset_names() if n.startswith("leq_") and n.endswith("_cpu")]
    names = [n for n in names if n != "leq_cpu" and "pixels" not in n]
    assert len(names) == 5
    for name in names:
        cfg = load_config([name]).to_dict()
        data = {k: cfg[k] for k in ("task", "dataset")}
        assert cfg == merge(load_config(["leq_cpu"]).to_dict(), data, source=name), name


@pytest.mark.parametrize("text", ["include: 3\n", "include: [[a]]\n", "CYCLE"])
def test_a_bad_include_names_the_file(tmp_path, text):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    if text == "CYCLE":
        a.write_text(f"include: [{b}]\n")
        b.write_text(f"include: [{a}]\n")
    else:
        a.write_text(text)
    with pytest.raises(ConfigError, match=f"{a}.*(cycle|list of preset names)"):
        load_config([str(a)])


def test_later_presets_override_earlier_ones_and_overrides_win(tmp_path):
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("train:\n  steps: 100\n  batch_size: 7\n")
    b.write_text("train:\n  steps: 200\n")
    cfg = load_config([str(a), str(b)], ["train.batch_size=9", "bc.lr=1e-2"])
    assert cfg.train.steps == 200
    assert cfg.train.batch_size == 9
    assert cfg.bc.lr == pytest.approx(0.01)
    assert isinstance(cfg.bc.lr, float)
    assert cfg.train.eval_every == load_config(["defaults"]).train.eval_every


def test_int_is_accepted_for_float_and_lists_parse():
    cfg = load_config(["default"], ["bc.lr=1", "bc.hidden=[8, 8]"])
    assert cfg.bc.lr == 1.0 and isinstance(cfg.bc.lr, float)
    assert cfg.bc.hidden == [8, 8]


def test_null_default_accepts_a_string():
    cfg = load_config(["default"], ["dataset.path=/tmp/x.hdf5"])
    assert cfg.dataset.path == "/tmp/x.hdf5"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("no.such.key=1", "unknown key 'no'"),
        ("train.no_such=1", "unknown key 'train.no_such'"),
        ("train.steps=abc", "key 'train.steps' expects int, got 'abc'"),
        ("train.steps=1.5", "key 'train.steps' expects int"),
        ("bc.lr=fast", "key 'bc.lr' expects float"),
        ("train=3", "key 'train' is a section"),
        ("trainsteps", "expected dotted.key=value"),
    ],
)
def test_bad_overrides_name_the_problem(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(["default"], [override])
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_missing_config_names_the_file():
    with pytest.raises(ConfigError, match="config 'no_such_config' not found"):
        load_config(["no_such_config"])


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'train\.stepz'"):
        load_config([str(bad)])


def test_invalid_yaml_is_one_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config([str(bad)])
    assert "\n" not in str(info.value)


def test_parse_override_nests_dotted_keys():
    assert parse_override("a.b.c=3") == {"a": {"b": {"c": 3}}}
    assert parse_override("a=hello") == {"a": "hello"}


def test_merge_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown key 'x'"):
        merge({"a": 1}, {"x": 2}, source="s")


def test_dump_round_trip_and_difference(tmp_path):
    cfg = load_config(["default", "debug"])
    dump_config(cfg, tmp_path / "config.yaml")
    saved = load_yaml_file(tmp_path / "config.yaml")
    assert first_difference(saved, cfg.to_dict()) is None
    changed = load_config(["default", "debug"], ["train.steps=1000"])
    assert first_difference(saved, changed.to_dict()) == "train.steps"


# ---------------------------------------------------------------------------------------------
# Numeric ranges (configs/ranges.yaml)


def test_every_numeric_default_has_a_range():
    ranges = load_ranges()
    numeric = numeric_keys(DEFAULTS)
    assert "train.steps" in numeric and "bc.hidden" in numeric  # lists of numbers count
    assert "leq.expectile" not in numeric  # bools do not
    missing = [key for key in numeric if key not in ranges]
    assert not missing, f"declare a range in {RANGES_PATH} for: {', '.join(missing)}"
    keys = flatten(DEFAULTS)
    stale = [key for key in ranges if key not in keys]
    assert not stale, f"{RANGES_PATH} names keys that defaults.yaml lacks: {', '.join(stale)}"
    check_ranges(DEFAULTS, DEFAULTS, ranges)  # the defaults themselves lie within


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_within_range(name):
    load_config([name])  # defaults, then the preset; checks every range
    load_config([name, "debug"])


def test_range_notation():
    assert 1 in parse_range(">= 1") and 0 not in parse_range(">= 1")
    assert 0.5 in parse_range("> 0") and 0 not in parse_range(">0")
    assert -3 in parse_range("<= -3") and -3 not in parse_range("< -3")
    unit = parse_range("(0, 1]")
    assert 1 in unit and 0 not in unit and 1.5 not in unit and 1e-9 in unit
    assert 0 in parse_range("[0, 1)") and 1 not in parse_range("[0, 1)")
    assert 2.5e-5 in parse_range("[0, 1e-4]") and 5 in parse_range("[5, 5]")
    assert float("inf") not in parse_range(">= 0") and float("nan") not in parse_range("<= 0")
    assert str(unit) == "(0, 1]"
    for bad in ("1", ">= one", "(1, 0)", "(1, 1]", "[0; 1]", "=> 1", ""):
        with pytest.raises(ConfigError, match="is not a valid range"):
            parse_range(bad)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("leq.tau=1.5", "leq.tau=1.5 is out of range (0, 1)"),
        ("leq.tau=0", "leq.tau=0.0 is out of range (0, 1)"),
        ("leq.gamma=1.01", "leq.gamma=1.01 is out of range (0, 1]"),
        ("vem.target_rate=0", "vem.target_rate=0.0 is out of range (0, 1]"),
        ("train.steps=0", "train.steps=0 is out of range >= 1"),
        ("train.eval_every=-5", "train.eval_every=-5 is out of range >= 0"),
        ("seed=-1", "seed=-1 is out of range >= 0"),
        ("bc.lr=.nan", "bc.lr=nan is out of range > 0"),
        ("bc.lr=.inf", "bc.lr=inf is out of range > 0"),
        ("gem.hidden=[32, 0]", "gem.hidden[1]=0 is out of range >= 1"),
        ("bc.hidden=[32.5]", "bc.hidden[0]=32.5 is not an integer (range >= 1)"),
        ("bc.hidden=[a]", "bc.hidden[0]='a' is not an integer (range >= 1)"),
        ("world_model.weight_decays=[0, -1e-4]", "world_model.weight_decays[1]=-0.0001 is out of"),
        ("world_model.max_epochs=0", "world_model.max_epochs=0 is out of range >= 1"),
        ("world_model.max_epochs=x", "world_model.max_epochs='x' is not a number (range >= 1)"),
    ],
)
def test_out_of_range_values_give_one_line_errors(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(["default"], [override])
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_out_of_range_value_in_a_preset_file(tmp_path):
    preset = tmp_path / "bad.yaml"
    preset.write_text("gem:\n  alpha: 1.5\n")
    with pytest.raises(ConfigError, match=r"^gem\.alpha=1\.5 is out of range \(0, 1\]$"):
        load_config(["gem_hopper", str(preset)])
    # A later override brings it back into range: only the merged value is checked.
    assert load_config(["gem_hopper", str(preset)], ["gem.alpha=0.5"]).gem.alpha == 0.5


def test_null_only_where_the_default_is_null():
    # world_model.max_epochs is null in defaults.yaml: null stays allowed after a preset set it.
    assert load_config(["default"]).world_model.max_epochs == 20
    assert load_config(["default"], ["world_model.max_epochs=null"]).world_model.max_epochs is None
    assert load_config(["default"], ["dataset.path=/x.hdf5"]).dataset.path == "/x.hdf5"
    for override in ("train.steps=null", "leq.tau=~", "dataset.quality=null"):
        with pytest.raises(ConfigError, match="got None \\(null\\)"):
            load_config(["default"], [override])


def test_a_numeric_key_without_a_range_is_reported():
    defaults = {"train": {"steps": 5}, "jax": {"threads": 2, "flag": True, "name": "x"}}
    ranges = {"train.steps": parse_range(">= 1")}
    with pytest.raises(ConfigError, match="declares no range for the numeric key 'jax.threads'"):
        check_ranges(defaults, defaults, ranges)
    ranges["jax.threads"] = parse_range(">= 1")
    check_ranges(defaults, defaults, ranges)  # bools and strings need no range


def test_ranges_is_not_a_preset():
    with pytest.raises(ConfigError, match="not a preset"):
        load_config([RANGES_NAME])


def test_cli_prints_a_range_error_in_one_line_with_status_2():
    # The entry point, as a user runs it: the config is checked before anything else starts.
    proc = subprocess.run(
        [sys.executable, "run.py", "train", "--set", "leq.tau=1.5"],
        cwd=CONFIG_DIR.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr == "error: leq.tau=1.5 is out of range (0, 1)\n"
