"""Tests for skillcritic.envs.maze.view: the exact raster views and the MuJoCo camera views.

Conventions: a view of ``view_cells = 4`` cells at ``size = 32`` pixels has 1/8-cell pixels;
pixel ``i`` of the view centred on coordinate ``p`` spans ``[p - 2 + i / 8, p - 2 + (i + 1) / 8]``.
A wall cell ``(r, c)`` spans ``[r - 0.5, r + 0.5] x [c - 0.5, c + 0.5]``.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import skillcritic  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)
from skillcritic.envs.maze.layout import free_cells, load_task, parse_layout
from skillcritic.envs.maze.physics import MazePhysics
from skillcritic.envs.maze.view import (
    AGENT,
    GOAL,
    N_CHANNELS,
    WALL,
    CameraViews,
    ViewRaster,
    raster_views,
    tracking_centres,
)

# 7x7 room: border walls and one wall cell at (3, 3).
ROOM = parse_layout(
    "\n".join(
        [
            "#######",
            "#OOOOO#",
            "#OOOOO#",
            "#OO#OO#",
            "#OOOOO#",
            "#OOOOO#",
            "#######",
        ]
    )
)


def wall_view(position: tuple[float, float], goal=None) -> np.ndarray:
    return ViewRaster(ROOM, goal)(np.array([position]))[0]


# --------------------------------------------------------------------------------------------
# Raster: exact pixels
# --------------------------------------------------------------------------------------------


def test_raster_shape_and_dtype() -> None:
    views = ViewRaster(ROOM)(np.array([[3.0, 1.0], [2.0, 2.0], [4.5, 4.5]]))
    assert views.shape == (3, N_CHANNELS, 32, 32)
    assert views.dtype == np.uint8
    assert N_CHANNELS == 3 and (WALL, GOAL, AGENT) == (0, 1, 2)


def test_raster_pixel_aligned_walls() -> None:
    # Agent at (3, 1): view rows [1, 5], cols [-1, 3]. Columns -1..0.5 (outside the grid and
    # the border column 0) are wall: pixel columns 0..11. The wall cell (3, 3) covers rows
    # [2.5, 3.5] -> pixel rows 12..19, and cols [2.5, 3] -> pixel columns 28..31.
    view = wall_view((3.0, 1.0))
    expected = np.zeros((32, 32), dtype=np.uint8)
    expected[:, :12] = 255
    expected[12:20, 28:] = 255
    np.testing.assert_array_equal(view[WALL], expected)
    assert not view[GOAL].any()


def test_raster_half_covered_pixels() -> None:
    # Agent at (3 + 1/16, 1 + 1/16): view rows [1.0625, 5.0625], cols [-0.9375, 3.0625].
    # Wall edges at 0.5 (border col), 2.5 and 3.5 fall in the middle of pixels 11, 27 (cols)
    # and 11, 19 (rows): those pixels are half covered (127.5 -> 128), corners a quarter (64).
    view = wall_view((3.0 + 1 / 16, 1.0 + 1 / 16))[WALL].astype(int)
    expected = np.zeros((32, 32), dtype=int)
    expected[:, :11] = 255
    expected[:, 11] = 128  # border column edge at col 0.5
    expected[12:19, 28:] = 255  # wall cell (3, 3), fully covered pixels
    expected[12:19, 27] = 128  # its left edge at col 2.5
    expected[[11, 19], 28:] = 128  # its top / bottom edges at rows 2.5 / 3.5
    expected[[11, 19], 27] = 64  # corners: a quarter of the pixel
    assert np.abs(view - expected).max() <= 1, np.argwhere(np.abs(view - expected) > 1)


def test_raster_outside_grid_reads_wall() -> None:
    views = ViewRaster(ROOM)(np.array([[-20.0, 3.0], [3.0, 50.0], [100.0, -100.0]]))
    assert (views[:, WALL] == 255).all()
    # Half outside: agent at (1, 3) sees rows [-1, 3]; rows below -0.5 lie outside the grid and
    # rows [-0.5, 0.5] are the border row: pixel rows 0..11 are wall.
    view = wall_view((1.0, 3.0))
    assert (view[WALL, :12] == 255).all()
    # Row 1..3 ([0.5, 2.5] -> pixel rows 12..27) free in columns 1..5 (no wall cell in view).
    assert (view[WALL, 12:28] == 0).all()


def test_raster_goal_marker_at_view_centre() -> None:
    # Pixel centres are at offsets (2k + 1) / 16 from the centre; within the marker radius 0.3
    # (0.09 * 256 = 23.04 in 1/16 units squared): odd u, v with u^2 + v^2 <= 23 -> |u|, |v| in
    # {1, 3}, i.e. the 4x4 pixels 14..17 in each axis (16 pixels).
    view = wall_view((2.0, 2.0), goal=(2.0, 2.0))
    expected = np.zeros((32, 32), dtype=np.uint8)
    expected[14:18, 14:18] = 255
    np.testing.assert_array_equal(view[GOAL], expected)
    # The goal channel is independent of the walls.
    np.testing.assert_array_equal(view[WALL], wall_view((2.0, 2.0))[WALL])


def test_raster_goal_marker_offset() -> None:
    # Goal half a cell below the view centre (+4 pixels along rows): the same 16 pixels shifted.
    view = wall_view((2.0, 2.0), goal=(2.5, 2.0))
    expected = np.zeros((32, 32), dtype=np.uint8)
    expected[18:22, 14:18] = 255
    np.testing.assert_array_equal(view[GOAL], expected)


def test_raster_goal_far_away_is_empty_in_batch() -> None:
    raster = ViewRaster(ROOM, goal=(1.0, 1.0))
    views = raster(np.array([[1.0, 1.0], [5.0, 5.0]]))
    assert (views[0, GOAL] == 255).sum() == 16
    assert not views[1, GOAL].any()  # goal 4 cells away on each axis: outside the view


def test_raster_batch_equals_single_calls() -> None:
    rng = np.random.default_rng(0)
    positions = rng.uniform(-2.0, 8.0, (40, 2))
    positions[:5] = [[3.0, 1.0], [3.0625, 1.0625], [1.0, 1.0], [-20.0, 3.0], [2.0, 2.0]]
    raster = ViewRaster(ROOM, goal=(2.0, 2.5))
    batch = raster(positions)
    singles = np.stack([raster(p[None])[0] for p in positions])
    np.testing.assert_array_equal(batch, singles)
    np.testing.assert_array_equal(batch, raster_views(ROOM, positions, goal=(2.0, 2.5)))
    assert batch[:, GOAL].any() and batch[:, WALL].any()


def test_raster_views_function_matches_class_other_size() -> None:
    positions = np.array([[2.3, 3.7], [4.1, 1.2]])
    np.testing.assert_array_equal(
        raster_views(ROOM, positions, goal=(4.0, 2.0), size=16, view_cells=3.0),
        ViewRaster(ROOM, (4.0, 2.0), 16, 3.0)(positions),
    )
    # 3-cell view at 16 px (pixel = 3/16 cell): agent at (3, 2) sees rows [1.5, 4.5] and cols
    # [0.5, 3.5]. The wall cell (3, 3) covers rows [2.5, 3.5] = pixel rows 5.33..10.67 and cols
    # [2.5, 3.5] = pixel columns 10.67..16: pixel rows 5 and 10 are 2/3 covered (170), pixel
    # column 10 is 1/3 covered (85), their crossings 2/9 (56.7 -> 57).
    view = raster_views(ROOM, np.array([[3.0, 2.0]]), size=16, view_cells=3.0)[0, WALL]
    expected = np.zeros((16, 16), dtype=int)
    expected[6:10, 11:] = 255
    expected[[5, 10], 11:] = 170
    expected[6:10, 10] = 85
    expected[[5, 10], 10] = 57
    assert np.abs(view.astype(int) - expected).max() <= 1


# --------------------------------------------------------------------------------------------
# Camera vs raster
# --------------------------------------------------------------------------------------------


def _camera_or_skip(physics: MazePhysics) -> CameraViews:
    try:
        return CameraViews(physics, 32)
    except Exception as exc:
        text = f"{type(exc).__module__} {type(exc).__name__} {exc}".lower()
        if not any(word in text for word in ("opengl", "egl", "osmesa", "glfw", "gl context")):
            raise
        pytest.skip(f"no OpenGL backend for MuJoCo rendering: {exc!r}")


def _pooled_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_camera_agrees_with_raster() -> None:
    task = load_task("spirl")
    physics = MazePhysics(task.walls, task.goal)
    camera = _camera_or_skip(physics)
    try:
        rng = np.random.default_rng(123)
        cells = free_cells(task.walls)
        positions = cells[rng.choice(len(cells), 100)] + rng.uniform(-0.4, 0.4, (100, 2))
        near_goal = np.asarray(task.goal) + rng.uniform(-0.6, 0.6, (10, 2))
        positions = np.concatenate([positions, near_goal])
        cam = []
        for p in positions:
            physics.reset(p)
            cam.append(camera())
        cam = np.stack(cam)
        ras = ViewRaster(task.walls, task.goal)(positions)
        assert cam.shape == ras.shape and cam.dtype == np.uint8
        wall_iou = _pooled_iou(cam[:, WALL] > 127, ras[:, WALL] > 127)
        goal_iou = _pooled_iou(cam[:, GOAL] > 127, ras[:, GOAL] > 127)
        assert (ras[-10:, GOAL] > 127).any()  # the goal check is not vacuous
        assert wall_iou >= 0.9, wall_iou
        assert goal_iou >= 0.8, goal_iou
        # views centred behind the agent (the tracking centre): the camera moves there too
        centres = positions + rng.uniform(-0.5, 0.5, positions.shape)
        cam = []
        for p, c in zip(positions, centres, strict=True):
            physics.reset(p)
            cam.append(camera(c))
        cam = np.stack(cam)
        ras = ViewRaster(task.walls, task.goal)(centres, positions)
        assert _pooled_iou(cam[:, WALL] > 127, ras[:, WALL] > 127) >= 0.9
        np.testing.assert_array_equal(cam[:, AGENT], ras[:, AGENT])
    finally:
        camera.close()


# --------------------------------------------------------------------------------------------
# The tracking centre and the agent marker
# --------------------------------------------------------------------------------------------


def test_tracking_centres_by_hand() -> None:
    # two episodes (3 and 2 states); c_0 = p_0, c_t = c_{t-1} + 0.2 (p_t - c_{t-1})
    positions = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [5.0, 5.0], [5.0, 4.0]])
    centres = tracking_centres(positions, np.array([0, 3]), np.array([3, 2]), 0.2)
    expected = [[0, 0], [0.2, 0], [0.36, 0], [5, 5], [5, 4.8]]
    np.testing.assert_allclose(centres, expected)


def test_agent_marker_sits_at_the_agent() -> None:
    raster = ViewRaster(np.zeros((9, 9), bool), size=32, view_cells=4.0)  # 8 px a cell
    centred, ahead = raster(np.array([[4.0, 4.0], [4.0, 4.0]]), np.array([[4.0, 4.0], [4.0, 5.0]]))
    rows, cols = np.nonzero(centred[AGENT])
    assert rows.mean() == pytest.approx(15.5) and cols.mean() == pytest.approx(15.5)
    rows, cols = np.nonzero(ahead[AGENT])
    assert rows.mean() == pytest.approx(15.5) and cols.mean() == pytest.approx(23.5)  # +1 cell
    assert 8 <= len(rows) <= 16  # a disc of radius 2 px
    np.testing.assert_array_equal(centred[WALL], ahead[WALL])  # same centre, same walls


def test_env_views_trail_the_moving_agent() -> None:
    env = gymnasium.make("skillcritic/Maze-v0", task="spirl")
    obs, _ = env.reset(seed=0)
    positions = [obs["state"][:2].astype(np.float64)]
    views = [obs["view"][1]]
    for _ in range(40):
        obs, *_ = env.step(np.array([0.0, 1.0]))  # push along +col
        positions.append(env.unwrapped.physics.data.qpos[:2].copy())
        views.append(obs["view"][1])
    positions = np.array(positions)
    centres = tracking_centres(positions, np.array([0]), np.array([len(positions)]), 0.2)
    expected = ViewRaster(env.unwrapped.task.walls, env.unwrapped.task.goal)(centres, positions)
    np.testing.assert_array_equal(np.array(views), expected)
    # moving along +col, the agent is drawn right of the view centre
    _, cols = np.nonzero(views[-1][AGENT])
    assert cols.mean() > 15.5 + 0.5
    env.close()
