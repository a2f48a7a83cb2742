"""D4RL's maze2d tasks (sparse reward, -v1) rebuilt on gymnasium-robotics' PointMaze pieces.

Coordinates. D4RL observes the particle's joint positions (qpos) of a model in which wall cell
(i, j) of the layout (i = row of the maze string, j = column) is a unit box at world (i + 1, j + 1)
and the particle body is placed at world (1.2, 1.2). In the observed frame, targets and waypoints
are cell indices (cell (i, j) "is" the point (i, j)), but the physical box of cell (i, j) is
centred at (i - 0.2, j - 0.2). We reproduce exactly that frame, including the 0.2 shift, so that
observations, walls and goals line up with D4RL's datasets.

gymnasium-robotics centres its maze at the origin, puts map columns along +x and map rows along
-y. Building it from `np.rot90(layout)` (a proper rotation of the matrix, no reflection) places
D4RL cell (i, j) at sim point (i, j) + constant, so the physics (same particle model: 0.01 s
Euler steps, gear 100, velocity clipped to [-5, 5], zero gravity) is identical and observations
are the sim state plus a constant translation.

Reset follows D4RL: a uniformly random free cell (goal cell included) + U(-0.1, 0.1) per
coordinate, velocity N(0, 0.1^2). The goal stays at D4RL's evaluation goal (the 'G' cell,
`reset_target=False`) unless a data collector moves it with `set_goal`. Reward is 1 when
||xy - goal|| <= 0.5, episodes never terminate and are truncated at D4RL's -v1 limits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

# D4RL's maze strings (d4rl/pointmaze/maze_model.py), one row per entry: '#' wall, 'G' goal.
U_MAZE = (
    "#####",
    "#GOO#",
    "###O#",
    "#OOO#",
    "#####",
)
MEDIUM_MAZE = (
    "########",
    "#OO##OO#",
    "#OO#OOO#",
    "##OOO###",
    "#OO#OOO#",
    "#O#OO#O#",
    "#OOO#OG#",
    "########",
)
LARGE_MAZE = (
    "############",
    "#OOOO#OOOOO#",
    "#O##O#O#O#O#",
    "#OOOOOO#OOO#",
    "#O####O###O#",
    "#OO#O#OOOOO#",
    "##O#O#O#O###",
    "#OO#OOO#OGO#",
    "############",
)

# name -> (maze rows, max_episode_steps of D4RL's maze2d-<maze>-v1 registration)
MAZE2D_TASKS: dict[str, tuple[tuple[str, ...], int]] = {
    "maze2d-umaze": (U_MAZE, 300),
    "maze2d-medium": (MEDIUM_MAZE, 600),
    "maze2d-large": (LARGE_MAZE, 800),
}

GOAL_RADIUS = 0.5  # D4RL's sparse-reward threshold
PARTICLE_OFFSET = 0.2  # D4RL's particle body sits 0.2 beyond the wall grid (see module doc)
RESET_POS_NOISE = 0.1
RESET_VEL_STD = 0.1


@dataclass(frozen=True, eq=False)
class MazeLayout:
    """A maze in D4RL's indexing: `walls[i, j]` is True where cell (i, j) is a wall."""

    walls: np.ndarray
    goal_cell: tuple[int, int]

    @classmethod
    def from_rows(cls, rows: tuple[str, ...]) -> MazeLayout:
        """Parse D4RL-style rows ('#' wall, 'G' goal, 'O' / ' ' free)."""
        walls = np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)
        goals = [(i, j) for i, row in enumerate(rows) for j, ch in enumerate(row) if ch == "G"]
        if len(goals) != 1:
            raise ValueError(f"a maze needs exactly one 'G' cell, found {len(goals)}")
        return cls(walls=walls, goal_cell=goals[0])

    @property
    def free_cells(self) -> np.ndarray:
        """Int array [K, 2] of the non-wall cells (i, j), in row-major order."""
        return np.argwhere(~self.walls)

    def is_free(self, cell) -> bool:
        """Whether cell (i, j) lies inside the maze and is not a wall."""
        i, j = int(cell[0]), int(cell[1])
        rows, cols = self.walls.shape
        return 0 <= i < rows and 0 <= j < cols and not self.walls[i, j]


class Maze2dEnv(gym.Env):
    """D4RL maze2d: observation [x, y, vx, vy] (float32, D4RL frame), action force in [-1, 1]^2."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 100}

    def __init__(self, layout: MazeLayout, render_mode: str | None = None, render_size: int = 64):
        self.layout = layout
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._sim, self._sim_to_d4rl = _build_point_maze(layout, render_mode, render_size)
        self._target_site = self._sim.model.site("target").id
        self._goal = np.asarray(layout.goal_cell, dtype=np.float64)
        self._update_goal_marker()

    # --- coordinates -------------------------------------------------------------------------
    def d4rl_from_sim(self, xy: np.ndarray) -> np.ndarray:
        """Sim (gymnasium-robotics) x, y -> D4RL x, y."""
        return np.asarray(xy, dtype=np.float64) + self._sim_to_d4rl

    def sim_from_d4rl(self, xy: np.ndarray) -> np.ndarray:
        """D4RL x, y -> sim (gymnasium-robotics) x, y."""
        return np.asarray(xy, dtype=np.float64) - self._sim_to_d4rl

    # --- goal ----------------------------------------------------------------------------------
    @property
    def goal(self) -> np.ndarray:
        """Current goal (D4RL frame)."""
        return self._goal.copy()

    @property
    def eval_goal(self) -> np.ndarray:
        """D4RL's evaluation goal: the 'G' cell of the maze string."""
        return np.asarray(self.layout.goal_cell, dtype=np.float64)

    def set_goal(self, xy) -> None:
        """Move the goal (D4RL frame); it persists across resets, as in D4RL."""
        self._goal = np.asarray(xy, dtype=np.float64).reshape(2).copy()
        self._update_goal_marker()

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A random goal like D4RL's `set_target()`: a free cell + U(-0.1, 0.1) per coordinate."""
        cells = self.layout.free_cells
        cell = cells[rng.integers(len(cells))]
        return cell + rng.uniform(-RESET_POS_NOISE, RESET_POS_NOISE, size=2)

    # --- gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset like D4RL. options: 'reset_cell' (i, j) to start in, 'goal' (x, y) to set."""
        super().reset(seed=seed)
        options = options or {}
        if options.get("goal") is not None:
            self.set_goal(options["goal"])
        cell = options.get("reset_cell")
        if cell is None:
            cells = self.layout.free_cells
            cell = cells[self.np_random.integers(len(cells))]
        elif not self.layout.is_free(cell):
            raise ValueError(f"reset_cell {tuple(cell)} is not a free cell")
        pos = np.asarray(cell, np.float64) + self.np_random.uniform(
            -RESET_POS_NOISE, RESET_POS_NOISE, 2
        )
        vel = self.np_random.normal(0.0, RESET_VEL_STD, 2)
        self._sim.reset()
        self._sim.set_state(self.sim_from_d4rl(pos), vel)
        return self._obs(), {"goal": self.goal}

    def step(self, action):
        """One 0.01 s physics step; reward 1.0 within 0.5 of the goal, never terminal."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._sim.step(action)  # PointEnv clips the velocity to [-5, 5] first, like D4RL
        xy = self.d4rl_from_sim(self._sim.data.qpos)
        success = bool(np.linalg.norm(xy - self._goal) <= GOAL_RADIUS)
        return self._obs(), float(success), False, False, {"success": success, "goal": self.goal}

    def render(self):
        """RGB uint8 top-down image (only when made with render_mode='rgb_array')."""
        return self._sim.render()

    def close(self):
        self._sim.close()

    @property
    def model(self):
        """The compiled MuJoCo model (walls are geoms named block_<row>_<col> of the sim map)."""
        return self._sim.model

    def _obs(self) -> np.ndarray:
        xy = self.d4rl_from_sim(self._sim.data.qpos)
        return np.concatenate([xy, self._sim.data.qvel]).astype(np.float32)

    def _update_goal_marker(self) -> None:
        gx, gy = self.sim_from_d4rl(self._goal)
        self._sim.model.site_pos[self._target_site] = (gx, gy, 0.2)


def _build_point_maze(layout: MazeLayout, render_mode: str | None, render_size: int):
    """Compile the rotated maze into a PointEnv; return it and the sim -> D4RL translation."""
    from gymnasium_robotics.envs.maze import point as point_module
    from gymnasium_robotics.envs.maze.maze_v4 import Maze

    point_xml = os.path.join(os.path.dirname(point_module.__file__), "../assets/point/point.xml")
    sim_map = np.rot90(layout.walls).astype(int).tolist()
    maze, xml_path = Maze.make_maze(point_xml, sim_map, maze_size_scaling=1, maze_height=0.4)
    rows, cols = layout.walls.shape
    camera = {
        "distance": 1.3 * max(rows, cols),
        "elevation": -90.0,
        "azimuth": 180.0,
        "lookat": np.zeros(3),
    }
    try:
        sim = point_module.PointEnv(
            xml_file=xml_path,
            render_mode=render_mode,
            width=render_size,
            height=render_size,
            default_camera_config=camera,
        )
    finally:
        os.remove(xml_path)  # make_maze leaves its XML behind; the model is compiled now
    # np.rot90 sends D4RL cell (i, j) to sim map cell (cols - 1 - j, i).
    wall_00_sim = maze.cell_rowcol_to_xy(np.array([cols - 1, 0]))
    wall_00_d4rl = np.array([-PARTICLE_OFFSET, -PARTICLE_OFFSET])
    return sim, wall_00_d4rl - wall_00_sim


def make_maze2d(name: str, render: bool = False, render_size: int = 64) -> gym.Env:
    """Build maze2d-umaze / -medium / -large with D4RL's -v1 time limit."""
    rows, max_steps = MAZE2D_TASKS[name]
    env = Maze2dEnv(
        MazeLayout.from_rows(rows),
        render_mode="rgb_array" if render else None,
        render_size=render_size,
    )
    env.spec = EnvSpec(id=name, max_episode_steps=max_steps)
    return gym.wrappers.TimeLimit(env, max_episode_steps=max_steps)
