"""D4RL's AntMaze evaluation tasks (-v2 semantics) rebuilt on gymnasium-robotics' maze + Ant-v5.

Coordinates. D4RL puts maze column j along +x and row i along +y, 4 units per cell, and shifts
everything so that the start cell 'R' is the origin: cell (i, j) is centred at
(4 j - 4 j_R, 4 i - 4 i_R). gymnasium-robotics centres the maze and maps rows to -y, so we build
it from the vertically flipped map (the two reflections cancel: same physical layout up to a
translation) and report D4RL's x, y = sim x, y + constant.

Observation (29-d, D4RL's antmaze layout): [x, y, z, quaternion (4), 8 joint angles, 14
velocities] = D4RL (x, y) followed by Ant-v5's 27-d state without contact forces.

Physics. D4RL's antmaze ant differs from gym's Ant: 0.02 s timestep (0.1 s per env step with
frame_skip 5) and motors with ctrlrange [-30, 30], gear 1, reached through an action wrapper
that maps [-1, 1] to [-30, 30]. By default (`d4rl_physics=True`) we load gymnasium's ant.xml and
change only those two things (timestep 0.02, gear 30 with ctrlrange [-1, 1] gives the same
torques), so that D4RL antmaze datasets and policies transfer. `d4rl_physics=False` keeps the
stock gymnasium ant (0.01 s, gear 150) that gymnasium-robotics' AntMaze uses.

Episodes follow D4RL's antmaze-*-v2 evaluation envs: every reset samples the goal (the 'G' cell +
U(0, 1) + U(0, 0.5) per coordinate), the ant starts at the origin with U(-0.1, 0.1) noise on all
positions and N(0, 0.1^2) velocities, reward is 1 when ||xy - goal|| <= 0.5 and the episode then
terminates (`terminate_on_success`); the ant's own unhealthy check is ignored, as in D4RL.
"""

from __future__ import annotations

import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

# D4RL's *_TEST maps (d4rl/locomotion/maze_env.py) used by antmaze-{umaze,medium,large}-v2:
# '#' wall, 'R' start cell, 'G' evaluation goal cell, 'O' free.
UMAZE = (
    "#####",
    "#ROO#",
    "###O#",
    "#GOO#",
    "#####",
)
MEDIUM_MAZE = (
    "########",
    "#RO##OO#",
    "#OO#OOO#",
    "##OOO###",
    "#OO#OOO#",
    "#O#OO#O#",
    "#OOO#OG#",
    "########",
)
LARGE_MAZE = (
    "############",
    "#ROOO#OOOOO#",
    "#O##O#O#O#O#",
    "#OOOOOO#OOO#",
    "#O####O###O#",
    "#OO#O#OOOOO#",
    "##O#O#O#O###",
    "#OO#OOO#OGO#",
    "############",
)

# name -> (map rows, max_episode_steps of D4RL's registration)
ANTMAZE_TASKS: dict[str, tuple[tuple[str, ...], int]] = {
    "antmaze-umaze": (UMAZE, 700),
    "antmaze-medium": (MEDIUM_MAZE, 1000),
    "antmaze-large": (LARGE_MAZE, 1000),
}

SCALE = 4.0  # D4RL maze_size_scaling
MAZE_HEIGHT = 0.5
GOAL_RADIUS = 0.5  # D4RL's success test
GOAL_NOISE_MEAN = 0.75  # mean of U(0, 1) + U(0, 0.5), D4RL's goal noise per coordinate
D4RL_TIMESTEP = 0.02
D4RL_GEAR = 30.0
RESET_POS_NOISE = 0.1
RESET_VEL_STD = 0.1


@dataclass(frozen=True, eq=False)
class AntMazeLayout:
    """A D4RL antmaze map: `walls[i, j]` True for walls, plus its start and goal cells."""

    walls: np.ndarray
    start_cell: tuple[int, int]
    goal_cell: tuple[int, int]

    @classmethod
    def from_rows(cls, rows: tuple[str, ...]) -> AntMazeLayout:
        """Parse rows of '#', 'O', 'R' (start) and 'G' (goal)."""
        walls = np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)
        marks = {ch: (i, j) for i, row in enumerate(rows) for j, ch in enumerate(row) if ch in "RG"}
        return cls(walls=walls, start_cell=marks["R"], goal_cell=marks["G"])

    def cell_xy(self, cell) -> np.ndarray:
        """Centre of cell (i, j) in D4RL's antmaze coordinates."""
        i, j = cell
        return SCALE * np.array([j - self.start_cell[1], i - self.start_cell[0]], np.float64)

    def cell_of(self, xy) -> tuple[int, int]:
        """The cell (i, j) containing D4RL point (x, y)."""
        j = int(np.floor(xy[0] / SCALE + 0.5)) + self.start_cell[1]
        i = int(np.floor(xy[1] / SCALE + 0.5)) + self.start_cell[0]
        return i, j


def sample_goal(layout: AntMazeLayout, rng: np.random.Generator) -> np.ndarray:
    """D4RL's evaluation goal: goal cell + U(0, s/4) + U(0, 0.5) * s/4 (s = 4), clipped at 0."""
    quarter = 0.25 * SCALE
    noise = rng.uniform(0.0, quarter, 2) + rng.uniform(0.0, 0.5, 2) * quarter
    return np.maximum(layout.cell_xy(layout.goal_cell) + noise, 0.0)


class AntMazeEnv(gym.Env):
    """D4RL AntMaze evaluation env: 29-d float32 observation, 8-d action in [-1, 1]."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        layout: AntMazeLayout,
        render_mode: str | None = None,
        render_size: int = 64,
        d4rl_physics: bool = True,
        terminate_on_success: bool = True,
    ):
        self.layout = layout
        self.render_mode = render_mode
        self.terminate_on_success = terminate_on_success
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (29,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (8,), np.float32)
        self._sim, self._sim_to_d4rl = _build_ant_maze(
            layout, render_mode, render_size, d4rl_physics
        )
        self._target_site = self._sim.model.site("target").id
        self._goal = np.zeros(2)
        self.set_goal(layout.cell_xy(layout.goal_cell) + GOAL_NOISE_MEAN)

    # --- coordinates -------------------------------------------------------------------------
    def d4rl_from_sim(self, xy) -> np.ndarray:
        """Sim (gymnasium-robotics) x, y -> D4RL x, y."""
        return np.asarray(xy, dtype=np.float64) + self._sim_to_d4rl

    def sim_from_d4rl(self, xy) -> np.ndarray:
        """D4RL x, y -> sim (gymnasium-robotics) x, y."""
        return np.asarray(xy, dtype=np.float64) - self._sim_to_d4rl

    # --- goal ----------------------------------------------------------------------------------
    @property
    def goal(self) -> np.ndarray:
        """Current goal (D4RL coordinates)."""
        return self._goal.copy()

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A goal drawn like D4RL's evaluation goals (see `sample_goal`)."""
        return sample_goal(self.layout, rng)

    def set_goal(self, xy) -> None:
        """Move the goal for the rest of this episode (the next reset samples a new one)."""
        self._goal = np.asarray(xy, dtype=np.float64).reshape(2).copy()
        gx, gy = self.sim_from_d4rl(self._goal)
        self._sim.model.site_pos[self._target_site] = (gx, gy, MAZE_HEIGHT / 2 * SCALE)

    # --- gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Sample a goal (or take options['goal']) and start at the origin with D4RL's noise."""
        super().reset(seed=seed)
        options = options or {}
        goal = options.get("goal")
        self.set_goal(sample_goal(self.layout, self.np_random) if goal is None else goal)
        self._sim.reset()
        model = self._sim.model
        qpos = model.qpos0.copy()
        qpos[:2] = self.sim_from_d4rl(self.layout.cell_xy(self.layout.start_cell))
        qpos += self.np_random.uniform(-RESET_POS_NOISE, RESET_POS_NOISE, model.nq)
        qvel = self.np_random.normal(0.0, RESET_VEL_STD, model.nv)
        self._sim.set_state(qpos, qvel)
        return self._obs(), {"goal": self.goal}

    def step(self, action):
        """One env step (5 physics steps); reward 1 and termination on reaching the goal."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._sim.step(action)  # Ant-v5's own reward and unhealthy termination are ignored
        xy = self.d4rl_from_sim(self._sim.data.qpos[:2])
        success = bool(np.linalg.norm(xy - self._goal) <= GOAL_RADIUS)
        terminated = success and self.terminate_on_success
        return self._obs(), float(success), terminated, False, {"success": success}

    def render(self):
        """RGB uint8 image from a camera following the ant (render_mode='rgb_array')."""
        # gymnasium's renderer forces a free camera, so we move its look-at point ourselves.
        renderer = self._sim.mujoco_renderer
        lookat = np.array([self._sim.data.qpos[0], self._sim.data.qpos[1], 0.0])
        renderer.default_cam_config["lookat"] = lookat  # read when the viewer is created
        if renderer.viewer is not None:
            renderer.viewer.cam.lookat[:] = lookat
        return self._sim.render()

    def close(self):
        self._sim.close()

    @property
    def model(self):
        """The compiled MuJoCo model (walls are geoms named block_<row>_<col> of the sim map)."""
        return self._sim.model

    def _obs(self) -> np.ndarray:
        data = self._sim.data
        xy = self.d4rl_from_sim(data.qpos[:2])
        return np.concatenate([xy, data.qpos[2:], data.qvel]).astype(np.float32)


def _ant_xml(d4rl_physics: bool) -> str:
    """Path of the ant model: gymnasium's ant.xml, optionally patched to D4RL's physics."""
    from gymnasium.envs.mujoco import ant_v5

    stock = os.path.join(os.path.dirname(sys.modules[ant_v5.__name__].__file__), "assets/ant.xml")
    if not d4rl_physics:
        return stock
    tree = ET.parse(stock)
    tree.find("option").set("timestep", str(D4RL_TIMESTEP))
    for motor in tree.iter("motor"):
        motor.set("gear", str(D4RL_GEAR))
    handle, path = tempfile.mkstemp(suffix=".xml")
    os.close(handle)
    tree.write(path)
    return path


def _build_ant_maze(
    layout: AntMazeLayout, render_mode: str | None, render_size: int, d4rl_physics: bool
):
    """Compile the flipped maze around the ant; return the Ant-v5 sim and sim -> D4RL shift."""
    from gymnasium.envs.mujoco.ant_v5 import AntEnv
    from gymnasium_robotics.envs.maze.maze_v4 import Maze

    ant_xml = _ant_xml(d4rl_physics)
    sim_map = layout.walls[::-1].astype(int).tolist()
    try:
        maze, xml_path = Maze.make_maze(ant_xml, sim_map, SCALE, MAZE_HEIGHT)
    finally:
        if d4rl_physics:
            os.remove(ant_xml)
    camera = {"distance": 2.5 * SCALE, "elevation": -60.0, "lookat": np.zeros(3)}
    try:
        sim = AntEnv(
            xml_file=xml_path,
            exclude_current_positions_from_observation=False,
            include_cfrc_ext_in_observation=False,
            reset_noise_scale=0.0,
            render_mode=render_mode,
            width=render_size,
            height=render_size,
            default_camera_config=camera,
        )
    finally:
        os.remove(xml_path)  # make_maze leaves its XML behind; the model is compiled now
    rows = layout.walls.shape[0]
    start_i, start_j = layout.start_cell
    start_sim = maze.cell_rowcol_to_xy(np.array([rows - 1 - start_i, start_j]))
    return sim, layout.cell_xy(layout.start_cell) - start_sim


def make_antmaze(name: str, render: bool = False, render_size: int = 64) -> gym.Env:
    """Build antmaze-umaze / -medium / -large (D4RL -v2 evaluation semantics and time limits)."""
    rows, max_steps = ANTMAZE_TASKS[name]
    env = AntMazeEnv(
        AntMazeLayout.from_rows(rows),
        render_mode="rgb_array" if render else None,
        render_size=render_size,
    )
    env.spec = EnvSpec(id=name, max_episode_steps=max_steps)
    return gym.wrappers.TimeLimit(env, max_episode_steps=max_steps)
