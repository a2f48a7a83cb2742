"""The contracts between the runner, the agents and the world models.

    runner  --spec, context-->  Agent(cfg, spec, context)
    runner  --init(key, spec)-->                          state (a pytree)
    runner  --phase(step)-->                              "bc" | "fqe" | "leq" | "value" | ...
    programs: jit(begin_chunk(phase, ...) ; scan(train(phase, ...)))  (agent/programs.py)
    runner  --policy(state, carry, obs, mode, key)-->     (carry, action)

Besides these functions the runner reads only what an agent declares here: `online`,
`uses_world_model`, `device_replay`, `host_loop_chunks`, `has_policy`, `data_needs` (what it
needs from its data), its chunks (offline `train.updates_per_call` gradient steps; online
`env_steps_per_chunk` and `updates_per_chunk`) and `chunk_aligned` intervals, `snapshot_every`,
`counter_fields` (for vmapped seeds) and `phase_costs` (the ETA's prior).

Agents are pure: they never call `jax.jit`, never read a host integer out of their state and
never import `envs` or the runner; everything a task contributes (observation fields, action
size, termination function, dataset statistics) reaches them through `Spec` and `Context`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import jax
import numpy as np

State = Any  # a pytree of arrays
Metrics = dict[str, jax.Array]
WARMUP = "warmup"  # online phase: the runner acts uniformly at random and trains nothing
EVAL, EXPLORE = "eval", "explore"  # policy modes
POLICY_MODES = (EVAL, EXPLORE)


class Field(NamedTuple):
    """One named observation array: its per-step shape and dtype."""

    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class Spec:
    """What an agent may know about its task: observation fields, action size, episode length.

    Observations are dicts of named arrays, e.g. {"state": float32[d]} or
    {"image": uint8[64, 64, 3]}; actions are float32 vectors in [-1, 1].
    """

    obs: Mapping[str, Field]
    act_dim: int
    max_episode_steps: int = 1000

    def zeros_obs(self, batch: int) -> dict[str, np.ndarray]:
        """A batch of all-zero observations (for network initialisation)."""
        return {k: np.zeros((batch, *f.shape), f.dtype) for k, f in self.obs.items()}

    @property
    def flat_obs_dim(self) -> int:
        """Size of the concatenated, flattened observation fields (`observations.flat_obs`)."""
        return int(sum(np.prod(f.shape, dtype=np.int64) for f in self.obs.values()))


@dataclass(frozen=True)
class DataNeeds:
    """What an agent needs from its data; the runner refuses data that does not fit, in one line.

    max_rows: the longest trajectory, in rows, it can learn from (None: any length);
    sentinel_rows: the rows it adds after each trajectory end (1: a sentinel row), counted
    in max_rows; setting: the config key that sets max_rows, named in the message.
    """

    max_rows: int | None = None
    sentinel_rows: int = 0
    setting: str = ""


@dataclass(frozen=True)
class Context:
    """What the runner learned from the data before the agent is built.

    obs_mean / obs_std: statistics of the flattened observations (`observations.py`);
    reward_scale / reward_bias: r_used = scale * r_raw + bias (a model's raw rewards get the same);
    data_size: rows of the offline dataset (0 online); termination_fn(obs, action, next_obs) ->
    bool, the task's ground truth, handed to world models that need it; world: the world model
    (None for model-free agents) and world_params its trained parameters (None: a template).
    """

    obs_mean: np.ndarray | None = None
    obs_std: np.ndarray | None = None
    reward_scale: float = 1.0
    reward_bias: float = 0.0
    data_size: int = 0
    termination_fn: Callable | None = None
    world: Any = None
    world_params: Any = None
    extra: dict = field(default_factory=dict)


class Agent(abc.ABC):
    """A method. Subclasses set the class attributes and implement the abstract functions.

    online: the runner steps an environment and counts `train.steps` in environment steps;
    otherwise it trains on a fixed dataset and counts gradient steps.
    uses_world_model: the runner builds `world_model.kind`, fits or loads it, and passes it in
    the context before the agent is built.
    """

    online: ClassVar[bool] = False
    uses_world_model: ClassVar[bool] = False
    device_replay: ClassVar[bool] = True  # False: batches may be drawn on the host (big data)
    data_needs: DataNeeds = DataNeeds()  # what it needs from its data (the runner checks it)
    # State fields that count the agent's own steps: equal in every seed of a vmapped run, so
    # the seeds share one value and a `lax.cond` on it stays a branch (agent/programs.py).
    counter_fields: ClassVar[tuple[str, ...]] = ()
    # Relative wall time of one step of each phase (missing: 1): the ETA's prior for a phase
    # that has not run yet; once it runs, its measured rate replaces the prior.
    phase_costs: ClassVar[Mapping[str, float]] = {}
    # True: a chunk's steps run as a Python loop over one jitted step instead of one lax.scan.
    # XLA on CPU runs hk.Conv2D's gradients inside a loop many times slower than outside one
    # (17x for BC's encoder step at batch 32, benchmarks/pixels.py), and unrolling the scan
    # instead compiles for minutes. The RSSM's fast formulation (agent/world_model/conv.py)
    # scans faster than it loops, so its agents set this from the model's
    # `steps_loop_on_host` (benchmarks/rssm.py, production.chunk).
    host_loop_chunks: bool = False
    # False: the method's seeds cannot share one vmapped program (`train.seeds`), because each
    # run trains or caches its own world model (saved, or built at a phase's start), which the
    # vmapped loop does not do; `run.py sweep --seeds` runs them instead.
    vmaps_seeds: ClassVar[bool] = True
    # True: evaluation draws from its key (e.g. a filter sampling its latent), so its actions
    # are a function of the key; otherwise they are the same for every key.
    samples_when_evaluating: bool = False

    def __init__(self, cfg: Any, spec: Spec, context: Context) -> None:
        self.cfg, self.spec, self.context = cfg, spec, context

    @abc.abstractmethod
    def init(self, key: jax.Array, spec: Spec) -> State:
        """Fresh parameters and optimiser states."""

    @abc.abstractmethod
    def phase(self, step: int) -> str:
        """Host-side schedule: the name of what step `step` does (offline: gradient steps;
        online: environment steps, WARMUP while acting at random)."""

    def begin_chunk(self, phase: str, state: State, replay: Any, key: jax.Array) -> tuple:
        """Periodic work before a chunk of `train` steps (expansion, memory refresh, targets).

        Returns (state, metrics); it runs inside the same jitted program as the chunk."""
        return state, {}

    @abc.abstractmethod
    def train(self, phase: str, state: State, replay: Any, key: jax.Array) -> tuple:
        """ONE gradient step of `phase` on batches drawn from `replay` -> (state, metrics)."""

    @abc.abstractmethod
    def policy(self, state: State, carry: Any, obs: dict, mode: str, key: jax.Array) -> tuple:
        """(carry, action [B, act_dim]) for a batch of observations; `mode` in POLICY_MODES.

        carry: None for memoryless policies, a recurrent latent for agents with one."""

    def loops_on_host(self, phase: str) -> bool:
        """Whether `phase`'s chunks run as a host loop (`host_loop_chunks`, per phase)."""
        return self.host_loop_chunks

    def phase_data(self, phase: str, state: State, replay: Any, key: jax.Array) -> Any:
        """Device data that `phase`'s steps read instead of the replay, built once when the
        first of the consecutive phases sharing its `phase_data_key` starts (and again on
        resuming inside any of them), so it must be a function of (state, replay, key): e.g.
        the dataset's latents under a frozen model. None: the replay."""
        return None

    def phase_data_key(self, phase: str) -> str:
        """Phases with the same key share one `phase_data`, built when the first of them starts
        (consecutive phases whose data is the same function of (state, replay, key))."""
        return phase

    def chunk_aligned(self) -> dict[str, int]:
        """The agent's own intervals (config key -> steps) that must be whole numbers of chunks:
        phase ends and `begin_chunk` periods, since `begin_chunk` runs only at a chunk's start."""
        return {}

    def batch_size(self, phase: str) -> int:
        """Rows per `train` step of `phase`; needed when batches are drawn on the host."""
        raise NotImplementedError(f"{type(self).__name__} draws its batches on the device")

    def host_batch(self, phase: str, replay: Any, rng: np.random.Generator) -> dict:
        """The batch of one `train` step of `phase` drawn from a host replay (`HostReplay`):
        uniform rows by default; sequence models draw windows."""
        return replay.sample(rng, self.batch_size(phase))

    # False: the agent learns no policy (a world model alone): the runner evaluates nothing and
    # logs `report` at evaluation times and at the end instead.
    has_policy: ClassVar[bool] = True

    def report(self, state: State, replay: Any, key: jax.Array) -> tuple[dict, dict]:
        """(scalars, videos) measured on the replay: name -> float, name -> uint8 [T, H, W, C]."""
        return {}, {}

    # The state fields `policy` reads (None: all). Acting passes only these to the jitted policy,
    # since passing a pytree costs time per leaf on every call (every environment step online).
    policy_fields: ClassVar[tuple[str, ...] | None] = None

    def policy_view(self, state: State) -> State:
        """The state with every field that `policy` does not read set to None."""
        if self.policy_fields is None:
            return state
        return state._replace(**{f: None for f in state._fields if f not in self.policy_fields})

    def trained_world_model(self, state: State) -> tuple[Any, Any] | None:
        """(world model, params) when the agent trained one in this run (the runner saves it in
        LOGDIR/world_model for reuse with `world_model.path`); None otherwise."""
        return None

    def initial_carry(self, batch: int) -> Any:
        """The policy carry at the start of an episode (None: memoryless)."""
        return None

    # --- online agents only -------------------------------------------------------------
    env_steps_per_chunk: int = 0  # environment steps collected between two chunks of updates
    updates_per_chunk: int = 0  # gradient steps per chunk once learning has started
    replay_capacity: int = 0  # rows of the online replay (FIFO)
    snapshot_every: int = 0  # environment steps between two policy snapshots (0: none)

    def snapshot_params(self, state: State) -> dict | None:
        """Policy parameters to save as a behaviour snapshot (None: not supported)."""
        return None


class FitEpoch(NamedTuple):
    """One epoch of a world-model fit, as the progress display shows it.

    summary: what the epoch reached, in words ("holdout mse 0.012, elites [0, 3, 4]");
    least_left / most_left: epochs still to run at least / at most (None: no cap), which early
    stopping decides; done: the fit has ended (summary describes the model it returns)."""

    epoch: int
    summary: str
    least_left: int
    most_left: int | None
    done: bool = False


class WorldModel(abc.ABC):
    """A learned latent dynamics model for imagination.

    The object holds static configuration only; what is learned lives in a `params` pytree.
    A latent is what the model imagines in (the observation vector for the state ensemble, the
    (h, z) pair of an RSSM); `features(latent)` is what actor and critic read.
    """

    kind: ClassVar[str]
    # True: `fit` trains it on the whole dataset before the agent is built (the ensemble);
    # False: the agent trains it with `loss` in its first phase (the RSSM).
    fitted_before_training: ClassVar[bool] = True

    @abc.abstractmethod
    def init(self, key: jax.Array) -> Any:
        """Untrained params (also the structure that loading fills)."""

    def loss(self, params: Any, batch: dict, key: jax.Array) -> tuple[jax.Array, Metrics]:
        """Training loss on a batch (sequences for models trained jointly, like an RSSM)."""
        raise NotImplementedError(f"{type(self).__name__} is trained with `fit`")

    def fit(
        self,
        data: Any,
        key: jax.Array,
        log: Callable | None = None,
        progress: Callable[[FitEpoch], None] | None = None,
    ) -> Any:
        """Train to early stopping on a whole dataset and return the params (ensemble).

        log(epoch, metrics) records each epoch; progress gets a `FitEpoch` per epoch."""
        raise NotImplementedError(f"{type(self).__name__} is trained jointly with `loss`")

    @abc.abstractmethod
    def observe(self, params: Any, carry: Any, obs: dict, prev_action: Any) -> tuple:
        """Filter one observation into the latent: -> (carry, latent)."""

    @abc.abstractmethod
    def imagine_step(self, params: Any, latent: Any, action: jax.Array, key: jax.Array) -> tuple:
        """One imagined step -> (next latent, reward in training units, continue in [0, 1])."""

    @abc.abstractmethod
    def features(self, params: Any, latent: Any) -> jax.Array:
        """The actor's and critic's input for a latent, [..., feature_dim]."""

    @abc.abstractmethod
    def input_scaler(self, params: Any) -> tuple[jax.Array, jax.Array]:
        """(mean, std) over [features, action]: the normaliser of the agents' networks."""

    @abc.abstractmethod
    def file_config(self) -> dict:
        """What a saved model must match to be reused (kind, sizes)."""
