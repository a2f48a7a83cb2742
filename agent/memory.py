"""Episodic-memory returns along stored trajectories (VEM's and GEM's official code).

One kernel serves both methods: VEM passes state values V^X(s_{t+1}), GEM passes critic values
Q^X(s_{t+1}, a~_{t+1}) at smoothed target actions. Everything here sees only flat arrays over ALL
stored transitions, in storage order, trajectories contiguous:

    rewards       [N]              r_t
    next_values   [N] / [N, K]     V^X(s_{t+1}): the value(s) of the successor state of row t
    terminals     [N]              1 = true terminal (never bootstrapped)
    episode_ends  [N]              1 = last row of its trajectory (timeout or terminal)

Conventions (shared by every form):

* A row is a trajectory end when `episode_ends` OR `terminals` is set, and the last stored row
  is always an end (as in `replay.trajectory_bounds`).
* d_t = terminal_t; with `bootstrap_timeouts=False` every trajectory end also gets d_t = 1 (the
  official VEM code's treatment of timeouts, §1.3). Rows inside a trajectory have d_t = 0.
* The h = 0 ("one-step") candidate of row t is  a^X_t = r_t + gamma (1 - d_t) V^X(s_{t+1})
  (a value of a terminal successor is never read, so inf/NaN there is harmless).
* Candidates of row t:  R^X_{t,0} = a^X_t,  R^X_{t,h} = r_t + gamma R^X_{t+1,h-1}  (h >= 1, while
  t + h stays inside the trajectory), i.e. R^X_{t,h} = sum_{k<=h} gamma^k r_{t+k}
  + gamma^{h+1} (1 - d_{t+h}) V^X(s_{t+h+1}).
* Default (`end_sentinel=False`): h runs over 0..T-t for a trajectory ending at row T, so the
  last row of a truncated trajectory has the single candidate R_{T,0} = a_T, which is
  r_T + gamma V(s_{T+1}) when timeouts are bootstrapped, whatever the sign of V(s_{T+1}).
* `end_sentinel=True`: the official GEM code's layout (§1.3), where every trajectory end is
  followed by a sentinel row (reward 0, terminal, so its own return is 0). Each row t then has
  one more candidate, h = T-t+1, the horizon reaching the sentinel:
  R^X_{t,T-t+1} = sum_{k=0}^{T-t} gamma^k r_{t+k} (the truncated Monte-Carlo return, equal for
  both estimators). At a truncated end (d_T = 0) Form A gives R_T = max(r_T + gamma V(s_{T+1}),
  r_T), which differs from the default exactly when V(s_{T+1}) < 0, and inside the trajectory
  R_t = max(default R_t, sum_{k=0}^{T-t} gamma^k r_{t+k}); Form B may pick that horizon as h*_X.
  At a terminal end, or any end with `bootstrap_timeouts=False` (d_T = 1), the extra candidate
  equals R_{t,T-t}, so Forms A and B are unchanged there; Form C's weighted mean counts it with
  weight beta^{T-t+1} at every end. The sentinel rows themselves are not part of the output.

Forms:

* `memory_returns_max`  (Form A)  R_t = max_h R_{t,h}, i.e. R_t = max(a_t, r_t + gamma R_{t+1})
  inside a trajectory and R_T = a_T at its end (max(a_T, r_T) with the sentinel). Works
  column-wise for any K.
* `memory_returns_twin` (Form B)  h*_X = first argmax_h R^X_{t,h} (ties -> shortest horizon),
  R^(1)_t = max(R^(2)_{t,h*_1}, R^(1)_{t,0}),  R^(2)_t = max(R^(1)_{t,h*_2}, R^(2)_{t,0}).
* `memory_returns_mixture` (Form C, code option beta > 0) R^X_t = max(Rbar^Y_t, R^X_{t,0}) with
  Rbar^Y_t = sum_h beta^h R^Y_{t,h} / sum_h beta^h (the same floor as the official twin code).

Kernel design (numbers: benchmarks/memory_update.py, 2-core CPU, jax 0.10.2). Each form is one
jitted backward `lax.scan` whose step is a handful of element-wise ops; the carry is reset on
trajectory-end rows, so one scan over storage order handles every trajectory at once (no Python
loop, no per-trajectory layout) and no host-side layout is precomputed: segmentation comes from
the flags inside the kernel, so the same compiled kernel serves a fixed offline dataset and a
changing online memory of the same size.

Parallel lanes (`num_lanes` = L > 1): the storage is cut into L contiguous lanes of
S = ceil(N / L) rows (padding rows are trajectory ends), transposed to a time-major [S, L] layout
and scanned over S steps with the carry vectorised across lanes. A lane depends on the carry
entering it only through the trajectory crossing its upper boundary. Fix-up: a carry-only pass
yields every lane's carry at its first row (exact whenever the lane contains a trajectory end);
it becomes the next lower lane's incoming carry, and passes repeat (`lax.while_loop`) until
every incoming carry is exact, then one pass emits the outputs: 2 scans of S steps when
S >= the longest trajectory, plus one carry-only pass per extra end-free lane in a chain.

Measured on CPU, XLA compiles the scan's while loop to native code with ~5-20 ns per step, so a
single scan over 1M rows already takes ~7-25 ms (Forms A, B, C; 1000 x 1000 and mixed lengths),
and lanes (L = 4 .. 16000; ~35-50 ms at L = 1000) were never faster: the fix-up's second scan
and the transposes cost more than the loop overhead they save. The default is therefore one
lane on CPU; on accelerators, where a loop step costs microseconds, the default is
L ~ N / max(sqrt(N), 1024) (unmeasured here).

Not supported: the official `max_step` horizon cap. The cap turns the O(T) sweep into a sliding
window arg-max; it never binds when trajectories are at most `max_step` long (D4RL and MuJoCo
episodes are <= 1000 = the default cap), which `check_max_step` verifies on the host.

Ring buffers: the kernel assumes storage order is time order. Roll a wrapped FIFO memory so the
oldest row comes first (e.g. `jnp.roll(x, -cursor, 0)`) and roll the result back.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Carry = Any
Step = Callable[[Carry, tuple], tuple[Carry, jax.Array]]

# Accelerator lanes hold about max(sqrt(N), MIN_LANE_LENGTH) rows: few scan steps, while
# lanes stay longer than typical trajectories (1000 steps) so one fix-up pass suffices.
MIN_LANE_LENGTH = 1024


def default_num_lanes(n: int, backend: str | None = None) -> int:
    """Lanes L for N rows: 1 on CPU (a plain scan is fastest there, see the module docstring);
    elsewhere lanes of about max(sqrt(N), MIN_LANE_LENGTH) rows."""
    if (backend or jax.default_backend()) == "cpu":
        return 1
    lane_length = max(math.isqrt(max(n, 1) - 1) + 1, MIN_LANE_LENGTH)
    return max(1, -(-n // lane_length))


def trajectory_end_mask(terminals: jax.Array, episode_ends: jax.Array) -> jax.Array:
    """Bool [N]: row t ends its trajectory (end flag or terminal; the last row always ends)."""
    ends = (jnp.asarray(episode_ends) > 0.5) | (jnp.asarray(terminals) > 0.5)
    return ends.at[-1].set(True)


def one_step_candidates(
    rewards: jax.Array,
    next_values: jax.Array,
    terminals: jax.Array,
    ends: jax.Array,
    gamma: jax.Array | float,
    bootstrap_timeouts: bool,
) -> jax.Array:
    """a^X_t = r_t + gamma (1 - d_t) V^X(s_{t+1}), d_t = terminal_t (or end_t if not bootstrapping).

    next_values [N, K] -> [N, K]. `where` instead of a product so that the value of a terminal
    successor (which may be a sentinel such as inf) is never read.
    """
    done = jnp.asarray(terminals) > 0.5
    if not bootstrap_timeouts:
        done = done | ends
    boot = jnp.where(done[:, None], jnp.zeros_like(next_values), next_values)
    return rewards[:, None] + gamma * boot


def _to_lanes(x: jax.Array, num_lanes: int, fill: Any) -> jax.Array:
    """[N, ...] storage order -> [S, L, ...] time-major lanes (lane l = rows l*S .. l*S+S-1)."""
    n = x.shape[0]
    lane_length = -(-n // num_lanes)
    pad = num_lanes * lane_length - n
    if pad:
        x = jnp.concatenate([x, jnp.full((pad, *x.shape[1:]), fill, x.dtype)], axis=0)
    return jnp.swapaxes(x.reshape(num_lanes, lane_length, *x.shape[1:]), 0, 1)


def _from_lanes(y: jax.Array, n: int) -> jax.Array:
    """Inverse of `_to_lanes`: [S, L, ...] -> [N, ...]."""
    y = jnp.swapaxes(y, 0, 1)
    return y.reshape(-1, *y.shape[2:])[:n]


def segmented_backward_scan(step: Step, init: Carry, xs: tuple, num_lanes: int) -> jax.Array:
    """Run `step` backward over storage order, lanes in parallel, with the lane fix-up.

    `step(carry_{t+1}, x_t) -> (carry_t, y_t)` must ignore `carry_{t+1}` on trajectory-end rows
    (x_t carries the end flag); `init` is a carry for ONE lane (leaves without the lane axis).
    xs: tuple of [N, ...] arrays whose first entry is the bool end mask (`trajectory_end_mask`).
    Returns the stacked y as [N, ...].
    """
    n = xs[0].shape[0]
    num_lanes = max(1, min(num_lanes, n))
    # Padding rows (bool fill True) are trajectory ends, so they never leak into real rows.
    lanes = tuple(_to_lanes(x, num_lanes, True if x.dtype == jnp.bool_ else 0) for x in xs)
    init = jax.tree.map(lambda c: jnp.broadcast_to(c, (num_lanes, *jnp.shape(c))), init)

    def carry_only(carry: Carry) -> Carry:
        # Carry of every lane at its first row, given the carries entering the lanes' last rows.
        final, _ = jax.lax.scan(lambda c, x: (step(c, x)[0], None), carry, lanes, reverse=True)
        return final

    has_end = jnp.any(lanes[0], axis=0)  # [L]; such a lane's first-row carry ignores its input

    def fix_up(state: tuple) -> tuple:
        carry, exact = state
        first = carry_only(carry)
        # Lane l receives lane l+1's first-row carry; the last lane's input is never read (its
        # last row is an end), so it keeps `init` and counts as exact.
        shifted = jax.tree.map(lambda f, i: jnp.concatenate([f[1:], i[-1:]], 0), first, init)
        exact = jnp.concatenate([has_end[1:] | exact[1:], jnp.ones((1,), bool)])
        return shifted, exact

    carry = init
    if num_lanes > 1:
        exact0 = jnp.arange(num_lanes) == num_lanes - 1
        carry, _ = jax.lax.while_loop(lambda s: ~jnp.all(s[1]), fix_up, (init, exact0))
    _, ys = jax.lax.scan(step, carry, lanes, reverse=True)
    return _from_lanes(ys, n)


def _prepare(rewards, next_values, terminals, episode_ends, gamma, bootstrap_timeouts):
    """Shared front end: float dtype, end mask, one-step candidates a [N, K]."""
    dtype = jnp.result_type(rewards, next_values, jnp.float32)
    rewards = jnp.asarray(rewards, dtype)
    next_values = jnp.asarray(next_values, dtype)
    gamma = jnp.asarray(gamma, dtype)
    ends = trajectory_end_mask(terminals, episode_ends)
    a = one_step_candidates(rewards, next_values, terminals, ends, gamma, bootstrap_timeouts)
    return rewards, ends, a, gamma


@functools.partial(jax.jit, static_argnames=("bootstrap_timeouts", "num_lanes", "end_sentinel"))
def memory_returns_max(
    rewards: jax.Array,
    next_values: jax.Array,
    terminals: jax.Array,
    episode_ends: jax.Array,
    gamma: jax.Array | float,
    bootstrap_timeouts: bool = True,
    num_lanes: int | None = None,
    end_sentinel: bool = False,
) -> jax.Array:
    """Form A (max recursion): the best n-step return along the stored trajectory.

        R_t = max(a_t, r_t + gamma R_{t+1})   inside a trajectory
            = r_t + gamma max(R_{t+1}, V(s_{t+1})),
        R_T = a_T = r_T + gamma (1 - d_T) V(s_{T+1})   at its last row T,

    i.e. R_t = max_{h=0..T-t} R_{t,h}. With `end_sentinel` (the official sentinel row after each
    end, see the module docstring) R_T = max(a_T, r_T) instead, i.e. R_t additionally floored by
    the truncated Monte-Carlo return sum_{k=0}^{T-t} gamma^k r_{t+k}. next_values [N] -> [N];
    [N, K] -> [N, K] (K independent estimators, e.g. VEM's two pairs). `num_lanes` defaults to
    `default_num_lanes(N)`.
    """
    squeeze = jnp.ndim(next_values) == 1
    values = jnp.asarray(next_values)[:, None] if squeeze else jnp.asarray(next_values)
    rewards, ends, a, gamma = _prepare(
        rewards, values, terminals, episode_ends, gamma, bootstrap_timeouts
    )

    def step(m_next, x):
        end, r, a_t = x
        if end_sentinel:
            # An end row continues into the sentinel, whose return is 0.
            m_next = jnp.where(end[:, None], jnp.zeros_like(m_next), m_next)
            m = jnp.maximum(a_t, r[:, None] + gamma * m_next)
        else:
            m = jnp.where(end[:, None], a_t, jnp.maximum(a_t, r[:, None] + gamma * m_next))
        return m, m

    lanes = num_lanes or default_num_lanes(rewards.shape[0])
    init = jnp.zeros(a.shape[1:], a.dtype)
    out = segmented_backward_scan(step, init, (ends, rewards, a), lanes)
    return out[:, 0] if squeeze else out


@functools.partial(jax.jit, static_argnames=("bootstrap_timeouts", "num_lanes", "end_sentinel"))
def memory_returns_twin(
    rewards: jax.Array,
    next_values: jax.Array,
    terminals: jax.Array,
    episode_ends: jax.Array,
    gamma: jax.Array | float,
    bootstrap_timeouts: bool = True,
    num_lanes: int | None = None,
    end_sentinel: bool = False,
) -> jax.Array:
    """Form B (twin back-propagation, VEM/GEM `episodic_memory_tbp`): next_values [N, 2] -> [N, 2].

        R^X_{t,0} = a^X_t,   R^X_{t,h} = r_t + gamma R^X_{t+1,h-1}   (h = 1..T-t)
        h*_X      = first argmax_h R^X_{t,h}        (ties -> the shortest horizon)
        R^(1)_t   = max(R^(2)_{t,h*_1}, R^(1)_{t,0}),   R^(2)_t = max(R^(1)_{t,h*_2}, R^(2)_{t,0})

    O(T) sweep (§4.2): carry (M^X_t, C^X_t) = (max_h R^X_{t,h}, R^Y_{t,h*_X}). The h = 0
    candidate is (a^X_t, a^Y_t), the h >= 1 one is (r_t + gamma M^X_{t+1}, r_t + gamma C^X_{t+1});
    keep the one with the larger first entry, h = 0 on ties (and always at a trajectory end).
    Because x -> r + gamma x is increasing, the first argmax over h >= 1 at t is the first argmax
    at t+1 shifted by one, so the carry suffices. Output: max(C^X_t, a^X_t).

    With `end_sentinel` an end row is not forced to h = 0: it continues into the sentinel's carry
    (0, 0), so its h = 1 candidate is (r_T, r_T); e.g. at a truncated end
    R^X_T = r_T if a^X_T < r_T (Q^X(s_{T+1}) < 0), else max(a^X_T, a^Y_T) (the default's value).
    """
    rewards, ends, a, gamma = _prepare(
        rewards, next_values, terminals, episode_ends, gamma, bootstrap_timeouts
    )
    if a.shape[1] != 2:
        raise ValueError(f"twin returns need next_values [N, 2], got {next_values.shape}")

    def step(carry, x):
        m_next, c_next = carry
        end, r, a_t = x
        if end_sentinel:
            # An end row continues into the sentinel, whose carry is (0, 0).
            m_next = jnp.where(end[:, None], jnp.zeros_like(m_next), m_next)
            c_next = jnp.where(end[:, None], jnp.zeros_like(c_next), c_next)
        m_cont = r[:, None] + gamma * m_next
        take_now = a_t >= m_cont
        if not end_sentinel:
            take_now = take_now | end[:, None]
        m = jnp.where(take_now, a_t, m_cont)
        c = jnp.where(take_now, a_t[:, ::-1], r[:, None] + gamma * c_next)
        return (m, c), c

    lanes = num_lanes or default_num_lanes(rewards.shape[0])
    zero = jnp.zeros((2,), a.dtype)
    cross = segmented_backward_scan(step, (zero, zero), (ends, rewards, a), lanes)
    return jnp.maximum(cross, a)


@functools.partial(jax.jit, static_argnames=("bootstrap_timeouts", "num_lanes", "end_sentinel"))
def memory_returns_mixture(
    rewards: jax.Array,
    next_values: jax.Array,
    terminals: jax.Array,
    episode_ends: jax.Array,
    gamma: jax.Array | float,
    beta: jax.Array | float,
    bootstrap_timeouts: bool = True,
    num_lanes: int | None = None,
    end_sentinel: bool = False,
) -> jax.Array:
    """Form C (twin class with beta in (0, 1)): next_values [N, 2] -> [N, 2].

        Rbar^X_t = sum_{h=0}^{T-t} beta^h R^X_{t,h} / sum_{h=0}^{T-t} beta^h
        R^(1)_t  = max(Rbar^(2)_t, R^(1)_{t,0}),   R^(2)_t = max(Rbar^(1)_t, R^(2)_{t,0})

    O(T) sweep: S^X_t = sum_h beta^h R^X_{t,h}, W_t = sum_h beta^h obey
    S^X_t = a^X_t + beta (r_t W_{t+1} + gamma S^X_{t+1}),  W_t = 1 + beta W_{t+1}
    (S = a, W = 1 at a trajectory end). With `end_sentinel` the sums also run over h = T-t+1 (the
    sentinel horizon, candidate sum_{k=0}^{T-t} gamma^k r_{t+k}): an end row continues from the
    sentinel's (S, W) = (0, 1), giving S_T = a_T + beta r_T, W_T = 1 + beta, at every end.
    """
    rewards, ends, a, gamma = _prepare(
        rewards, next_values, terminals, episode_ends, gamma, bootstrap_timeouts
    )
    if a.shape[1] != 2:
        raise ValueError(f"mixture returns need next_values [N, 2], got {next_values.shape}")
    beta = jnp.asarray(beta, a.dtype)

    def step(carry, x):
        s_next, w_next = carry
        end, r, a_t = x
        if end_sentinel:
            # An end row continues from the sentinel: one candidate (h = 0) of return 0.
            s_next = jnp.where(end[:, None], jnp.zeros_like(s_next), s_next)
            w_next = jnp.where(end, jnp.ones_like(w_next), w_next)
            s = a_t + beta * (r * w_next)[:, None] + beta * gamma * s_next
            w = 1.0 + beta * w_next
        else:
            s = jnp.where(
                end[:, None], a_t, a_t + beta * (r * w_next)[:, None] + beta * gamma * s_next
            )
            w = jnp.where(end, 1.0, 1.0 + beta * w_next)
        return (s, w), s / w[:, None]

    lanes = num_lanes or default_num_lanes(rewards.shape[0])
    init = (jnp.zeros((2,), a.dtype), jnp.ones((), a.dtype))
    mean = segmented_backward_scan(step, init, (ends, rewards, a), lanes)
    return jnp.maximum(mean[:, ::-1], a)


def replay_memory_returns(
    next_values: jax.Array,
    data: dict,
    gamma: float,
    form: str = "twin",
    bootstrap_timeouts: bool = True,
    end_sentinel: bool = False,
) -> jax.Array:
    """The shared kernel on the dataset in storage order: next_values [N, 2] -> R^ [N, 2].

    form "twin" = `memory_returns_twin` (Form B), anything else = `memory_returns_max` (Form A).
    terminals = 1 - masks; trajectory ends come from `episode_ends` (timeouts and gaps), so a
    truncated trajectory's last row T bootstraps from V(s_{T+1}) unless bootstrap_timeouts is
    False (the official VEM code's treatment, §1.3). By default its return is exactly
    r_T + gamma V(s_{T+1}) (Form A; Form B: the larger of the two estimators' values); with
    `end_sentinel` (the official GEM code's sentinel row after each end, §1.3) it is
    max(r_T + gamma V(s_{T+1}), r_T) (Form A; Form B: see `memory_returns_twin`), and earlier
    rows also consider the truncated Monte-Carlo return (module docstring).
    """
    kernel = memory_returns_twin if form == "twin" else memory_returns_max
    terminals = 1.0 - data["masks"]
    return kernel(
        data["rewards"],
        next_values,
        terminals,
        data["episode_ends"],
        gamma,
        bootstrap_timeouts=bootstrap_timeouts,
        end_sentinel=end_sentinel,
    )


def check_max_step(
    episode_ends: np.ndarray,
    max_step: int | None,
    terminals: np.ndarray | None = None,
    end_sentinel: bool = False,
) -> None:
    """Host-side guard for the official `max_step` horizon cap (h <= max_step - 1).

    The kernels implement the uncapped sweep, which equals the capped one exactly when no
    stored trajectory (same end rule as `trajectory_end_mask`) is longer than `max_step` rows,
    counting the sentinel row with `end_sentinel` (its horizon must also fit under the cap).
    Raises NotImplementedError otherwise.
    """
    if max_step is None:
        return
    ends = np.asarray(episode_ends) > 0.5
    if terminals is not None:
        ends = ends | (np.asarray(terminals) > 0.5)
    if not len(ends):
        return
    last = np.flatnonzero(ends)
    if len(last) == 0 or last[-1] != len(ends) - 1:
        last = np.append(last, len(ends) - 1)
    longest = int(np.diff(np.concatenate([[-1], last])).max()) + int(end_sentinel)
    if longest > max_step:
        raise NotImplementedError(
            f"a stored trajectory has {longest} rows{' with its sentinel' * end_sentinel} > "
            f"max_step={max_step}; the horizon cap is "
            "not implemented (the uncapped sweep would differ)"
        )
