"""The scripted controller D4RL used to record its maze2d datasets, re-implemented.

Algorithm (D4RL d4rl/pointmaze/waypoint_controller.py, scripts/generation/
generate_maze2d_datasets.py): the goal is snapped to its grid cell; a shortest 4-connected grid
path from the particle's cell to that cell gives one waypoint per cell, each jittered by
-U(0, 0.2) per coordinate except the final one; a PD law a = 10 (waypoint - xy) - 1 * v, clipped
to [-1, 1], tracks the current waypoint and moves on once within 0.1 of it. The goal counts as
reached within 0.1 of the goal cell; the collector then samples a new goal and keeps going.
D4RL's noisy datasets add N(0, 0.5^2) to the clipped action and clip again.

D4RL also required the per-step displacement to be below 0.1 before advancing; with the velocity
clipped to 5 and 0.01 s steps the displacement never exceeds 0.05*sqrt(2), so that test is always
true and is left out. D4RL found its path with value iteration on the grid; a breadth-first search
gives a path of the same length (ties may be broken differently).
"""

from __future__ import annotations

from collections import deque

import numpy as np

NEIGHBOURS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def shortest_path(
    walls: np.ndarray, start: tuple[int, int], goal: tuple[int, int]
) -> list[tuple[int, int]]:
    """Cells of a shortest 4-connected path from `start` to `goal`, both included."""
    rows, cols = walls.shape
    parent: dict[tuple[int, int], tuple[int, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            break
        for di, dj in NEIGHBOURS:
            nxt = (cell[0] + di, cell[1] + dj)
            inside = 0 <= nxt[0] < rows and 0 <= nxt[1] < cols
            if inside and not walls[nxt] and nxt not in parent:
                parent[nxt] = cell
                queue.append(nxt)
    if goal not in parent:
        raise ValueError(f"no path from {start} to {goal}")
    path = [goal]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])
    return path[::-1]


class WaypointPlanner:
    """D4RL's maze2d waypoint + PD controller over a wall grid (D4RL maze2d frame)."""

    def __init__(
        self,
        walls: np.ndarray,
        p_gain: float = 10.0,
        d_gain: float = -1.0,
        noise_std: float = 0.0,
        solve_thresh: float = 0.1,
        waypoint_jitter: float = 0.2,
    ):
        """`walls[i, j]` True for wall cells; `noise_std` 0.5 reproduces D4RL's noisy datasets."""
        self.walls = np.asarray(walls, dtype=bool)
        self.p_gain = p_gain
        self.d_gain = d_gain
        self.noise_std = noise_std
        self.solve_thresh = solve_thresh
        self.waypoint_jitter = waypoint_jitter
        self._goal_cell: tuple[int, int] | None = None
        self._waypoints: list[np.ndarray] = []
        self._index = 0

    @property
    def goal_cell(self) -> tuple[int, int] | None:
        """The grid cell the planner is steering to."""
        return self._goal_cell

    def set_goal(self, goal_xy) -> None:
        """Steer to the cell of `goal_xy`; the path is planned on the next `act`."""
        cell = _nearest_cell(goal_xy)
        if cell != self._goal_cell:
            self._goal_cell = cell
            self._waypoints = []

    def reset(self) -> None:
        """Forget the planned path (after the particle was moved, e.g. by an env reset)."""
        self._waypoints = []

    def reached(self, obs: np.ndarray) -> bool:
        """True once the particle is within `solve_thresh` of the goal cell."""
        if self._goal_cell is None:
            return False
        return bool(np.linalg.norm(np.asarray(obs[:2]) - self._goal_cell) < self.solve_thresh)

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Action in [-1, 1]^2 for a maze2d observation [x, y, vx, vy]."""
        if self._goal_cell is None:
            raise RuntimeError("call set_goal before act")
        xy = np.asarray(obs[:2], dtype=np.float64)
        velocity = np.asarray(obs[2:4], dtype=np.float64)
        if not self._waypoints:
            self._plan(xy, rng)
        if self.reached(obs):
            target = np.asarray(self._goal_cell, dtype=np.float64)
        else:
            target = self._waypoints[self._index]
            self._advance(xy, target)
        action = np.clip(self.p_gain * (target - xy) + self.d_gain * velocity, -1.0, 1.0)
        if self.noise_std > 0:
            action = np.clip(action + rng.normal(0.0, self.noise_std, 2), -1.0, 1.0)
        return action.astype(np.float32)

    def _advance(self, xy: np.ndarray, waypoint: np.ndarray) -> None:
        last = len(self._waypoints) - 1
        if self._index < last and np.linalg.norm(xy - waypoint) < self.solve_thresh:
            self._index += 1

    def _plan(self, xy: np.ndarray, rng: np.random.Generator) -> None:
        path = shortest_path(self.walls, self._start_cell(xy), self._goal_cell)
        cells = path[1:] or [self._goal_cell]
        waypoints = [np.asarray(cell, dtype=np.float64) for cell in cells]
        for k in range(len(waypoints) - 1):  # the final waypoint is the goal cell itself
            waypoints[k] = waypoints[k] - rng.uniform(size=2) * self.waypoint_jitter
        self._waypoints = waypoints
        self._index = 0

    def _start_cell(self, xy: np.ndarray) -> tuple[int, int]:
        """The particle's cell as D4RL rounds it, or the nearest free cell if that is a wall.

        Rounding ignores D4RL's 0.2 physical offset, so near a wall it can name the wall cell.
        """
        cell = _nearest_cell(xy)
        rows, cols = self.walls.shape
        if 0 <= cell[0] < rows and 0 <= cell[1] < cols and not self.walls[cell]:
            return cell
        free = np.argwhere(~self.walls)
        best = free[np.argmin(np.linalg.norm(free - xy, axis=1))]
        return int(best[0]), int(best[1])


def _nearest_cell(xy) -> tuple[int, int]:
    return int(round(float(xy[0]))), int(round(float(xy[1])))
