"""Tests for skillcritic.envs.maze.env: the ``skillcritic/Maze-v0`` gymnasium environment."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import skillcritic  # noqa: F401  (registers skillcritic/Maze-v0)
from skillcritic.envs.maze.env import MazeEnv
from skillcritic.envs.maze.layout import TASK_NAMES, load_task
from skillcritic.envs.maze.physics import AGENT_RADIUS, MAX_SPEED, TIMESTEP
from skillcritic.envs.maze.view import GOAL, WALL

TASKS = ("spirl", "spirl_l2", "nav", "traj")
ENV_ID = "skillcritic/Maze-v0"
# Sphere of radius 0.1 and density 1000: mass 4/3 pi 0.1^3 1000; motor gear 100, ctrl 1.
AGENT_MASS = 4.0 / 3.0 * np.pi * 0.1**3 * 1000.0
DV_PER_STEP = TIMESTEP * 100.0 / AGENT_MASS  # ~0.2387 cells/s per step at full force
AGENT_RGB = (30, 80, 230)
# Offsets from the goal (+row) just inside / outside the goal radius 1.
INSIDE, OUTSIDE = np.array([0.9, 0.0]), np.array([1.1, 0.0])


def make(**kwargs) -> gymnasium.Env:
    return gymnasium.make(ENV_ID, **kwargs)


@pytest.fixture
def room_file(tmp_path: Path) -> Path:
    """An open 14x14 room (12x12 free interior)."""
    rows = ["#" * 14] + ["#" + "O" * 12 + "#" for _ in range(12)] + ["#" * 14]
    path = tmp_path / "room.txt"
    path.write_text("\n".join(rows) + "\n")
    return path


def _skip_if_no_gl(exc: Exception) -> None:
    """Skip when ``exc`` says no OpenGL backend is available; re-raise anything else."""
    text = f"{type(exc).__module__} {type(exc).__name__} {exc}".lower()
    if not any(word in text for word in ("opengl", "egl", "osmesa", "glfw", "gl context")):
        raise exc
    pytest.skip(f"no OpenGL backend for MuJoCo rendering: {exc!r}")


# --------------------------------------------------------------------------------------------
# API, spaces, reset
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_check_env_and_reset(task: str) -> None:
    env = make(task=task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the infinite velocity bounds warn; that is intended
        check_env(env.unwrapped)
    spec = load_task(task)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"state", "view"}
    assert obs["state"].dtype == np.float32 and obs["state"].shape == (4,)
    assert obs["view"].dtype == np.uint8 and obs["view"].shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(obs["state"], [*spec.start, 0.0, 0.0])
    np.testing.assert_array_equal(obs["view"][0], obs["view"][1])
    assert info["success"] is False
    assert env.observation_space.contains(obs)
    rng = np.random.default_rng(0)
    previous = obs
    for _ in range(5):
        obs, _, _, _, info = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
        np.testing.assert_array_equal(obs["view"][0], previous["view"][1])
        assert env.observation_space.contains(obs)
        previous = obs
    env.close()


def test_frames_follow_the_motion(room_file: Path) -> None:
    # Near the room's top wall, moving changes the view: frame 0 must lag frame 1 by one step.
    env = make(layout=room_file, start=(2, 6), goal=(11, 11))
    obs, _ = env.reset(seed=0)
    frames = [obs["view"][1]]
    for _ in range(30):
        obs, *_ = env.step(np.array([-1.0, 0.0], np.float32))
        np.testing.assert_array_equal(obs["view"][0], frames[-1])
        frames.append(obs["view"][1])
    assert not np.array_equal(frames[0], frames[-1])  # the view did change
    # Moving up (-row) brings the top wall into view: more wall pixels.
    assert frames[-1][WALL].astype(int).sum() > frames[0][WALL].astype(int).sum()
    env.close()


def test_time_limit_truncates_at_2000() -> None:
    env = make(task="nav")
    assert env.spec.max_episode_steps == 2000
    env.reset(seed=0)
    zero = np.zeros(2, np.float32)
    for t in range(2000):
        _, reward, terminated, truncated, _ = env.step(zero)
        assert not terminated
        assert truncated == (t == 1999), t
        assert reward == 0.0
    env.close()


# --------------------------------------------------------------------------------------------
# Reward and success
# --------------------------------------------------------------------------------------------


def _place(env: gymnasium.Env, position) -> None:
    env.unwrapped.physics.reset(np.asarray(position, dtype=np.float64))


def test_reward_radius_and_episode_success() -> None:
    env = make(task="spirl")
    task = load_task("spirl")
    goal = np.asarray(task.goal, dtype=np.float64)
    # Cells (19, 8) and its neighbours are free, so no contact moves the agent when placed there.
    assert not task.walls[19, 7:10].any() and not task.walls[18, 8]
    zero = np.zeros(2, np.float32)

    env.reset(seed=0)
    _place(env, goal + OUTSIDE)
    _, reward, terminated, _, info = env.step(zero)
    assert reward == 0.0 and info["success"] is False and info["at_goal"] is False
    assert not terminated

    _place(env, goal + INSIDE)
    _, reward, terminated, _, info = env.step(zero)
    assert reward == 1.0 and info["success"] is True and info["at_goal"] is True
    assert not terminated  # terminate_on_success is off by default

    _place(env, goal + OUTSIDE)
    _, reward, _, _, info = env.step(zero)
    assert reward == 0.0 and info["at_goal"] is False
    assert info["success"] is True  # reached earlier in this episode

    _, info = env.reset(seed=1)
    assert info["success"] is False
    _, _, _, _, info = env.step(zero)
    assert info["success"] is False  # a new episode forgets the previous one
    env.close()


def test_terminate_on_success() -> None:
    env = make(task="spirl", terminate_on_success=True)
    goal = np.asarray(load_task("spirl").goal, dtype=np.float64)
    env.reset(seed=0)
    zero = np.zeros(2, np.float32)
    _place(env, goal + OUTSIDE)
    assert env.step(zero)[2] is False
    _place(env, goal + INSIDE)
    _, reward, terminated, truncated, _ = env.step(zero)
    assert reward == 1.0 and terminated is True and truncated is False
    env.close()


# --------------------------------------------------------------------------------------------
# Physics
# --------------------------------------------------------------------------------------------


def test_constant_action_accelerates_along_row_only(room_file: Path) -> None:
    env = make(layout=room_file, start=(2, 6), goal=(12, 12))
    obs, _ = env.reset(seed=0)
    states = [obs["state"]]
    for _ in range(15):  # ~0.2 cells travelled: stays in open space
        obs, *_ = env.step(np.array([1.0, 0.0], np.float32))
        states.append(obs["state"])
    states = np.array(states, dtype=np.float64)
    assert (states[:, 1] == 6.0).all() and (states[:, 3] == 0.0).all()  # column untouched
    assert (np.diff(states[:, 2]) > 0).all() and (np.diff(states[:, 0]) > 0).all()
    # Full force gives ~gear / mass * dt per step (damping 1 slows it slightly).
    np.testing.assert_allclose(states[1, 2], DV_PER_STEP, rtol=0.01)
    np.testing.assert_allclose(states[-1, 2], 15 * DV_PER_STEP, rtol=0.02)
    env.close()


def test_speed_is_clipped(room_file: Path) -> None:
    env = make(layout=room_file, start=(1, 1), goal=(12, 12))
    env.reset(seed=0)
    speeds = []
    for _ in range(60):  # ~2 cells along the diagonal of the 12x12 room
        obs, *_ = env.step(np.array([1.0, 1.0], np.float32))
        speeds.append(np.abs(obs["state"][2:]).max())
    speeds = np.array(speeds)
    assert speeds.max() > MAX_SPEED  # the cap is reached: the bound below is not vacuous
    # Clipped to 5 before each step, so at most one step's acceleration above it.
    assert speeds.max() <= MAX_SPEED + DV_PER_STEP + 1e-6, speeds.max()
    assert speeds[-1] < MAX_SPEED + DV_PER_STEP  # without the clip it would keep growing
    env.close()


def _wall_distance(walls: np.ndarray, position: np.ndarray) -> float:
    """Distance from ``position`` to the nearest wall cell (squares of side 1), 0 if inside."""
    cells = np.argwhere(walls).astype(np.float64)
    gap = np.maximum(np.abs(position - cells) - 0.5, 0.0)
    return float(np.sqrt((gap**2).sum(axis=1)).min())


@pytest.mark.parametrize("task", ["nav", "traj"])
def test_agent_never_enters_walls(task: str) -> None:
    env = make(task=task)
    walls = load_task(task).walls
    rows, cols = walls.shape
    rng = np.random.default_rng(7)
    env.reset(seed=0)
    # Actions held for 25 steps so the agent builds up speed and hits walls hard.
    actions = np.repeat(rng.uniform(-1, 1, (20, 2)), 25, axis=0).astype(np.float32)
    closest = np.inf
    for action in actions:
        obs, *_ = env.step(action)
        position = obs["state"][:2].astype(np.float64)
        r, c = np.rint(position).astype(int)
        assert 0 <= r < rows and 0 <= c < cols
        assert not walls[r, c], position
        assert (position >= 0).all() and position[0] <= rows - 1 and position[1] <= cols - 1
        closest = min(closest, _wall_distance(walls, position))
    # The sphere (radius 0.1) hits walls (soft contacts let it sink ~0.05 at full speed) but its
    # centre stays well clear of them.
    assert closest < AGENT_RADIUS + 0.02  # it did reach a wall: the check is not vacuous
    assert closest > 0.02, closest
    env.close()


@pytest.mark.parametrize(
    "action", [[np.nan, 0.0], [0.0, np.inf], [0.0, 0.0, 0.0], [1.0], [[0.0, 0.0]]]
)
def test_invalid_actions_raise(action) -> None:
    env = make(task="nav").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(np.array(action, dtype=np.float64))


def test_same_seed_same_trajectory() -> None:
    actions = np.random.default_rng(3).uniform(-1, 1, (200, 2)).astype(np.float32)

    def rollout(seed: int) -> np.ndarray:
        env = make(task="traj", start_noise=0.3)
        obs, _ = env.reset(seed=seed)
        out = [obs["state"]]
        views = [obs["view"]]
        for action in actions:
            obs, *_ = env.step(action)
            out.append(obs["state"])
            views.append(obs["view"])
        env.close()
        return np.array(out), np.array(views)

    a_states, a_views = rollout(11)
    b_states, b_views = rollout(11)
    np.testing.assert_array_equal(a_states, b_states)
    np.testing.assert_array_equal(a_views, b_views)
    c_states, _ = rollout(12)
    assert not np.array_equal(a_states[0], c_states[0])  # start noise depends on the seed
    assert np.abs(a_states[0, :2] - np.array(load_task("traj").start)).max() <= 0.3


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["nav", "spirl"])
def test_render_rgb_array(task: str) -> None:
    env = make(task=task, render_mode="rgb_array")
    spec = load_task(task)
    rows, cols = spec.walls.shape
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (rows * 8, cols * 8, 3)
    agent = np.all(frame == AGENT_RGB, axis=-1)
    r, c = spec.start
    # The agent disc (radius 0.3) at the cell centre: pixel centres at odd multiples of 1/16
    # from it within 0.3 -> the 4x4 pixels in the middle of the start cell's 8x8 block.
    expected = np.zeros_like(agent)
    expected[r * 8 + 2 : r * 8 + 6, c * 8 + 2 : c * 8 + 6] = True
    np.testing.assert_array_equal(agent, expected)
    # A wall cell renders dark, a free cell light.
    assert (frame[0:8, 0:8] == (60, 60, 70)).all()
    env.close()


def test_render_moves_with_agent(room_file: Path) -> None:
    env = make(layout=room_file, start=(2, 2), goal=(12, 12), render_mode="rgb_array")
    env.reset(seed=0)
    _place(env, [7.0, 9.0])
    agent = np.argwhere(np.all(env.render() == AGENT_RGB, axis=-1))
    assert len(agent) == 16
    assert (agent // 8 == [7, 9]).all()
    env.close()


def test_render_none_without_mode() -> None:
    env = make(task="nav")
    env.reset(seed=0)
    assert env.render() is None
    env.close()


# --------------------------------------------------------------------------------------------
# Construction options
# --------------------------------------------------------------------------------------------


def test_custom_layout(tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_text("#####\n#OOO#\n#O#O#\n#OOO#\n#####\n")
    env = make(layout=path, start=(1, 1), goal=(3, 3))
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs["state"], [1.0, 1.0, 0.0, 0.0])
    assert env.unwrapped.task.walls.shape == (5, 5)
    assert env.unwrapped.observation_space["state"].high[:2].tolist() == [4.0, 4.0]
    env.step(np.zeros(2, np.float32))
    env.close()
    with pytest.raises(ValueError):
        make(layout=path, start=(2, 2), goal=(3, 3))  # (2, 2) is a wall
    with pytest.raises(ValueError):
        make(layout=path, start=(1, 1), goal=(0, 3))  # goal on the border
    with pytest.raises(ValueError):
        make(layout=path, start=(1, 9), goal=(3, 3))  # outside the grid


def test_unknown_task_lists_valid_names() -> None:
    with pytest.raises(Exception) as excinfo:
        make(task="no_such_maze")
    message = str(excinfo.value)
    assert "no_such_maze" in message
    for name in TASK_NAMES:
        assert name in message
    assert set(TASKS) <= set(TASK_NAMES)


def test_invalid_view_and_render_mode() -> None:
    with pytest.raises(ValueError):
        make(task="nav", view="pixels")
    with pytest.raises(ValueError):  # gymnasium.make would wrap "human"; call the class
        MazeEnv(task="nav", render_mode="ansi")


def test_camera_view_matches_raster_at_reset() -> None:
    raster_env = make(task="spirl", view="raster")
    try:
        camera_env = make(task="spirl", view="camera")
    except Exception as exc:
        _skip_if_no_gl(exc)
    try:
        cam, _ = camera_env.reset(seed=0)
        ras, _ = raster_env.reset(seed=0)
        assert cam["view"].shape == ras["view"].shape and cam["view"].dtype == np.uint8
        a, b = cam["view"][1, WALL] > 127, ras["view"][1, WALL] > 127
        iou = np.logical_and(a, b).sum() / np.logical_or(a, b).sum()
        assert iou >= 0.9, iou
        assert not cam["view"][1, GOAL].any() and not ras["view"][1, GOAL].any()
    finally:
        camera_env.close()
        raster_env.close()
