"""Maze demonstrations: a grid planner and a PD waypoint controller in random T-wall mazes.

Each demonstration samples a fresh random layout, a random free start and goal cell, plans the
shortest 4-connected cell path, and drives the MuJoCo point mass along it with
``a = clip(gain * (w - p) - damping * v, -1, 1)``, advancing to the next waypoint within
``reach_tol``. Demonstrations are reproducible from ``(seed, index)`` alone, so the result does
not depend on how episodes are spread over worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter

import mujoco
import numpy as np

from skillcritic.data.collect import Demo, DemoOutcome
from skillcritic.envs.maze.layout import free_cells, random_t_maze
from skillcritic.envs.maze.physics import MAX_SPEED, MazePhysics
from skillcritic.envs.maze.planner import shortest_path


@dataclass(frozen=True)
class DemoConfig:
    """How maze demonstrations are generated.

    Args:
        layout_size: interior cells per side of the random layouts (the border is added).
        coverage: fraction of interior cells covered by T walls.
        max_steps: physics steps before a demonstration counts as failed (or is cut there, with
            ``keep_unfinished``).
        keep_unfinished: keep a demonstration that has not reached its goal after ``max_steps``
            (when longer than ``min_steps``), as the reference does with its 500-step cap.
        min_steps: demonstrations of at most this many steps are dropped (too short to be skills).
        start_noise: half-width of the uniform noise on the start position, in cells.
        velocity_noise: standard deviation of the initial velocity, in cells/s.
        waypoint_jitter: half-width of the uniform noise on intermediate waypoints, in cells.
        waypoint_offset: constant shift of that noise, in cells (the reference's ``-U(0, 0.2)``
            per axis is ``waypoint_jitter=0.1, waypoint_offset=-0.1``).
        gain, damping: the PD controller's position gain and velocity damping.
        reach_tol: distance at which a waypoint counts as reached, in cells.
        max_tries: attempts per demonstration before giving up (each with a new layout).
        goal_radius: radius of the sparse reward stored with the demonstration.
    """

    layout_size: int = 20
    coverage: float = 0.25
    max_steps: int = 2000
    keep_unfinished: bool = False
    min_steps: int = 50
    start_noise: float = 0.1
    velocity_noise: float = 0.1
    waypoint_jitter: float = 0.1
    waypoint_offset: float = 0.0
    gain: float = 10.0
    damping: float = 1.0
    reach_tol: float = 0.1
    max_tries: int = 50
    goal_radius: float = 1.0

    def __post_init__(self) -> None:
        if self.layout_size < 5:
            raise ValueError(f"layout_size must be >= 5, got {self.layout_size}")
        if not 0 < self.min_steps < self.max_steps:
            raise ValueError(
                f"need 0 < min_steps < max_steps, got min_steps={self.min_steps}, "
                f"max_steps={self.max_steps}"
            )


def pd_action(
    waypoint: float, position: float, velocity: float, gain: float, damping: float
) -> float:
    """The PD waypoint controller on one axis: ``clip(gain * (w - p) - damping * v, -1, 1)``.

    Plain floats: the control loop calls it twice per physics step, where numpy's per-call
    overhead would cost more than the physics.
    """
    return min(max(gain * (waypoint - position) - damping * velocity, -1.0), 1.0)


def drive(
    physics: MazePhysics, waypoints: np.ndarray, config: DemoConfig
) -> tuple[np.ndarray, np.ndarray, bool, float]:
    """Drive the point mass through ``waypoints`` with the PD controller (``pd_action``).

    Returns states (T+1, 4), actions (T, 2), whether the last waypoint was reached within
    ``max_steps``, and the seconds spent inside ``mj_step``. The loop works on Python floats:
    small-array numpy calls would cost several times the physics step itself.
    """
    model, data = physics.model, physics.data
    qpos, qvel, ctrl = data.qpos, data.qvel, data.ctrl
    gain, damping, tol2 = config.gain, config.damping, config.reach_tol**2
    targets = waypoints.tolist()
    last = len(targets) - 1
    target = 0
    goal_row, goal_col = targets[0]
    states: list[list[float]] = []
    actions: list[tuple[float, float]] = []
    physics_seconds = 0.0
    reached = False
    for _ in range(config.max_steps):
        row, col = qpos.tolist()
        v_row, v_col = qvel.tolist()
        states.append([row, col, v_row, v_col])
        if (goal_row - row) ** 2 + (goal_col - col) ** 2 <= tol2:
            if target == last:
                reached = True
                break
            target += 1
            goal_row, goal_col = targets[target]
        a_row = pd_action(goal_row, row, v_row, gain, damping)
        a_col = pd_action(goal_col, col, v_col, gain, damping)
        actions.append((a_row, a_col))
        ctrl[0], ctrl[1] = a_row, a_col
        if abs(v_row) > MAX_SPEED or abs(v_col) > MAX_SPEED:
            np.clip(qvel, -MAX_SPEED, MAX_SPEED, out=qvel)
        tic = perf_counter()
        mujoco.mj_step(model, data)
        physics_seconds += perf_counter() - tic
    else:
        states.append(qpos.tolist() + qvel.tolist())
    return np.array(states), np.array(actions).reshape(-1, 2), reached, physics_seconds


def generate_demo(seed: int, index: int, config: DemoConfig) -> DemoOutcome:
    """Demonstration ``index`` of the collection seeded with ``seed``.

    Tries fresh layouts (each try its own random stream) until the controller reaches the goal
    (or, with ``keep_unfinished``, runs out of steps) in more than ``min_steps`` steps, up to
    ``max_tries``.
    """
    attempts = successes = 0
    physics_seconds = 0.0
    for attempt in range(config.max_tries):
        rng = np.random.default_rng([seed, index, attempt])
        walls = random_t_maze(config.layout_size, rng, coverage=config.coverage)
        cells = free_cells(walls)
        start, goal = cells[rng.choice(len(cells), size=2, replace=False)]
        path = shortest_path(walls, tuple(start), tuple(goal))
        if path is None:  # random_t_maze keeps the free space connected; guard anyway
            continue
        waypoints = path[1:].astype(np.float64)
        # Jitter the intermediate waypoints (not the goal) so demonstrations are not all on-grid.
        waypoints[:-1] += config.waypoint_offset + rng.uniform(
            -config.waypoint_jitter, config.waypoint_jitter, waypoints[:-1].shape
        )
        physics = MazePhysics(walls)
        physics.reset(
            start + rng.uniform(-config.start_noise, config.start_noise, 2),
            rng.normal(0.0, config.velocity_noise, 2),
        )
        states, actions, reached, seconds = drive(physics, waypoints, config)
        attempts += 1
        successes += reached
        physics_seconds += seconds
        if (reached or config.keep_unfinished) and len(actions) > config.min_steps:
            distance = np.linalg.norm(states[1:, :2] - goal, axis=1)
            demo = Demo(
                states=states.astype(np.float32),
                actions=actions.astype(np.float32),
                rewards=(distance <= config.goal_radius).astype(np.float32),
                success=reached,
                options={"walls": walls.astype(np.uint8), "start": start, "goal": goal},
            )
            return DemoOutcome(demo, attempts, successes, physics_seconds)
    return DemoOutcome(None, attempts, successes, physics_seconds)


@dataclass(frozen=True)
class MazeDemoGenerator:
    """Picklable ``index -> DemoOutcome`` for worker processes (demonstration ``index``)."""

    seed: int
    config: DemoConfig

    def __call__(self, index: int) -> DemoOutcome:
        return generate_demo(self.seed, index, self.config)
