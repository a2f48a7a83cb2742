"""Episodic-memory returns (agent/memory.py) against brute-force horizon enumeration."""

import jax.numpy as jnp
import numpy as np
import pytest

from agent import memory

# ---------------------------------------------------------------------------------------------
# Brute-force reference: plain Python loops, float64, every horizon of every row built explicitly.


def _segments(terminals, episode_ends):
    """(start, last) of every trajectory; a terminal also ends one; the last row always does."""
    n = len(episode_ends)
    bounds, start = [], 0
    for t in range(n):
        if episode_ends[t] > 0.5 or terminals[t] > 0.5 or t == n - 1:
            bounds.append((start, t))
            start = t + 1
    return bounds


def _all_horizons(rewards, values, terminals, start, last, t, gamma, bootstrap_timeouts):
    """[R_{t,0}, ..., R_{t,last-t}] for one estimator, each summed explicitly (no recursion)."""
    out = []
    for h in range(last - t + 1):
        j = t + h  # the row whose successor is bootstrapped
        done = terminals[j] > 0.5 or (not bootstrap_timeouts and j == last)
        ret = sum(gamma**k * float(rewards[t + k]) for k in range(h + 1))
        if not done:
            ret += gamma ** (h + 1) * float(values[j])
        out.append(ret)
    return out


def brute_force(
    rewards, next_values, terminals, episode_ends, gamma, bootstrap_timeouts, form, bounds=None
):
    """Form "max": [N, K] max over h; form "twin": [N, 2] twin arg-max rule (first index).

    `bounds`: the trajectories' (start, last) rows; default `_segments`."""
    next_values = np.asarray(next_values, np.float64).reshape(len(rewards), -1)
    k = next_values.shape[1]
    out = np.zeros((len(rewards), k))
    for start, last in bounds or _segments(terminals, episode_ends):
        for t in range(start, last + 1):
            cands = [
                _all_horizons(
                    rewards, next_values[:, x], terminals, start, last, t, gamma, bootstrap_timeouts
                )
                for x in range(k)
            ]
            if form == "max":
                out[t] = [max(c) for c in cands]
            else:
                for x, y in ((0, 1), (1, 0)):
                    h_star = int(np.argmax(cands[x]))  # numpy argmax: first index on ties
                    out[t, x] = max(cands[y][h_star], cands[x][0])
    return out


def brute_force_mixture(
    rewards, next_values, terminals, episode_ends, gamma, beta, boot, bounds=None
):
    out = np.zeros((len(rewards), 2))
    for start, last in bounds or _segments(terminals, episode_ends):
        for t in range(start, last + 1):
            cands = [
                _all_horizons(rewards, next_values[:, x], terminals, start, last, t, gamma, boot)
                for x in range(2)
            ]
            w = beta ** np.arange(len(cands[0]))
            for x, y in ((0, 1), (1, 0)):
                out[t, x] = max(np.dot(w, cands[y]) / w.sum(), cands[x][0])
    return out


def random_memory(rng, lengths, terminal_prob=0.5, mid_terminal=False):
    """Trajectories of the given lengths; each ends in a terminal (prob) or a timeout."""
    n = int(sum(lengths))
    rewards = rng.normal(size=n).astype(np.float32)
    values = (rng.normal(size=(n, 2)) * 3).astype(np.float32)
    terminals = np.zeros(n, np.float32)
    timeouts = np.zeros(n, np.float32)
    ends = np.zeros(n, np.float32)
    last = np.cumsum(lengths) - 1
    ends[last] = 1
    is_term = rng.random(len(last)) < terminal_prob
    terminals[last[is_term]] = 1
    timeouts[last[~is_term]] = 1
    if mid_terminal:  # a terminal without an end flag must still end the trajectory
        ends[last[is_term][:1]] = 0
    return rewards, values, terminals, ends


LENGTHS = [1, 5, 1, 17, 3, 40, 1, 2, 9, 64, 1, 30]  # includes length-1 episodes


# ---------------------------------------------------------------------------------------------


def test_hand_computed_tiny_example():
    # One truncated trajectory of 3 rows, then a terminal trajectory of 2 rows; gamma = 0.5.
    r = np.array([1.0, 0.0, 2.0, 1.0, 3.0], np.float32)
    v = np.array([[4.0, 0.0], [2.0, 6.0], [8.0, 2.0], [0.0, 4.0], [9.0, 9.0]], np.float32)
    term = np.array([0, 0, 0, 0, 1], np.float32)
    ends = np.array([0, 0, 1, 0, 1], np.float32)
    # Form A, estimator 1:  R_2 = 2 + .5*8 = 6 (timeout bootstraps);  R_1 = 0 + .5*max(6, 2) = 3;
    # R_0 = 1 + .5*max(3, 4) = 3;  R_4 = 3 (terminal);  R_3 = 1 + .5*max(3, 0) = 2.5.
    got = memory.memory_returns_max(r, v[:, 0], term, ends, 0.5)
    np.testing.assert_allclose(got, [3.0, 3.0, 6.0, 2.5, 3.0])
    # Without timeout bootstrapping: R_2 = 2, R_1 = .5*max(2, 2) = 1, R_0 = 1 + .5*max(1, 4) = 3.
    got = memory.memory_returns_max(r, v[:, 0], term, ends, 0.5, bootstrap_timeouts=False)
    np.testing.assert_allclose(got, [3.0, 1.0, 2.0, 2.5, 3.0])
    # Twin, row 1: R^1_{1,.} = [1, 3], R^2_{1,.} = [3, 1.5]  -> h*_1 = 1, h*_2 = 0
    #   R^(1)_1 = max(R^2_{1,1}, R^1_{1,0}) = max(1.5, 1) = 1.5;  R^(2)_1 = max(R^1_{1,0}, 3) = 3.
    # Row 0: R^1_{0,.} = [3, 1.5, 2.5], R^2_{0,.} = [1, 2.5, 1.75] -> h*_1 = 0, h*_2 = 1
    #   R^(1)_0 = max(R^2_{0,0}, 3) = 3;  R^(2)_0 = max(R^1_{0,1}, R^2_{0,0}) = max(1.5, 1) = 1.5.
    got = memory.memory_returns_twin(r, v, term, ends, 0.5)
    np.testing.assert_allclose(got[:2], [[3.0, 1.5], [1.5, 3.0]])
    # Last row: only h = 0, so both columns are max(a^1, a^2) = max(2 + .5*8, 2 + .5*2) = 6.
    np.testing.assert_allclose(got[2], [6.0, 6.0])


@pytest.mark.parametrize("bootstrap_timeouts", [True, False])
@pytest.mark.parametrize("num_lanes", [None, 50])  # None = 1 lane on CPU; 50 = 4-row lanes
def test_forms_match_brute_force(bootstrap_timeouts, num_lanes):
    rng = np.random.default_rng(3 + (num_lanes or 0))
    lengths = list(rng.permutation(LENGTHS))
    r, v, term, ends = random_memory(rng, lengths)
    gamma = float(rng.uniform(0.5, 0.99))
    kw = dict(bootstrap_timeouts=bootstrap_timeouts, num_lanes=num_lanes)
    want_max = brute_force(r, v, term, ends, gamma, bootstrap_timeouts, "max")
    want_twin = brute_force(r, v, term, ends, gamma, bootstrap_timeouts, "twin")
    np.testing.assert_allclose(
        memory.memory_returns_max(r, v, term, ends, gamma, **kw), want_max, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(  # [N] in -> [N] out
        memory.memory_returns_max(r, v[:, 1], term, ends, gamma, **kw), want_max[:, 1], atol=1e-5
    )
    np.testing.assert_allclose(
        memory.memory_returns_twin(r, v, term, ends, gamma, **kw), want_twin, rtol=1e-5, atol=1e-5
    )
    beta = float(rng.uniform(0.2, 0.9))
    want_mix = brute_force_mixture(r, v, term, ends, gamma, beta, bootstrap_timeouts)
    got_mix = memory.memory_returns_mixture(r, v, term, ends, gamma, beta, **kw)
    np.testing.assert_allclose(got_mix, want_mix, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_random_layouts_many_lanes_and_long_trajectories(seed):
    # Trajectories much longer than a lane: exercises the multi-pass lane fix-up.
    rng = np.random.default_rng(100 + seed)
    lengths = rng.integers(1, 80, size=rng.integers(3, 12))
    r, v, term, ends = random_memory(rng, lengths, terminal_prob=0.5, mid_terminal=seed % 2 == 1)
    gamma = float(rng.uniform(0.3, 0.999))
    boot = bool(seed % 2)
    lanes = (3, 16)[seed % 2]  # few distinct static values: fewer compilations
    want = brute_force(r, v, term, ends, gamma, boot, "twin")
    got = memory.memory_returns_twin(
        r, v, term, ends, gamma, bootstrap_timeouts=boot, num_lanes=lanes
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    want = brute_force(r, v, term, ends, gamma, boot, "max")
    got = memory.memory_returns_max(
        r, v, term, ends, gamma, bootstrap_timeouts=boot, num_lanes=lanes
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_ties_pick_the_shortest_horizon():
    # Dyadic numbers with gamma = 0.5: every candidate is exact in float32, so ties are exact.
    # Row 0: R^1_{0,.} = [1 + .5*2, 1 + .5*(0 + .5*4)] = [2, 2] (tie -> h*_1 = 0),
    #        R^2_{0,.} = [1 + .5*0, 1 + .5*(0 + .5*8)] = [1, 3]   (h*_2 = 1).
    r = np.array([1.0, 0.0], np.float32)
    v = np.array([[2.0, 0.0], [4.0, 8.0]], np.float32)
    term = np.zeros(2, np.float32)
    ends = np.array([0, 1], np.float32)
    got = np.asarray(memory.memory_returns_twin(r, v, term, ends, 0.5))
    # R^(1)_0 = max(R^2_{0,h*_1 = 0}, R^1_{0,0}) = max(1, 2) = 2 (h = 1 would give 3).
    # R^(2)_0 = max(R^1_{0,h*_2 = 1}, R^2_{0,0}) = max(2, 1) = 2.
    np.testing.assert_array_equal(got[0], [2.0, 2.0])
    np.testing.assert_array_equal(got, brute_force(r, v, term, ends, 0.5, True, "twin"))


def test_random_ties_match_first_index_rule():
    # Small-integer rewards and values with gamma = 0.5 produce many exact ties.
    rng = np.random.default_rng(7)
    lengths = [6, 1, 9, 4, 12, 3]
    n = sum(lengths)
    r = rng.integers(-1, 2, size=n).astype(np.float32)
    v = rng.integers(-2, 3, size=(n, 2)).astype(np.float32) * 2
    term = np.zeros(n, np.float32)
    ends = np.zeros(n, np.float32)
    ends[np.cumsum(lengths) - 1] = 1
    term[np.cumsum(lengths)[::2] - 1] = 1
    for lanes in (None, 4):
        got = memory.memory_returns_twin(r, v, term, ends, 0.5, num_lanes=lanes)
        np.testing.assert_array_equal(got, brute_force(r, v, term, ends, 0.5, True, "twin"))


def test_terminal_successor_value_is_never_read():
    r = np.array([1.0, 2.0], np.float32)
    v = np.array([[0.0, 1.0], [np.inf, np.nan]], np.float32)
    term = np.array([0, 1], np.float32)
    ends = np.array([0, 1], np.float32)
    got = np.asarray(memory.memory_returns_twin(r, v, term, ends, 0.9))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got[1], [2.0, 2.0])


def test_last_row_is_always_an_end_and_float64_inputs_are_accepted():
    rng = np.random.default_rng(11)
    r, v, term, ends = random_memory(rng, [4, 6])
    ends[-1] = 0  # unterminated last trajectory: treated as truncated there
    want = brute_force(r, v, term, ends, 0.9, True, "max")
    got = memory.memory_returns_max(r.astype(np.float64), v, term, ends, 0.9)
    assert got.dtype == jnp.float32  # x64 disabled: float32 arithmetic
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_twin_rejects_wrong_width_and_max_step_guard():
    with pytest.raises(ValueError):
        memory.memory_returns_twin(np.zeros(3), np.zeros((3, 3)), np.zeros(3), np.ones(3), 0.9)
    ends = np.array([0, 0, 1, 0, 1], np.float32)
    memory.check_max_step(ends, None)
    memory.check_max_step(ends, 3)
    with pytest.raises(NotImplementedError):
        memory.check_max_step(ends, 2)
    memory.check_max_step(ends, 2, terminals=np.array([0, 1, 0, 0, 0], np.float32))


# ---------------------------------------------------------------------------------------------
# `end_sentinel`: the official GEM layout, a sentinel row (reward 0, terminal) after every end.


def with_sentinel_rows(rewards, next_values, terminals, episode_ends):
    """The official memory layout: a sentinel row (reward 0, terminal) appended to every
    trajectory, which then ends at the sentinel (a terminal before it does not split it).

    Returns the extended (rewards, next_values, terminals, episode_ends), the trajectories'
    (start, last) rows in it and the indices of the original rows. The sentinel's value is NaN:
    being terminal, it must never be read.
    """
    r, v, term, ends, bounds, real = [], [], [], [], [], []
    for start, last in _segments(terminals, episode_ends):
        bounds.append((len(r), len(r) + last - start + 1))
        for t in range(start, last + 1):
            real.append(len(r))
            r.append(rewards[t])
            v.append(next_values[t])
            term.append(terminals[t])
            ends.append(0.0)
        r.append(0.0)
        v.append(np.full_like(next_values[last], np.nan))
        term.append(1.0)
        ends.append(1.0)
    as32 = [np.asarray(x, np.float32) for x in (r, v, term, ends)]
    return (*as32, bounds, np.asarray(real))


def test_end_sentinel_at_a_truncated_end_with_a_negative_bootstrap_value():
    # One truncated trajectory of 2 rows, gamma = 0.5; the last row's successor has twin values
    # Q^1 = -4 (negative) and Q^2 = +2.
    r = np.array([1.0, 2.0], np.float32)
    v = np.array([[6.0, 2.0], [-4.0, 2.0]], np.float32)
    term = np.zeros(2, np.float32)
    ends = np.array([0, 1], np.float32)
    kw = dict(end_sentinel=True)
    # Last row: a = r + gamma Q = [0, 3]. Default Form A: R_1 = r + gamma Q^1 = 0; the sentinel
    # adds the candidate r + gamma * 0 = 2, so R_1 = max(0, 2) = 2 (Q^2 >= 0: 3 both ways).
    np.testing.assert_allclose(memory.memory_returns_max(r, v, term, ends, 0.5)[1], [0.0, 3.0])
    np.testing.assert_allclose(memory.memory_returns_max(r, v, term, ends, 0.5, **kw)[1], [2, 3])
    # Row 0: a = [4, 2], MC return 1 + .5*2 = 2. Default R_0 = 1 + .5*max(R_1, Q(s_1)) = [4, 2.5];
    # with the sentinel R_0 = 1 + .5*max(2, 6) = 4 and 1 + .5*max(3, 2) = 2.5: unchanged here.
    np.testing.assert_allclose(memory.memory_returns_max(r, v, term, ends, 0.5, **kw)[0], [4, 2.5])
    # Twin, last row. Default: only h = 0, both columns max(a^1, a^2) = 3. Sentinel: h*_1 = 1
    # (0 < 2), so R^(1) = max(R^(2)_{1,1} = 2, a^1 = 0) = 2; h*_2 = 0 (3 >= 2), R^(2) = 3.
    np.testing.assert_allclose(memory.memory_returns_twin(r, v, term, ends, 0.5)[1], [3.0, 3.0])
    np.testing.assert_allclose(memory.memory_returns_twin(r, v, term, ends, 0.5, **kw)[1], [2, 3])
    # Both values negative: the sentinel gives r = 2 in both columns, the default max(a) = 1.
    v_neg = np.array([[6.0, 2.0], [-4.0, -2.0]], np.float32)
    np.testing.assert_allclose(memory.memory_returns_twin(r, v_neg, term, ends, 0.5)[1], [1, 1])
    got = memory.memory_returns_twin(r, v_neg, term, ends, 0.5, **kw)[1]
    np.testing.assert_allclose(got, [2.0, 2.0])
    # The same numbers from the official layout (a real sentinel row) through brute force.
    for values in (v, v_neg):
        *ext, bounds, real = with_sentinel_rows(r, values, term, ends)
        want = brute_force(*ext, 0.5, True, "twin", bounds)[real]
        np.testing.assert_allclose(
            memory.memory_returns_twin(r, values, term, ends, 0.5, **kw), want
        )


@pytest.mark.parametrize("num_lanes", [None, 50])
def test_end_sentinel_matches_brute_force_on_the_official_layout(num_lanes):
    rng = np.random.default_rng(21 + (num_lanes or 0))
    r, v, term, ends = random_memory(rng, list(rng.permutation(LENGTHS)), mid_terminal=True)
    v -= 2.0  # mostly negative bootstrap values, where the sentinel matters
    gamma, beta = float(rng.uniform(0.5, 0.99)), float(rng.uniform(0.2, 0.9))
    *ext, bounds, real = with_sentinel_rows(r, v, term, ends)
    kw = dict(end_sentinel=True, num_lanes=num_lanes)
    for form, kernel in (("max", memory.memory_returns_max), ("twin", memory.memory_returns_twin)):
        want = brute_force(*ext, gamma, True, form, bounds)[real]
        got = kernel(r, v, term, ends, gamma, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=form)
        default = np.asarray(kernel(r, v, term, ends, gamma, num_lanes=num_lanes))
        assert np.abs(np.asarray(got) - default).max() > 1e-2  # the option changes something
    want = brute_force_mixture(*ext, gamma, beta, True, bounds)[real]
    got = memory.memory_returns_mixture(r, v, term, ends, gamma, beta, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_end_sentinel_floors_form_a_by_the_truncated_monte_carlo_return():
    # Form A with the sentinel = max(default, sum_{k=0}^{T-t} gamma^k r_{t+k}), computed by loops.
    rng = np.random.default_rng(5)
    r, v, term, ends = random_memory(rng, [7, 1, 12, 4], terminal_prob=0.3)
    v -= 3.0
    gamma = 0.9
    default = np.asarray(memory.memory_returns_max(r, v, term, ends, gamma), np.float64)
    got = np.asarray(memory.memory_returns_max(r, v, term, ends, gamma, end_sentinel=True))
    mc = np.zeros(len(r))
    for start, last in _segments(term, ends):
        for t in range(start, last + 1):
            mc[t] = sum(gamma**k * float(r[t + k]) for k in range(last - t + 1))
    np.testing.assert_allclose(got, np.maximum(default, mc[:, None]), rtol=1e-5, atol=1e-5)
    assert np.any(mc[:, None] > default + 1e-3)  # the floor binds somewhere


def test_end_sentinel_changes_nothing_where_the_end_is_not_bootstrapped():
    # Terminal ends, and every end with bootstrap_timeouts=False, have d_T = 1: the sentinel's
    # candidate repeats the last horizon's, so Forms A and B are unchanged.
    rng = np.random.default_rng(9)
    r, v, term, ends = random_memory(rng, LENGTHS, terminal_prob=0.5)
    v -= 2.0
    for kernel in (memory.memory_returns_max, memory.memory_returns_twin):
        want = kernel(r, v, term, ends, 0.9, bootstrap_timeouts=False)
        got = kernel(r, v, term, ends, 0.9, bootstrap_timeouts=False, end_sentinel=True)
        np.testing.assert_array_equal(got, want)
        all_terminal = np.maximum(term, ends)
        want = kernel(r, v, all_terminal, ends, 0.9)
        np.testing.assert_array_equal(
            kernel(r, v, all_terminal, ends, 0.9, end_sentinel=True), want
        )


@pytest.mark.parametrize("form", ["twin", "max"])
def test_replay_memory_returns_passes_end_sentinel(form):
    rng = np.random.default_rng(13)
    r, v, term, ends = random_memory(rng, [5, 9, 3], terminal_prob=0.3)
    v -= 2.0
    data = {"rewards": r, "masks": 1.0 - term, "episode_ends": ends}
    kernel = memory.memory_returns_twin if form == "twin" else memory.memory_returns_max
    for sentinel in (False, True):
        got = memory.replay_memory_returns(v, data, 0.9, form, end_sentinel=sentinel)
        np.testing.assert_array_equal(got, kernel(r, v, term, ends, 0.9, end_sentinel=sentinel))
    default = memory.replay_memory_returns(v, data, 0.9, form)
    np.testing.assert_array_equal(default, kernel(r, v, term, ends, 0.9))


def test_max_step_guard_counts_the_sentinel_row():
    ends = np.array([0, 0, 1, 0, 1], np.float32)
    memory.check_max_step(ends, 3)
    with pytest.raises(NotImplementedError, match="with its sentinel"):
        memory.check_max_step(ends, 3, end_sentinel=True)
    memory.check_max_step(ends, 4, end_sentinel=True)
