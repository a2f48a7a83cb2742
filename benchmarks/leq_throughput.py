"""Throughput of the LEQ actor + critic update: one-sweep action gradients vs per-step Jacobians.

Prints ONE JSON object. Both variants run the same update (actor DPG-lambda step, critic
lambda-return expectile step, EMA) on the same shapes in the same process; they differ only in
how the actor gradient is computed: "production" = `action_gradients.production_policy_grad`
(g_t for all t and the surrogate's parameter gradient from one backward sweep), "reference" =
`action_gradients.reference` (jacrev, H+1 backward passes) then `losses.policy_surrogate`
differentiated by ordinary AD. Defaults are hopper-shaped: batch 256, H 10, a 7-member 4x200
Swish ensemble (the project's world model with "balanced" elite routing: about one member
evaluation per sample per step), 3x256 actor and critic, obs 11, act 3.

The imagination scans are fully unrolled in both variants. GFLOP per update comes from XLA's
cost analysis of the compiled multi-update chunk: it counts a loop body once, so the chunk's
count is one update's, and the unrolled H-step scans are counted in full. Timing: interleaved
calls of `chunk` updates each, best call per variant (the machine is shared; the best call is
the least disturbed).

    python benchmarks/leq_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.leq import action_gradients, imagination, losses, networks, returns  # noqa: E402

GAMMA, LAM, TAU, BETA, EMA_RATE = 0.997, 0.95, 0.1, 0.25, 0.005
OBS_DIM, ACT_DIM = 11, 3

FULL = dict(batch=256, horizon=10, hidden=(256, 256, 256), wm_hidden=(200,) * 4, members=7,
            elites=5, chunk_prod=4, chunk_ref=2, calls=8)  # fmt: skip
QUICK = dict(batch=16, horizon=3, hidden=(32, 32), wm_hidden=(32, 32), members=3, elites=2,
             chunk_prod=4, chunk_ref=2, calls=3)  # fmt: skip


class State(NamedTuple):
    actor: dict
    critic: dict
    ema: dict
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    key: jax.Array


def hopper_like_termination(obs, action, next_obs):
    """Hopper's model termination (§1.5) without importing envs (used only if envs is missing)."""
    alive = (
        jnp.all(jnp.isfinite(next_obs), -1)
        & jnp.all(next_obs[..., 1:] < 100, -1)
        & (next_obs[..., 0] > 0.7)
        & (jnp.abs(next_obs[..., 1]) < 0.2)
    )
    return ~alive


def build_model_step(cfg: dict, key: jax.Array):
    """The project's ensemble with random weights; a shape-equivalent stand-in if unavailable."""
    try:
        from agent.world_model import EnsembleConfig, EnsembleWorldModel, ensemble_step

        wm_cfg = EnsembleConfig(
            num_members=cfg["members"],
            num_elites=cfg["elites"],
            hidden_sizes=cfg["wm_hidden"],
            weight_decays=(0.0,) * (len(cfg["wm_hidden"]) + 1),
            max_logvar_init=-4.0,  # modest noise keeps random rollouts alive longer
            elite_sampling="balanced",
        )
        params = jax.jit(EnsembleWorldModel(OBS_DIM, ACT_DIM, wm_cfg).init_params)(key)
        step = functools.partial(ensemble_step, params, elite_sampling="balanced")
        name = "agent.world_model.ensemble_step(elite_sampling='balanced')"
        return step, (params.input_mean, params.input_std), name
    except ImportError:
        return _stand_in_model_step(cfg, key)


def _stand_in_model_step(cfg: dict, key: jax.Array):
    """One random member (4x200 Swish MLP) per sample per step; reparameterised Gaussian."""
    sizes = (OBS_DIM + ACT_DIM, *cfg["wm_hidden"], 2 * (OBS_DIM + 1))
    keys = jax.random.split(key, len(sizes) - 1)
    m = cfg["members"]
    layers = [
        (jax.random.normal(k, (m, i, o)) / (2 * np.sqrt(i)), jnp.zeros((m, o)))
        for k, i, o in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]

    def step(obs, action, step_key):
        k_member, k_noise = jax.random.split(step_key)
        member = jax.random.randint(k_member, obs.shape[:1], 0, m)
        x = jnp.concatenate([obs, action], -1)
        for i, (w, b) in enumerate(layers):
            x = jnp.einsum("bi,bio->bo", x, w[member]) + b[member]
            x = jax.nn.swish(x) if i < len(layers) - 1 else x
        mean, logvar = jnp.split(x, 2, -1)
        y = mean + jnp.exp(0.5 * jnp.clip(logvar, -10, -4)) * jax.random.normal(k_noise, mean.shape)
        return obs + y[:, :-1], y[:, -1]

    scaler = (jnp.zeros(OBS_DIM + ACT_DIM), jnp.ones(OBS_DIM + ACT_DIM))
    return step, scaler, "stand-in (agent.world_model not importable)"


def make_update(cfg, variant, model_step, termination_fn, scaler, unroll=1):
    """One LEQ update (§3.4 code form): actor step, then critic step with the pre-update actor."""
    actor_net = networks.make_actor(ACT_DIM, cfg["hidden"])
    critic_net = networks.make_critic(cfg["hidden"])
    actor_tx = optax.adam(optax.cosine_decay_schedule(3e-5, 1_000_000))
    critic_tx = optax.adam(1e-4)
    mean, std = scaler
    horizon = cfg["horizon"]

    def policy(params, obs):
        return networks.deterministic_action(actor_net.apply(params, obs, mean, std)[0])

    def q_fn(params, obs, act):
        return critic_net.apply(params, obs, act, mean, std)

    def actor_step(state, start_obs, key):
        critic_fn = functools.partial(q_fn, state.critic)
        args = (critic_fn, model_step, termination_fn, start_obs, key, horizon, GAMMA, LAM)
        if variant == "production":  # g_t and grad_theta L_pi from one backward sweep
            pg = action_gradients.production_policy_grad(
                policy, state.actor, *args, TAU, unroll=unroll
            )
            loss, grads = pg.loss, pg.param_grads
        else:  # per-step Jacobians, then the surrogate's gradient by ordinary AD
            actor_fn = functools.partial(policy, state.actor)
            ag = action_gradients.reference(actor_fn, *args, unroll=unroll)
            omega = losses.policy_step_weights(ag.returns, ag.q_values, TAU)
            states = jax.lax.stop_gradient(ag.rollout["obs"])
            loss_fn = lambda p: losses.policy_surrogate(policy(p, states), ag.grads, omega)
            loss, grads = jax.value_and_grad(loss_fn)(state.actor)
        updates, opt = actor_tx.update(grads, state.actor_opt, state.actor)
        return optax.apply_updates(state.actor, updates), opt, loss

    def critic_step(state, start_obs, data, key):
        actor_fn = functools.partial(policy, state.actor)  # pre-update actor
        ro = imagination.imagine(
            actor_fn, model_step, termination_fn, start_obs, key, horizon, unroll=unroll
        )
        ro = jax.lax.stop_gradient(ro)
        batch = start_obs.shape[0]
        weights = losses.imagined_loss_weights(ro["alive"], GAMMA)
        # One critic call per parameter set: rows the loss differentiates (imagined (s_t, a_t),
        # t < H, then the dataset pairs) and rows only evaluated (s_H, and the dataset's s').
        flat = lambda x: x.reshape(-1, x.shape[-1])
        obs_fit = jnp.concatenate([flat(ro["obs"][:-1]), data["obs"]])
        act_fit = jnp.concatenate([flat(ro["actions"][:-1]), data["actions"]])
        obs_eval = jnp.concatenate([ro["obs"][-1], data["next_obs"]])
        act_eval = jnp.concatenate([ro["actions"][-1], actor_fn(data["next_obs"])])
        q_last, next_q = jnp.split(q_fn(state.critic, obs_eval, act_eval), 2)
        y_env = losses.env_targets(data["rewards"], data["not_done"], next_q, GAMMA)
        split = lambda q: (q[: horizon * batch].reshape(horizon, batch), q[horizon * batch :])
        ema_model, ema_env = split(q_fn(state.ema, obs_fit, act_fit))

        def loss_fn(params):
            q_model, q_env = split(q_fn(params, obs_fit, act_fit))
            q_all = jnp.concatenate([jax.lax.stop_gradient(q_model), q_last[None]])
            targets = returns.lambda_returns(ro["rewards"], q_all, ro["alive"], GAMMA, LAM)
            l_model = losses.model_critic_loss(targets, q_model, weights, TAU)
            l_env = losses.env_critic_loss(y_env, q_env)
            r_model = losses.ema_regulariser(ema_model, q_model, weights)
            r_env = losses.ema_regulariser(ema_env, q_env)
            return losses.critic_loss(l_env, l_model, r_env, r_model, BETA)

        loss, grads = jax.value_and_grad(loss_fn)(state.critic)
        updates, opt = critic_tx.update(grads, state.critic_opt, state.critic)
        critic = optax.apply_updates(state.critic, updates)
        ema = optax.incremental_update(critic, state.ema, EMA_RATE)
        return critic, ema, opt, loss

    def update(state: State, batch: dict) -> tuple[State, dict]:
        key, k_actor, k_critic = jax.random.split(state.key, 3)
        actor, actor_opt, actor_loss = actor_step(state, batch["model_obs"], k_actor)
        critic, ema, critic_opt, critic_loss = critic_step(
            state, batch["model_obs"], batch["data"], k_critic
        )
        new = State(actor, critic, ema, actor_opt, critic_opt, key)
        return new, {"actor_loss": actor_loss, "critic_loss": critic_loss}

    def init(key: jax.Array, obs: jax.Array) -> State:
        k_a, k_c, key = jax.random.split(key, 3)
        actor = actor_net.init(k_a, obs, mean, std)
        critic = critic_net.init(k_c, obs, jnp.zeros((obs.shape[0], ACT_DIM)), mean, std)
        ema = jax.tree_util.tree_map(jnp.copy, critic)
        return State(actor, critic, ema, actor_tx.init(actor), critic_tx.init(critic), key)

    return update, init


def make_pool(key: jax.Array, size: int) -> dict:
    """Random hopper-like transitions (height about 1.25, small angles and velocities)."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    offset = jnp.zeros(OBS_DIM).at[0].set(1.25)
    obs = offset + 0.05 * jax.random.normal(k1, (size, OBS_DIM))
    return {
        "obs": obs,
        "actions": jax.random.uniform(k2, (size, ACT_DIM), minval=-1, maxval=1),
        "rewards": jax.random.normal(k3, (size,)),
        "next_obs": obs + 0.01 * jax.random.normal(k4, (size, OBS_DIM)),
        "not_done": jnp.ones((size,)),
    }


def sample_batch(pool: dict, key: jax.Array, batch: int) -> dict:
    k_data, k_model = jax.random.split(key)
    n = pool["obs"].shape[0]
    data = jax.tree_util.tree_map(lambda x: x[jax.random.randint(k_data, (batch,), 0, n)], pool)
    return {"data": data, "model_obs": pool["obs"][jax.random.randint(k_model, (batch,), 0, n)]}


def make_chunk(update, pool: dict, batch: int, length: int):
    """`length` updates per call, fused with lax.scan (dispatch overhead paid once)."""

    def chunk(state: State) -> tuple[State, dict]:
        def body(state, _):
            key, sample_key = jax.random.split(state.key)
            state, metrics = update(state._replace(key=key), sample_batch(pool, sample_key, batch))
            return state, metrics

        state, metrics = jax.lax.scan(body, state, None, length=length)
        return state, jax.tree_util.tree_map(jnp.mean, metrics)

    return jax.jit(chunk)


def gflop_per_update(compiled_chunk) -> float:
    """XLA's flop count of a compiled chunk = one update: the cost analysis counts the body of
    the multi-update loop once (checked against a separately compiled single update)."""
    cost = compiled_chunk.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost["flops"]) / 1e9


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def measure(cfg: dict) -> dict:
    key_model, key_pool, key_init = jax.random.split(jax.random.PRNGKey(0), 3)
    model_step, scaler, model_name = build_model_step(cfg, key_model)
    try:
        from envs.termination import hopper_termination as termination_fn
    except ImportError:
        termination_fn = hopper_like_termination
    pool = make_pool(key_pool, 4096)
    variants = ("production", "reference")
    results, chunks, states = {}, {}, {}
    for name in variants:
        # H-step scans fully unrolled in both variants: XLA:CPU runs them a little faster (no
        # per-call residual-buffer initialisation) and its cost analysis needs it anyway.
        update, init = make_update(cfg, name, model_step, termination_fn, scaler, unroll=True)
        state = init(key_init, pool["obs"][: cfg["batch"]])
        length = cfg["chunk_prod"] if name == "production" else cfg["chunk_ref"]
        t0 = time.perf_counter()
        chunk = make_chunk(update, pool, cfg["batch"], length).lower(state).compile()
        state, metrics = jax.block_until_ready(chunk(state))  # warm-up
        compile_s = time.perf_counter() - t0
        results[name] = {
            "updates_per_call": length,
            "compile_and_first_call_s": round(compile_s, 2),
            "gflop_per_update": gflop_per_update(chunk),
            "finite_losses": bool(all(np.isfinite(float(v)) for v in metrics.values())),
            "call_s": [],
        }
        chunks[name], states[name] = chunk, state
    for _ in range(cfg["calls"]):  # interleaved, so background load hits both alike
        for name in variants:
            t0 = time.perf_counter()
            states[name], _ = jax.block_until_ready(chunks[name](states[name]))
            results[name]["call_s"].append(time.perf_counter() - t0)
    for r in results.values():
        best = min(r["call_s"])
        r["updates_per_s"] = _sig(r["updates_per_call"] / best)
        r["gflop_per_s"] = _sig(r["gflop_per_update"] * r["updates_per_s"])
        r["gflop_per_update"] = _sig(r["gflop_per_update"])
        r["call_s"] = [round(t, 3) for t in r["call_s"]]
    prod, ref = results["production"], results["reference"]
    return {
        "benchmark": "leq_actor_critic_update",
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "shapes": {k: cfg[k] for k in ("batch", "horizon", "hidden", "wm_hidden", "members")}
        | {"elites": cfg["elites"], "obs_dim": OBS_DIM, "act_dim": ACT_DIM},
        "model_step": model_name,
        "production": prod,
        "reference": ref,
        "ratio_updates_per_s": round(prod["updates_per_s"] / ref["updates_per_s"], 2),
        "ratio_gflop_per_update": round(ref["gflop_per_update"] / prod["gflop_per_update"], 2),
        "timing": "best of interleaved timed calls, after one compile+warm-up call",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes (smoke test)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    out = measure(QUICK if args.quick else FULL)
    out["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
