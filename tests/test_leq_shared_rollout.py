"""`leq.shared_rollout`: the critic step fits the actor step's imagined rollout.

With one key for both steps the separate form (the official one) imagines the same rollout
twice, so the two forms must give the same critic targets (hence critic, loss terms and EMA)
and the same action gradients (hence actor); with the default separate keys they differ.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agent.leq import imagination
from agent.leq import update as update_lib
from agent.world_model import EnsembleConfig, EnsembleWorldModel
from envs.tasks.termination import hopper_termination

OBS, ACT, B, H = 11, 3, 32, 4


@functools.cache
def _problem():
    config = EnsembleConfig(
        num_members=3, num_elites=2, hidden_sizes=(16, 16), weight_decays=(0.0, 0.0, 0.0),
        max_logvar_init=-6.0, elite_sampling="balanced",
    )  # fmt: skip
    model = EnsembleWorldModel(OBS, ACT, config, hopper_termination)
    nets = update_lib.make_nets(ACT, (32, 32), 3e-4, 1e-3, 1000)
    rng = np.random.default_rng(0)
    starts = jnp.asarray(np.r_[1.25, np.zeros(OBS - 1)] + 0.05 * rng.normal(size=(B, OBS)))
    starts = starts.astype(jnp.float32)
    data = {
        "observations": starts,
        "actions": jnp.asarray(rng.uniform(-1, 1, (B, ACT)), jnp.float32),
        "rewards": jnp.asarray(rng.normal(size=B), jnp.float32),
        "next_observations": starts + 0.01,
        "masks": jnp.ones(B, jnp.float32),
    }

    @jax.jit  # every initialiser in one program, not op by op
    def init(starts, actions):
        params = model.init(jax.random.PRNGKey(0))
        scaler = model.input_scaler(params)
        actor = nets.actor.init(jax.random.PRNGKey(1), starts, *scaler)
        critic = nets.critic.init(jax.random.PRNGKey(2), starts, actions, *scaler)
        ac = update_lib.ActorCritic(
            actor, critic, jax.tree_util.tree_map(lambda x: x * 0.9, critic),
            nets.actor_tx.init(actor), nets.critic_tx.init(critic),
        )  # fmt: skip
        return params, scaler, ac

    params, scaler, ac = init(starts, data["actions"])
    world_step = functools.partial(model.imagine_step, params)
    return nets, world_step, scaler, starts, data, ac


def _hyper(shared: bool) -> update_lib.LEQHyper:
    return update_lib.LEQHyper(horizon=H, gamma=0.99, shared_rollout=shared)


def _update(k_actor, k_critic, shared: bool):
    _problem()  # built outside the trace: its cached arrays must not be the trace's tracers
    return _jitted_update(k_actor, k_critic, shared=shared)


@functools.partial(jax.jit, static_argnames=("shared",))
def _jitted_update(k_actor, k_critic, shared: bool):
    nets, world_step, scaler, starts, data, ac = _problem()
    return update_lib.leq_update(
        nets, _hyper(shared), world_step, ac, scaler, starts, data, (k_actor, k_critic)
    )


def _assert_trees_close(a, b, **tol):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def test_the_actor_steps_rollout_is_the_one_the_critic_would_imagine_with_that_key():
    nets, world_step, scaler, starts, _, ac = _problem()
    key = jax.random.PRNGKey(5)

    @jax.jit
    def both():
        hyper = _hyper(True)
        *_, shared = update_lib.actor_step(nets, hyper, world_step, ac, scaler, starts, key)
        own = imagination.imagine(
            update_lib.policy_fn(nets, ac.actor, scaler), world_step, starts, key, H
        )
        return shared, update_lib.states_only(own)

    shared, own = both()
    assert 0 < float(shared["alive"][-1].mean()) <= 1
    _assert_trees_close(shared, own, rtol=1e-5, atol=1e-6)


def test_shared_rollout_equals_the_separate_form_run_with_one_key():
    key, other = jax.random.PRNGKey(5), jax.random.PRNGKey(6)
    separate, m_sep = _update(key, key, shared=False)
    shared, m_shared = _update(key, other, shared=True)  # the critic's own key goes unused
    # Same action gradients (the actor step is one function) and the same critic targets: the
    # model loss, the lambda-return gap and every updated critic / EMA weight agree.
    for name in ("train/actor_loss", "train/critic_model_loss", "train/q_minus_lambda_return"):
        np.testing.assert_allclose(m_shared[name], m_sep[name], rtol=1e-5, atol=1e-6)
    _assert_trees_close(shared, separate, rtol=1e-5, atol=1e-6)


def test_with_separate_keys_the_critic_fits_a_different_rollout():
    """The check above can fail: the official form's second rollout is a different sample."""
    k_actor, k_critic = jax.random.split(jax.random.PRNGKey(5))
    separate, m_sep = _update(k_actor, k_critic, shared=False)
    shared, m_shared = _update(k_actor, k_critic, shared=True)
    _assert_trees_close(shared.actor, separate.actor, rtol=1e-5, atol=1e-6)
    assert m_shared["train/critic_model_loss"] != pytest.approx(
        float(m_sep["train/critic_model_loss"]), rel=1e-4
    )


def test_shared_rollout_is_a_leq_config_key():
    from agent.config import load_config
    from agent.leq.agent import hyper_from_config

    assert not hyper_from_config(load_config(["leq_hopper"], [])).shared_rollout
    on = load_config(["leq_hopper"], ["leq.shared_rollout=true"])
    assert hyper_from_config(on).shared_rollout
