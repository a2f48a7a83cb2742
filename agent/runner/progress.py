"""Progress a newcomer can follow: the time left in every phase of a run.

Training phases run at very different speeds (LEQ's behaviour cloning is tens of times faster
per step than its imagination phase), so one rate over the whole run misleads. The ETA sums,
over the phases ahead, steps left / that phase's rate:

    rate(p) = steps done in p / seconds spent in p            once p has run (its first chunk,
                                                              which compiles, left out once
                                                              there are others)
    rate(p) = rate(q) * cost(q) / cost(p)                     before, from a measured phase q
                                                              and the agent's `phase_costs`

plus the evaluation episodes ahead at their measured (or prior) seconds per episode.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from agent.protocol import WARMUP, FitEpoch

WARMUP_COST = 0.05  # acting at random costs a small part of acting and learning
EVAL_SECONDS_PER_STEP = 1e-3  # prior: one simulator step and one policy call per episode step


def duration(seconds: float) -> str:
    """Seconds in words: 42s, 3m05s, 1h02m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class PhaseEta:
    """Seconds left in the training loop, phase by phase (module docstring)."""

    def __init__(
        self,
        steps_left: Mapping[str, int],
        costs: Mapping[str, float],
        eval_episodes: int = 0,
        eval_seconds_per_episode: float = 0.0,
    ) -> None:
        self.left = dict(steps_left)
        self.costs = {WARMUP: WARMUP_COST, **costs}
        self.done: dict[str, list[tuple[int, float]]] = {}  # phase -> [(steps, seconds)]
        self.eval_left, self.eval_prior = eval_episodes, eval_seconds_per_episode
        self.eval_done = [0, 0.0]  # episodes, seconds

    def record(self, phase: str, steps: int, seconds: float) -> None:
        """A chunk of `steps` steps of `phase` took `seconds`."""
        self.done.setdefault(phase, []).append((steps, seconds))
        self.left[phase] = max(0, self.left.get(phase, 0) - steps)

    def record_eval(self, episodes: int, seconds: float) -> None:
        self.eval_done[0] += episodes
        self.eval_done[1] += seconds
        self.eval_left = max(0, self.eval_left - episodes)

    def measured(self, phase: str) -> tuple[float, bool] | None:
        """(steps per second of `phase`, True when measured beyond its first chunk, which
        compiled the program), None before it has run."""
        chunks = self.done.get(phase, [])
        clean = len(chunks) > 1
        steps, seconds = (sum(c[i] for c in chunks[int(clean) :]) for i in (0, 1))
        return (steps / seconds, clean) if steps and seconds > 0 else None

    def rate(self, phase: str) -> float | None:
        """`phase`'s steps per second: measured beyond its first chunk, else scaled from the
        last phase measured so (by the agent's phase costs), else whatever was measured."""
        own = self.measured(phase)
        if own is not None and own[1]:
            return own[0]
        cost = lambda p: self.costs.get(p, 1.0)  # noqa: E731
        others = [(p, m) for p in self.done if p != phase and (m := self.measured(p))]
        clean = [(p, m) for p, m in others if m[1]]
        if clean:
            known, (known_rate, _) = clean[-1]
            return known_rate * cost(known) / cost(phase)
        if own is not None:
            return own[0]
        if others:
            known, (known_rate, _) = others[-1]
            return known_rate * cost(known) / cost(phase)
        return None

    def parts(self) -> dict[str, float] | None:
        """Seconds left per phase (and "evaluation"), None while no rate is known."""
        out = {}
        for phase, steps in self.left.items():
            if steps:
                rate = self.rate(phase)
                if rate is None:
                    return None
                out[phase] = steps / rate
        if self.eval_left:
            episodes, seconds = self.eval_done
            per_episode = seconds / episodes if episodes else self.eval_prior
            out["evaluation"] = self.eval_left * per_episode
        return out

    def text(self) -> str | None:
        """ "12m30s (bc 20s, fqe 2m00s, leq 10m05s, evaluation 5s)", or None while unknown."""
        parts = self.parts()
        if parts is None:
            return None
        total = duration(sum(parts.values()))
        shown = {k: v for k, v in parts.items() if v >= 0.5}  # a phase's last moments: left out
        if len(shown) < 2:
            return total
        return f"{total} ({', '.join(f'{k} {duration(v)}' for k, v in shown.items())})"


class FitProgress:
    """Prints one line per epoch of a world-model fit, with its time per epoch and the time left
    that early stopping allows (at least `least_left` more epochs, at most `most_left`)."""

    def __init__(self, print_line: Callable[[str], None] | None = None) -> None:
        self.print_line = print_line or (lambda text: print(text, flush=True))
        self.start = time.perf_counter()
        self.summary = ""

    def __call__(self, epoch: FitEpoch) -> None:
        now = time.perf_counter()
        self.summary = epoch.summary
        if epoch.done:
            self.print_line(
                f"world model: trained in {epoch.epoch} epochs ({duration(now - self.start)}): "
                f"{epoch.summary}"
            )
            return
        per_epoch = (now - self.start) / epoch.epoch
        if epoch.least_left == 0:
            left = "stopping"
        elif epoch.most_left is None:
            low = duration(epoch.least_left * per_epoch)
            left = f"at least {epoch.least_left} more (eta >= {low})"
        elif epoch.most_left == epoch.least_left:
            left = f"{epoch.most_left} more (eta {duration(epoch.most_left * per_epoch)})"
        else:
            low, high = epoch.least_left * per_epoch, epoch.most_left * per_epoch
            left = (
                f"{epoch.least_left}-{epoch.most_left} more (eta {duration(low)}-{duration(high)})"
            )
        self.print_line(
            f"world model: epoch {epoch.epoch}: {epoch.summary} | {per_epoch:.1f} s/epoch, {left}"
        )
