"""Resuming in a run folder: the saved config must match, except for keys added since."""

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
    assert "keys new since this run started: bc.encoder_depth" in capsys.readouterr().out
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
