"""Resuming in a run folder: the saved config must match, except for keys added since and speed
settings."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, dump_config, load_config, load_yaml_file
from agent.runner.rundir import prepare_logdir


def test_keys_added_since_the_run_started_take_their_values(tmp_path, capsys):
    cfg = load_config(["sac_hopper", "debug"])
    prepare_logdir(cfg, tmp_path)
    saved = load_yaml_file(tmp_path / "config.yaml")
    del saved["bc"]["encoder_depth"]  # as written by a version without that key
    dump_config(saved, tmp_path / "config.yaml")
    prepare_logdir(cfg, tmp_path)
    out = capsys.readouterr().out
    assert "keys new or speed settings changed since this run started: bc.encoder_depth" in out
    assert load_yaml_file(tmp_path / "config.yaml") == cfg.to_dict()


def test_a_changed_speed_setting_takes_its_new_value(tmp_path, capsys):
    # gem.refresh_chunk changes no result (tests/test_gem.py), so a TD3 or GEM run started with
    # another chunk size resumes; any other changed value is refused (the test below).
    cfg = load_config(["gem_hopper", "debug"])
    prepare_logdir(cfg, tmp_path)
    saved = load_yaml_file(tmp_path / "config.yaml")
    saved["gem"]["refresh_chunk"] = 16384
    dump_config(saved, tmp_path / "config.yaml")
    prepare_logdir(cfg, tmp_path)
    assert "changed since this run started: gem.refresh_chunk" in capsys.readouterr().out
    assert load_yaml_file(tmp_path / "config.yaml") == cfg.to_dict()


@pytest.mark.parametrize("change", ["value", "removed key"])
def test_a_changed_or_removed_key_is_refused(tmp_path, change):
    cfg = load_config(["sac_hopper", "debug"])
    prepare_logdir(cfg, tmp_path)
    saved = load_yaml_file(tmp_path / "config.yaml")
    if change == "value":
        saved["sac"]["tau"] = 0.5
    else:
        saved["sac"]["no_longer_a_key"] = 1
    dump_config(saved, tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match="holds a run with a different config .key 'sac\\."):
        prepare_logdir(cfg, tmp_path)
