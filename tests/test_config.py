"""The config system: merge order, typed overrides, allowed values declared in defaults.yaml,
presets and aliases, and one-line errors."""

import subprocess
import sys

import pytest

from agent.config import (
    CONFIG_DIR,
    ConfigError,
    dump_config,
    fill_missing,
    first_difference,
    load_config,
    load_yaml_file,
    merge,
    parse_override,
    preset_names,
)
from agent.config_schema import (
    Choices,
    check_values,
    flatten,
    numeric_keys,
    parse_range,
    read_schema,
)
from agent.presets import ALIASES_NAME, aliases

SCHEMA = read_schema(CONFIG_DIR / "defaults.yaml")
DEFAULTS = SCHEMA.defaults


def test_defaults_define_every_key_of_every_preset():
    names = preset_names()
    assert "debug" in names and "gem" in names and "gem_hopper" in aliases()
    assert {p.stem for p in CONFIG_DIR.glob("*.yaml")} == {*names, "defaults", ALIASES_NAME}
    for name in names:
        load_config([str(CONFIG_DIR / f"{name}.yaml")])  # raises on any unknown key or wrong type


def test_a_preset_includes_others_first_and_its_own_keys_win(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("train:\n  steps: 100\n  eval_every: 7\n")
    b.write_text(f"include: [{a}]\ntrain:\n  steps: 200\n")
    cfg = load_config([str(b)])
    assert (cfg.train.steps, cfg.train.eval_every) == (200, 7)
    assert "include" not in cfg
    assert load_config(["leq_hopper_cpu"]) == load_config(["hopper_medium_replay", "leq_cpu"])
    assert load_config(["default"]) == load_config(["leq_hopper_cpu"])


def test_each_leq_task_cpu_alias_is_leq_cpu_on_one_dataset():
    names = [n for n in aliases() if n.startswith("leq_") and n.endswith("_cpu")]
    names = [n for n in names if "pixels" not in n]
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
    a.write_text("train:\n  steps: 100\n  eval_every: 7\n")
    b.write_text("train:\n  steps: 200\n")
    cfg = load_config([str(a), str(b)], ["train.eval_every=9", "bc.lr=1e-2"])
    assert cfg.train.steps == 200
    assert cfg.train.eval_every == 9
    assert cfg.bc.lr == pytest.approx(0.01)
    assert isinstance(cfg.bc.lr, float)
    assert cfg.train.log_every == load_config(["defaults"]).train.log_every


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
# Allowed values, declared in defaults.yaml's comments


def test_every_numeric_default_has_a_range_and_every_enum_its_choices():
    numeric = numeric_keys(DEFAULTS)
    assert "train.steps" in numeric and "bc.hidden" in numeric  # lists of numbers count
    assert "leq.expectile" not in numeric  # bools do not
    missing = [key for key in numeric if key not in SCHEMA.allowed]
    assert not missing, f"declare a range in defaults.yaml for: {', '.join(missing)}"
    check_values(DEFAULTS, DEFAULTS, SCHEMA.allowed)  # the defaults themselves lie within
    choices = {k for k, v in SCHEMA.allowed.items() if isinstance(v, Choices)}
    assert {"method", "jax.platform", "leq_pixels.optimizer", "gem.pairing"} <= choices
    assert SCHEMA.allowed["leq.tau"].text == "(0, 1)"


def test_method_choices_are_the_registered_methods():
    from agent.methods import METHODS

    assert set(SCHEMA.allowed["method"].values) == set(METHODS)


def test_allowed_values_are_read_from_the_comment_up_to_a_semicolon(tmp_path):
    path = tmp_path / "defaults.yaml"
    path.write_text(
        "# header; not a key\n"
        "a: 1      # >= 1; text\n"
        "b: x      # x | y\n"
        "c: 2      # prose without allowed values, spread\n"
        "          # over two lines; the second line is not read\n"
        "s:        # a section; its comment is prose\n"
        "  d: 0.5  # (0, 1]\n"
        "  e: [1]  # > 0; every entry\n"
    )
    schema = read_schema(path)
    assert {k: str(v) for k, v in schema.allowed.items()} == {
        "a": ">= 1", "b": "x | y", "s.d": "(0, 1]", "s.e": "> 0",
    }  # fmt: skip
    path.write_text("a: 1  # at least one; text\n")
    with pytest.raises(ConfigError, match=r"defaults.yaml:1: key 'a': 'at least one' is neither"):
        read_schema(path)


@pytest.mark.parametrize("name", [*preset_names(), *aliases()])
def test_every_preset_and_alias_loads_within_range(name):
    load_config([name])  # defaults, then the preset; checks every value
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
        ("leq_pixels.optimizer=sgd", "leq_pixels.optimizer='sgd' is not one of: laprop | adam"),
        ("vem.schedule=both", "vem.schedule='both' is not one of: two_phase | interleaved"),
        ("method=dqn", "method='dqn' is not one of: bc | iql | td3bc | vem | leq | leq_pixels"),
        ("train.shard=x", "train.shard='x' is not one of: none | batch | seeds"),
    ],
)
def test_values_outside_their_allowed_ones_give_one_line_errors(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(["default"], [override])
    assert str(info.value).startswith(message)
    assert str(info.value).endswith(f"(set by --set {override})")
    assert "\n" not in str(info.value)


def test_out_of_range_value_in_a_preset_file(tmp_path):
    preset = tmp_path / "bad.yaml"
    preset.write_text("gem:\n  alpha: 1.5\n")
    with pytest.raises(
        ConfigError, match=rf"^gem\.alpha=1\.5 is out of range \(0, 1\] \(set by {preset}\)$"
    ):
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
    allowed = {"train.steps": parse_range(">= 1")}
    with pytest.raises(ConfigError, match="declares no range for the numeric key 'jax.threads'"):
        check_values(defaults, defaults, allowed)
    allowed["jax.threads"] = parse_range(">= 1")
    check_values(defaults, defaults, allowed)  # bools and strings need no range


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
    assert proc.stderr == "error: leq.tau=1.5 is out of range (0, 1) (set by --set leq.tau=1.5)\n"


# ---------------------------------------------------------------------------------------------
# Batch sizes: <method>.batch_size, and configs saved with train.batch_size


def test_each_method_reads_its_own_batch_size():
    for method in ("bc", "iql", "td3bc", "vem", "leq", "gem", "sac", "td3"):
        assert "batch_size" in DEFAULTS[method], method
    assert "batch_size" not in DEFAULTS["train"]
    assert load_config(["vem_hopper", "debug"]).vem.batch_size == 64
    assert load_config(["vem_hopper"]).vem.batch_size == 128


def test_train_batch_size_names_its_new_place():
    with pytest.raises(ConfigError, match=r"unknown key 'train.batch_size' \(now <method>"):
        load_config(["default"], ["train.batch_size=64"])


@pytest.mark.parametrize(("method", "moved"), [("bc", True), ("leq", True), ("gem", False)])
def test_a_run_folder_saved_with_train_batch_size_still_loads(method, moved, tmp_path):
    """A config.yaml written before the move: train.batch_size goes to <method>.batch_size
    where the method read it (and is dropped where it never did), for `eval --logdir`
    (load_config of the file) and for a resume (fill_missing, then the comparison)."""
    current = load_config(["default", "debug"], [f"method={method}"]).to_dict()
    old = {**current, "train": {**current["train"], "batch_size": 64}}
    if moved:
        old[method] = {k: v for k, v in current[method].items() if k != "batch_size"}
    path = tmp_path / "config.yaml"
    dump_config(old, path)
    assert load_config([str(path)]).to_dict() == current
    saved, added = fill_missing(load_yaml_file(path), current)
    assert first_difference(saved, current) is None and added == []


# ---------------------------------------------------------------------------------------------
# Presets and aliases


RECORD = CONFIG_DIR.parent / "tests" / "records" / "presets_before_issue27.json"


def _unflatten(flat: dict) -> dict:
    tree: dict = {}
    for dotted, value in flat.items():
        *heads, last = dotted.split(".")
        node = tree
        for head in heads:
            node = node.setdefault(head, {})
        node[last] = value
    return tree


# Presets whose budget changed on purpose since the record, and the keys that changed.
REBUDGETED = {
    "leq_pixels_cartpole_swingup_cpu": {
        "dataset.size", "image_size", "leq_pixels.horizon", "leq_pixels.model_steps",
        "rssm.cont_horizon", "rssm.length", "train.steps",
    },
}  # fmt: skip


def test_every_preset_name_of_before_the_aliases_resolves_as_it_did():
    """The 83 preset names of before configs/ was cut to one preset per method and budget (the
    record: each name's resolved config, alone and followed by debug, as differences from that
    day's defaults) resolve to the same config; train.batch_size read as <method>.batch_size."""
    import json

    from agent.config import SPEED_SETTINGS, upgrade_moved_keys

    record = json.loads(RECORD.read_text())
    assert len(record["presets"]) == 83
    for name, kinds in record["presets"].items():
        for kind, difference in kinds.items():
            then = flatten(upgrade_moved_keys(_unflatten({**record["defaults"], **difference})))
            now = flatten(load_config([name, "debug"] if kind == "debug" else [name]).to_dict())
            assert set(then) <= set(now), (name, kind, set(then) - set(now))
            # Keys the record lacks: the batch sizes of the methods the preset does not run, and
            # keys added since (their defaults are the behaviour the record was made with, except
            # gem.critic_form, whose default became the official critic on purpose;
            # gem.refresh_every's default 1 is the refresh of before; bc.frame_stack 3 and
            # leq_pixels' starts, burn_in and act changed pixel BC and LEQ on purpose;
            # critic_warm_start's default 0 is no warm start, as before).
            added = {"batch_size", "critic_form", "refresh_every", "frame_stack"}
            added |= {"starts", "burn_in", "act", "formulation", "critic_warm_start"}
            assert {k.split(".")[-1] for k in set(now) - set(then)} <= added, name
            # Speed settings change no result, so their defaults may move (gem.refresh_chunk).
            changed = [
                k
                for k in then
                if k not in SPEED_SETTINGS
                and (then[k] != now[k] or type(then[k]) is not type(now[k]))
            ]
            if name in REBUDGETED:  # its budget was reset on purpose (64x64 frames, ...)
                changed = [k for k in changed if k not in REBUDGETED[name]]
            assert not changed, (name, kind, {k: (then[k], now[k]) for k in changed})


def test_an_alias_applies_its_items_in_place():
    # gem_hopper is gem, then task=hopper; a later preset or override still wins.
    assert load_config(["gem_hopper"]) == load_config(["gem"], ["task=hopper"])
    assert load_config(["gem_hopper"], ["task=ant"]).task == "ant"
    assert load_config(["sac_cheetah_run_ar2", "debug"]).train.steps == 400


def test_a_bad_alias_table_is_one_line(tmp_path, monkeypatch):
    import agent.presets as presets

    table = tmp_path / "aliases.yaml"
    monkeypatch.setattr(presets, "ALIASES_PATH", table)
    for text, fragment in (
        ("x: gem\n", "alias 'x' must be a list"),
        ("x: [no_such_preset]\n", "alias 'x' names 'no_such_preset'"),
        ("gem: [sac]\n", "alias 'gem' has the name of a file"),
    ):
        table.write_text(text)
        with pytest.raises(ConfigError, match=fragment):
            load_config(["x"])


def test_aliases_is_not_a_preset():
    with pytest.raises(ConfigError, match="not a preset"):
        load_config([ALIASES_NAME])


def test_presets_lists_every_preset_and_alias_with_a_purpose(capsys):
    from agent.runner.cli import COMMANDS, build_parser

    assert COMMANDS["presets"](build_parser().parse_args(["presets"])) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: line.split(None, 1)[1] for line in lines if line.startswith("  ")}
    assert set(listed) == {*preset_names(), *aliases()}
    for name in preset_names():
        assert 10 < len(listed[name]) <= 100, name  # the file's first comment line
    assert listed["gem_hopper"] == "= gem + task=hopper"
    assert len(list(CONFIG_DIR.glob("*.yaml"))) <= 40
