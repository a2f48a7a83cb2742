"""LEQ_DV3's optimiser (agent/optimizers.py) against the update equations written out."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from agent.optimizers import laprop, lr_schedule


def test_laprop_matches_the_equations_step_by_step():
    lr, b1, b2, eps, agc = 0.1, 0.9, 0.999, 1e-20, 0.3
    tx = laprop(optax.constant_schedule(lr), agc=agc, eps=eps, b1=b1, b2=b2)
    params = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]])}
    grads = [np.array([[0.1, -0.2], [0.05, 0.4]]), np.array([[2.0, 0.3], [-0.1, -0.2]])]
    state = jax.jit(tx.init)(params)

    @jax.jit  # one compiled optimiser step, not op by op
    def step(grads, state, params):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    p, m, v = np.array(params["w"]), np.zeros((2, 2)), np.zeros((2, 2))
    for t, g in enumerate(grads, 1):
        # AGC per output unit (column of a [in, out] matrix): |g| <= agc * max(|p|, 1e-3)
        g_norm = np.linalg.norm(g, axis=0, keepdims=True)
        p_norm = np.maximum(np.linalg.norm(p, axis=0, keepdims=True), 1e-3)
        g = np.where(g_norm > agc * p_norm, g * agc * p_norm / g_norm, g)
        v = b2 * v + (1 - b2) * g**2
        u = g / (np.sqrt(v / (1 - b2**t)) + eps)
        m = b1 * m + (1 - b1) * u
        p = p - lr * m / (1 - b1**t)
        params, state = step({"w": jnp.asarray(grads[t - 1])}, state, params)
        np.testing.assert_allclose(params["w"], p, rtol=1e-5, atol=1e-6)


def test_learning_rate_warms_up_then_anneals_to_zero():
    schedule = jax.jit(lr_schedule(1.0, warmup=10, steps=110, anneal="cosine"))  # not op by op
    assert float(schedule(0)) == 0.0 and float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(60)) == pytest.approx(0.5, abs=1e-6)  # half-way through the cosine
    assert float(schedule(110)) == pytest.approx(0.0, abs=1e-7)
    flat = lr_schedule(1.0, warmup=0, steps=110, anneal="none")
    assert float(flat(0)) == float(flat(100)) == 1.0
