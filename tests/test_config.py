"""The config system: merge order, typed overrides, and one-line errors."""

import pytest

from agent.config import (
    CONFIG_DIR,
    ConfigError,
    dump_config,
    first_difference,
    load_config,
    load_yaml_file,
    merge,
    parse_override,
)


def test_defaults_define_every_key_of_every_preset():
    for path in CONFIG_DIR.glob("*.yaml"):
        load_config([str(path)])  # raises on any unknown key or wrong type


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
