"""``skillcritic/Maze-v0``: the point-mass maze target tasks as a gymnasium env."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from skillcritic.envs.maze.layout import MazeTask, load_layout, load_task
from skillcritic.envs.maze.physics import MazePhysics
from skillcritic.envs.maze.view import (
    N_CHANNELS,
    TRACKING_GAIN,
    CameraViews,
    ViewRaster,
    tracking_step,
)

VIEW_RENDERERS = ("raster", "camera")


class MazeEnv(gymnasium.Env):
    """A point mass that must reach a goal cell of a maze; sparse reward.

    Observation: a Dict with ``state`` = ``[row, col, v_row, v_col]`` (float32, cell units; the
    centre of cell (r, c) is (r, c)) and ``view`` = the previous and current agent-centric views,
    uint8 ``(2, 3, view_size, view_size)`` indexed ``[frame, channel (wall, goal, agent), row,
    col]``, centred where a tracking camera that trails the agent looks (``envs.maze.view``).
    Reward 1 on every step that ends within ``goal_radius`` of the goal, else 0. The episode never
    terminates unless ``terminate_on_success``; the 2000-step limit truncates it (registration).
    ``info["success"]``: the goal was reached at some step of this episode.

    Args:
        task: one of ``layout.TASK_NAMES`` (``spirl``, ``spirl_l2``, ``nav``, ``traj``).
        layout: optional path of a layout file replacing the task's layout.
        start, goal: optional (row, col) cells replacing the task's start and goal.
        view: ``"raster"`` (exact, from the layout) or ``"camera"`` (MuJoCo tracking camera).
        view_size, view_cells: pixels per side and cells per side of each view.
        start_noise: half-width of the uniform noise added to the start position, in cells.
        terminate_on_success: end the episode (``terminated``) at the first rewarded step.
        render_mode: ``"rgb_array"`` for ``render()`` frames of the whole maze.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        task: str = "spirl",
        layout: str | Path | None = None,
        start: tuple[int, int] | None = None,
        goal: tuple[int, int] | None = None,
        view: str = "raster",
        view_size: int = 32,
        view_cells: float = 4.0,
        start_noise: float = 0.0,
        terminate_on_success: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if view not in VIEW_RENDERERS:
            raise ValueError(f"unknown view renderer {view!r}; use one of {VIEW_RENDERERS}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"unsupported render_mode {render_mode!r}; use 'rgb_array' or None")
        self.task = _override_task(load_task(task), layout, start, goal)
        self.view_size, self.view_cells = view_size, view_cells
        self.start_noise = start_noise
        self.terminate_on_success = terminate_on_success
        self.render_mode = render_mode
        self.goal_position = np.asarray(self.task.goal, dtype=np.float64)
        self.physics = MazePhysics(self.task.walls, self.task.goal, view_cells)
        self._camera = (
            CameraViews(self.physics, view_size, view_cells) if view == "camera" else None
        )
        self._raster = ViewRaster(self.task.walls, self.task.goal, view_size, view_cells)

        rows, cols = self.task.walls.shape
        self.observation_space = spaces.Dict(
            state=spaces.Box(
                low=np.array([0, 0, -np.inf, -np.inf], dtype=np.float32),
                high=np.array([rows - 1, cols - 1, np.inf, np.inf], dtype=np.float32),
                dtype=np.float32,
            ),
            view=spaces.Box(0, 255, (2, N_CHANNELS, view_size, view_size), dtype=np.uint8),
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self._previous_view: np.ndarray | None = None
        self._centre: np.ndarray | None = None  # where the views are centred (trails the agent)
        self._reached = False

    def _current_view(self) -> np.ndarray:
        position = self.physics.data.qpos[:2]
        if self._centre is None:  # at reset the camera has caught up with the agent
            self._centre = position.copy()
        else:
            self._centre = tracking_step(self._centre, position, TRACKING_GAIN)
        if self._camera is not None:
            return self._camera(self._centre)
        return self._raster(self._centre, position)[0]

    def _observation(self, view: np.ndarray) -> dict[str, np.ndarray]:
        stacked = np.stack([self._previous_view, view])
        self._previous_view = view
        return {"state": self.physics.state, "view": stacked}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Place the agent at the start cell (plus ``start_noise``) at rest."""
        super().reset(seed=seed)
        start = np.asarray(self.task.start, dtype=np.float64)
        if self.start_noise > 0:
            start = start + self.np_random.uniform(-self.start_noise, self.start_noise, 2)
        self.physics.reset(start)
        self._reached = False
        self._centre = None
        view = self._current_view()
        self._previous_view = view  # both frames equal the current one at reset
        return self._observation(view), {"success": False}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply the force ``action`` in [-1, 1]^2 for one 0.01 s physics step."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ValueError(f"maze action must be 2 finite numbers, got {action!r}")
        self.physics.step(action)
        at_goal = bool(
            np.linalg.norm(self.physics.data.qpos - self.goal_position) <= self.task.goal_radius
        )
        self._reached |= at_goal
        terminated = at_goal and self.terminate_on_success
        info = {"success": self._reached, "at_goal": at_goal}
        return self._observation(self._current_view()), float(at_goal), terminated, False, info

    def render(self) -> np.ndarray | None:
        """An RGB frame of the whole maze with the goal region and the agent (``rgb_array``)."""
        if self.render_mode != "rgb_array":
            return None
        return render_maze(
            self.task.walls, self.physics.data.qpos, self.task.goal, self.task.goal_radius
        )

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None


def _override_task(
    task: MazeTask,
    layout: str | Path | None,
    start: tuple[int, int] | None,
    goal: tuple[int, int] | None,
) -> MazeTask:
    """The task with a user layout / start / goal, checked like the packaged tasks."""
    if layout is None and start is None and goal is None:
        return task
    walls = load_layout(layout) if layout is not None else task.walls
    start = tuple(start) if start is not None else task.start
    goal = tuple(goal) if goal is not None else task.goal
    for name, cell in (("start", start), ("goal", goal)):
        if len(cell) != 2 or not all(isinstance(v, int | np.integer) for v in cell):
            raise ValueError(f"maze {name} must be a (row, col) pair of integers, got {cell}")
        r, c = cell
        if not (0 <= r < walls.shape[0] and 0 <= c < walls.shape[1]) or walls[r, c]:
            raise ValueError(f"maze {name} cell {cell} is not a free cell of the layout")
    return MazeTask(
        name=f"{task.name}-custom",
        walls=walls,
        start=start,
        goal=goal,
        goal_radius=task.goal_radius,
        episode_steps=task.episode_steps,
    )


def render_maze(
    walls: np.ndarray,
    position: np.ndarray,
    goal: tuple[float, float] | None,
    goal_radius: float,
    pixels_per_cell: int = 8,
) -> np.ndarray:
    """A top-down RGB picture of the maze: walls dark, floor light, goal green, agent blue."""
    rows, cols = walls.shape
    # Pixel-centre coordinates in cell units (cell (r, c) spans [r - 0.5, r + 0.5)).
    ys = (np.arange(rows * pixels_per_cell) + 0.5) / pixels_per_cell - 0.5
    xs = (np.arange(cols * pixels_per_cell) + 0.5) / pixels_per_cell - 0.5
    frame = np.where(
        np.repeat(np.repeat(walls, pixels_per_cell, 0), pixels_per_cell, 1)[..., None],
        np.array([60, 60, 70], np.uint8),
        np.array([235, 235, 225], np.uint8),
    )
    if goal is not None:
        in_goal = (ys[:, None] - goal[0]) ** 2 + (xs[None] - goal[1]) ** 2 <= goal_radius**2
        frame[in_goal] = (frame[in_goal] * 0.4 + np.array([40, 200, 70]) * 0.6).astype(np.uint8)
    agent = (ys[:, None] - position[0]) ** 2 + (xs[None] - position[1]) ** 2 <= 0.3**2
    frame[agent] = (30, 80, 230)
    return frame
