"""One contract for every registered method, on a state spec and on a small image spec.

init -> a compiled chunk of every phase the schedule names -> policy in both modes -> checkpoint
round trip -> resume: two chunks straight equal one chunk, save, load, one chunk. No simulator
is involved: the data are synthetic rows in the replay layout, so this runs in seconds.

The same seeded steps are each method's update record (tests/update_records.py): the metrics of
every phase and the final policy's actions are compared with tests/records/update_records.json
with a float32 tolerance, on every processor.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from agent import checkpoint
from agent import replay as replay_lib
from agent.config import load_config
from agent.methods import METHODS, agent_class
from agent.observations import observation_stats
from agent.programs import Programs
from agent.protocol import EVAL, EXPLORE, POLICY_MODES, WARMUP, Context, Field, Spec
from agent.runner.build import RunState, new_counters
from agent.runner.world_models import build_world_model
from tests.conftest import leaves_equal
from tests.update_records import check_or_write

ROWS, EPISODE, ACT = 240, 12, 2
SPECS = {
    "state": Spec({"state": Field((5,), np.dtype(np.float32))}, ACT, EPISODE),
    "image": Spec({"image": Field((16, 16, 3), np.dtype(np.uint8))}, ACT, EPISODE),
}
STATES_ONLY = {"leq"}  # its ensemble models states; LEQ from pixels is leq_pixels
IMAGES_ONLY = {"model", "leq_pixels"}  # the RSSM models images; it has no state form
METHOD_SETS = {m: ["world_model.kind=rssm"] for m in IMAGES_ONLY}


def synthetic_rows(spec: Spec, count: int, seed: int = 0) -> dict:
    """Random rows in the replay layout, trajectories of EPISODE rows."""
    rng = np.random.default_rng(seed)

    def obs():
        out = {}
        for name, field in spec.obs.items():
            if field.dtype == np.uint8:
                out[name] = rng.integers(0, 256, (count, *field.shape), dtype=np.uint8)
            else:
                out[name] = rng.normal(size=(count, *field.shape)).astype(field.dtype)
        return out

    ends = (np.arange(count) % EPISODE == EPISODE - 1).astype(np.float32)
    return {
        "observations": obs(),
        "next_observations": obs(),
        "actions": rng.uniform(-1, 1, (count, spec.act_dim)).astype(np.float32),
        "rewards": rng.normal(size=count).astype(np.float32),
        "masks": np.ones(count, np.float32),
        "timeouts": ends,
        "episode_ends": ends,
    }


def build_agent(method: str, spec: Spec, rows: dict, extra: tuple[str, ...] = ()):
    sets = [f"method={method}", "train.steps=400", *METHOD_SETS.get(method, []), *extra]
    cfg = load_config(["debug"], sets)
    cls = agent_class(method)
    mean, std = observation_stats(rows["observations"], spec)
    context = Context(obs_mean=mean, obs_std=std, data_size=0 if cls.online else ROWS)
    if cls.uses_world_model:
        world = build_world_model(cfg, spec, context)
        context = dataclasses.replace(
            context, world=world, world_params=world.init(jax.random.PRNGKey(1))
        )
    return cfg, cls(cfg, spec, context)


def training_phases(agent, cfg) -> list[str]:
    phases = []
    for step in range(cfg.train.steps):
        phase = agent.phase(step)
        if phase != WARMUP and phase not in phases:
            phases.append(phase)
    return phases


def make_replay(agent, spec: Spec, rows: dict):
    if agent.online:
        return replay_lib.add(replay_lib.empty(spec, agent.replay_capacity), rows)
    return replay_lib.full(rows)


# The fast suite (`-m "not slow"`) keeps the cases that compile in under ~1.5 s on 2 idle cores;
# the rest (compile-bound, 2-15 s each) run with the slow tests.
FAST = {("bc", "state"), ("iql", "state"), ("iql", "image"), ("gem", "state")}
CASES = [
    pytest.param(method, kind, marks=[] if (method, kind) in FAST else [pytest.mark.slow])
    for method in sorted(METHODS)
    for kind in sorted(SPECS)
    if not (method in IMAGES_ONLY and kind == "state")
    and not (method in STATES_ONLY and kind == "image")
]


@pytest.mark.parametrize(("method", "kind"), CASES)
def test_agent_contract(method, kind, tmp_path):
    spec = SPECS[kind]
    rows = synthetic_rows(spec, ROWS)
    cfg, agent = build_agent(method, spec, rows)
    replay = make_replay(agent, spec, rows)
    rng = jax.random.PRNGKey(0)
    state = agent.init(jax.random.fold_in(rng, 0), spec)
    programs = Programs(agent)

    phases = training_phases(agent, cfg)
    assert phases, "the schedule names no training phase"
    record = {}
    for phase in phases:
        data = agent.phase_data(phase, state, replay, jax.random.fold_in(rng, 7))
        data = replay if data is None else data
        state, metrics = programs.chunk(phase, 2)(state, data, rng, 0)
        assert metrics, f"phase {phase} reports no metrics"
        # Every metric is finite. TD3, TD3+BC and GEM log NaN for the actor's metrics on a step
        # without an actor update (policy_delay); a chunk's mean skips those, and step 0 of
        # every chunk here updates the actor.
        for key, value in metrics.items():
            assert np.isfinite(np.asarray(value)).all(), (phase, key, value)
        record[phase] = metrics

    if agent.has_policy:
        record["eval_actions"] = check_policy(agent, programs, state, spec, rows, rng)
    else:
        scalars, videos = agent.report(state, replay, rng)
        assert scalars and all(np.isfinite(v) for v in scalars.values())
        assert all(
            np.asarray(v).dtype == np.uint8 and np.asarray(v).ndim == 4 for v in videos.values()
        )
        record["report"] = scalars
    check_or_write(f"{method}/{kind}", record)
    check_checkpoint_and_resume(agent, programs, state, spec, replay, rng, phases, tmp_path)


def check_policy(agent, programs, state, spec, rows, rng) -> np.ndarray:
    """Actions in every mode are in [-1, 1]; evaluation is deterministic. -> its actions."""
    obs = {k: v[:7] for k, v in rows["observations"].items()}
    for mode in POLICY_MODES:
        carry, action = programs.policy(state, agent.initial_carry(7), obs, mode, rng)
        action = np.asarray(action)
        assert action.shape == (7, spec.act_dim) and np.isfinite(action).all()
        assert np.all(np.abs(action) <= 1.0 + 1e-6), mode
    _, a1 = programs.policy(state, None, obs, EVAL, jax.random.PRNGKey(1))
    _, again = programs.policy(state, None, obs, EVAL, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(a1, again)  # evaluation is a function of its key ...
    if not agent.samples_when_evaluating:  # ... and of nothing else for most agents
        _, a2 = programs.policy(state, None, obs, EVAL, jax.random.PRNGKey(2))
        np.testing.assert_array_equal(a1, a2)
    _, e1 = programs.policy(state, None, obs, EXPLORE, jax.random.PRNGKey(1))
    assert e1.shape == a1.shape
    return np.asarray(a1)


def check_checkpoint_and_resume(agent, programs, state, spec, replay, rng, phases, tmp_path):
    run = RunState(state, replay if agent.online else None, new_counters(), rng)
    checkpoint.save(tmp_path, 2, run)
    template = RunState(
        agent.init(jax.random.PRNGKey(9), spec),
        make_replay(agent, spec, synthetic_rows(spec, ROWS, seed=1)) if agent.online else None,
        new_counters(),
        jax.random.PRNGKey(9),
    )
    step, restored = checkpoint.load_latest(tmp_path, template)
    assert step == 2 and leaves_equal(restored, run)

    last = phases[-1]
    program = programs.chunk(last, 2)
    data = agent.phase_data(last, state, replay, jax.random.fold_in(rng, 7))
    data = replay if data is None else data
    straight, _ = program(*program(state, data, rng, 10)[:1], data, rng, 12)
    resumed_data = restored.replay if agent.online else data
    after_first, _ = program(restored.agent, resumed_data, restored.rng, 10)
    resumed, _ = program(after_first, resumed_data, restored.rng, 12)
    assert leaves_equal(straight, resumed)


def test_host_fed_batches_train_like_device_sampling():
    """BC on the image spec: batches drawn on the host and fed in give a training step."""
    spec = SPECS["image"]
    rows = synthetic_rows(spec, ROWS)
    cfg, agent = build_agent("bc", spec, rows)
    host = replay_lib.HostReplay(rows)
    batches = [agent.host_batch("bc", host, replay_lib.host_rng(0, t)) for t in range(3)]
    stacked = jax.tree.map(lambda *x: np.stack(x), *batches)
    assert stacked["observations"]["image"].dtype == np.uint8  # frames stay uint8 to the device
    state = agent.init(jax.random.PRNGKey(0), spec)
    program = Programs(agent).chunk("bc", 3, fed=True)
    new_state, metrics = program(state, stacked, jax.random.PRNGKey(0), 0)
    assert np.isfinite(float(metrics["train/loss"]))
    assert not leaves_equal(new_state.params, state.params)


@pytest.mark.slow  # compiles the world model's step twice
def test_world_model_chunks_scan_as_the_host_loop_steps():
    """Method `model` in the fast formulation scans its chunks of host-drawn batches; the scan
    takes the host loop's steps (same keys, same batches): equal losses, and parameters equal to
    float32 rounding amplified at most to a few Adam steps. The plain formulation still loops
    on the host."""
    spec = SPECS["image"]
    rows = synthetic_rows(spec, ROWS)
    _, plain = build_agent("model", spec, rows, ("rssm.formulation=plain",))
    assert plain.loops_on_host("model")
    cfg, agent = build_agent("model", spec, rows)
    assert not agent.loops_on_host("model")
    # the batches drawn on the host, as from the model's host replay in a run
    host = replay_lib.HostReplay(rows)
    batches = [agent.host_batch("model", host, replay_lib.host_rng(0, t)) for t in range(3)]
    fed = jax.tree.map(lambda *x: np.stack(x), *batches)
    state = agent.init(jax.random.PRNGKey(0), spec)
    rng = jax.random.PRNGKey(3)
    scanned, scan_metrics = Programs(agent).chunk("model", 3, fed=True)(state, fed, rng, 0)
    agent.host_loop_chunks = True
    looped, loop_metrics = Programs(agent).chunk("model", 3, fed=True)(state, fed, rng, 0)
    for key in ("model/loss", "model/image_loss", "model/reward_loss"):
        np.testing.assert_allclose(scan_metrics[key], loop_metrics[key], rtol=1e-4)
    lr = float(cfg.rssm.lr)
    for a, b in zip(jax.tree.leaves(scanned.params), jax.tree.leaves(looped.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=3 * lr)
