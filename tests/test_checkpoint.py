"""Checkpoints: atomic writes, pruning, round trip, shape checks, damaged checkpoints."""

import hashlib
import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from agent import checkpoint


def _state(value: float):
    params = {"w": jnp.full((3, 2), value), "b": jnp.zeros(2)}
    return {
        "params": params,
        "opt": optax.adam(1e-3).init(params),
        "key": jnp.array([1, 2], jnp.uint32),
        "step": jnp.int32(7),
    }


def test_round_trip_restores_every_leaf(tmp_path):
    state = _state(1.5)
    checkpoint.save(tmp_path, 7, state)
    step, restored = checkpoint.load_latest(tmp_path, _state(0.0))
    assert step == 7
    np.testing.assert_array_equal(restored["params"]["w"], state["params"]["w"])
    np.testing.assert_array_equal(restored["key"], state["key"])
    assert restored["key"].dtype == np.uint32


def test_only_the_newest_are_kept_and_temporaries_are_ignored(tmp_path):
    for step in (1, 2, 3, 4):
        checkpoint.save(tmp_path, step, _state(step), keep=2)
    (tmp_path / ".tmp_ckpt_000000009_1").mkdir()  # what a crash mid-write leaves behind
    assert checkpoint.checkpoint_steps(tmp_path) == [3, 4]
    step, restored = checkpoint.load_latest(tmp_path, _state(0.0))
    assert step == 4 and float(restored["params"]["w"][0, 0]) == 4.0


def test_shape_mismatch_names_the_leaf(tmp_path):
    checkpoint.save(tmp_path, 1, _state(1.0))
    template = _state(0.0)
    template["params"]["w"] = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=r"\['params'\]\['w'\] has shape \(3, 2\)"):
        checkpoint.load_latest(tmp_path, template)


def test_no_checkpoint_gives_none(tmp_path):
    assert checkpoint.load_latest(tmp_path / "absent", _state(0.0)) is None


# ---------------------------------------------------------------------------------------------
# Damaged checkpoints: detected by checksum, reported in one line, the previous one is used


def _two_checkpoints(directory, keep=3):
    checkpoint.save(directory, 100, _state(1.0), keep=keep)
    checkpoint.save(directory, 200, _state(2.0), keep=keep)
    return directory / "ckpt_000000200"


def _truncate(folder):
    state = folder / "state.npz"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])


def _alter(folder):
    state = folder / "state.npz"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    state.write_bytes(bytes(data))


def _drop_meta(folder):
    (folder / "meta.json").unlink()


def _garble_meta(folder):
    (folder / "meta.json").write_bytes(b'{"step": 200, "sha2')


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, "state.npz truncated"),
        (_alter, "checksum mismatch"),
        (_drop_meta, "meta.json missing"),
        (_garble_meta, "meta.json unreadable"),
    ],
)
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys, damage, reason):
    newest = _two_checkpoints(tmp_path)
    assert checkpoint.damage_reason(newest) is None
    damage(newest)
    assert checkpoint.damage_reason(newest) == reason
    step, restored = checkpoint.load_latest(tmp_path, _state(0.0))
    assert step == 100 and float(restored["params"]["w"][0, 0]) == 1.0
    err = capsys.readouterr().err
    assert err == f"checkpoint {newest} is damaged ({reason}); using ckpt_000000100\n"
    assert newest.is_dir()  # kept for inspection
    assert checkpoint.checkpoint_steps(tmp_path) == [100, 200]


def test_no_intact_checkpoint_behaves_like_none_and_says_so(tmp_path, capsys):
    newest = _two_checkpoints(tmp_path)
    _alter(newest)
    _truncate(tmp_path / "ckpt_000000100")
    assert checkpoint.load_latest(tmp_path, _state(0.0)) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err == (
        f"checkpoints in {tmp_path} are damaged: ckpt_000000200 (checksum mismatch), "
        "ckpt_000000100 (state.npz truncated); no intact checkpoint is left\n"
    )


def test_a_later_save_of_the_same_step_replaces_a_damaged_checkpoint(tmp_path, capsys):
    newest = _two_checkpoints(tmp_path, keep=2)
    _truncate(newest)
    assert checkpoint.load_latest(tmp_path, _state(0.0))[0] == 100
    # The resumed run passes step 150 (an interrupt) with keep=2: the damaged 200 is not pruned in
    # place of an intact one, and the new 150 is kept.
    checkpoint.save(tmp_path, 150, _state(1.5), keep=2)
    assert checkpoint.checkpoint_steps(tmp_path) == [100, 150, 200]
    checkpoint.save(tmp_path, 200, _state(3.0), keep=2)
    assert checkpoint.checkpoint_steps(tmp_path) == [150, 200]
    capsys.readouterr()
    step, restored = checkpoint.load_latest(tmp_path, _state(0.0))
    assert step == 200 and float(restored["params"]["w"][0, 0]) == 3.0
    assert capsys.readouterr().err == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_000000150", "ckpt_000000200"]


def test_pruning_never_drops_the_new_checkpoint_for_a_later_damaged_one(tmp_path, capsys):
    checkpoint.save(tmp_path, 200, _state(2.0), keep=1)
    _alter(tmp_path / "ckpt_000000200")
    assert checkpoint.load_latest(tmp_path, _state(0.0)) is None  # the run starts over
    checkpoint.save(tmp_path, 100, _state(1.0), keep=1)
    assert checkpoint.checkpoint_steps(tmp_path) == [100, 200]
    assert checkpoint.load_latest(tmp_path, _state(0.0))[0] == 100
    assert "using ckpt_000000100" in capsys.readouterr().err


def test_meta_records_the_checksum_and_older_checkpoints_without_one_still_load(tmp_path):
    folder = checkpoint.save(tmp_path, 5, _state(5.0))
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["sha256"] == hashlib.sha256((folder / "state.npz").read_bytes()).hexdigest()
    assert meta["bytes"] == (folder / "state.npz").stat().st_size and meta["step"] == 5
    assert checkpoint.read_meta(folder) == meta
    assert checkpoint.checkpoint_path(tmp_path, 5) == folder
    # A checkpoint written before checksums: accepted when its zip CRCs hold.
    del meta["sha256"], meta["bytes"]
    (folder / "meta.json").write_text(json.dumps(meta))
    assert checkpoint.damage_reason(folder) is None
    assert checkpoint.load_latest(tmp_path, _state(0.0))[0] == 5
    _alter(folder)
    assert checkpoint.damage_reason(folder) is not None
    (folder / "meta.json").write_text("[1, 2]")
    assert checkpoint.read_meta(folder) is None
    assert checkpoint.read_meta(tmp_path / "absent") is None
