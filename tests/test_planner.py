"""Tests for skillcritic.envs.maze.planner: BFS distance fields and shortest paths."""

from __future__ import annotations

import numpy as np
import pytest

from skillcritic.envs.maze.layout import free_cells, load_task, parse_layout, random_t_maze
from skillcritic.envs.maze.planner import distance_to, shortest_path


def grid(*rows: str) -> np.ndarray:
    """Parse a layout given as one string per row."""
    return parse_layout("\n".join(rows))


# A wall splits the room: going from (1, 1) to (1, 3) means a detour down and around it.
DETOUR = grid(
    "#####",
    "#O#O#",
    "#O#O#",
    "#OOO#",
    "#####",
)

# Two rooms with no door between them.
SPLIT = grid(
    "######",
    "#OO#O#",
    "#OO#O#",
    "######",
)


def assert_valid_path(walls: np.ndarray, path: np.ndarray, start: tuple, goal: tuple) -> None:
    """A path starts and ends where asked, moves in 4-connected unit steps, avoids walls."""
    assert path.dtype == np.int64
    assert path.ndim == 2 and path.shape[1] == 2
    assert tuple(path[0]) == tuple(start)
    assert tuple(path[-1]) == tuple(goal)
    steps = np.abs(np.diff(path, axis=0)).sum(axis=1)
    assert (steps == 1).all()
    assert not walls[path[:, 0], path[:, 1]].any()


def test_distance_to_detour() -> None:
    dist = distance_to(DETOUR, (1, 3))
    assert dist.dtype == np.int32
    expected = np.array(
        [
            [-1, -1, -1, -1, -1],
            [-1, 6, -1, 0, -1],
            [-1, 5, -1, 1, -1],
            [-1, 4, 3, 2, -1],
            [-1, -1, -1, -1, -1],
        ]
    )
    np.testing.assert_array_equal(dist, expected)


def test_distance_to_unreachable_is_minus_one() -> None:
    dist = distance_to(SPLIT, (1, 1))
    np.testing.assert_array_equal(dist[1:3, 1:3], [[0, 1], [1, 2]])
    assert dist[1, 4] == -1 and dist[2, 4] == -1
    assert (dist[SPLIT] == -1).all()


def test_distance_to_grid_without_border() -> None:
    walls = np.zeros((2, 3), dtype=bool)
    np.testing.assert_array_equal(distance_to(walls, (0, 0)), [[0, 1, 2], [1, 2, 3]])


def test_shortest_path_detour() -> None:
    path = shortest_path(DETOUR, (1, 1), (1, 3))
    assert path is not None
    np.testing.assert_array_equal(path, [[1, 1], [2, 1], [3, 1], [3, 2], [3, 3], [2, 3], [1, 3]])
    assert_valid_path(DETOUR, path, (1, 1), (1, 3))


def test_shortest_path_tie_break_is_deterministic() -> None:
    walls = parse_layout("####\n#OO#\n#OO#\n####")
    # Two shortest paths exist; ties go up, down, left, right in that order.
    path = shortest_path(walls, (1, 1), (2, 2))
    assert path is not None
    np.testing.assert_array_equal(path, [[1, 1], [2, 1], [2, 2]])
    np.testing.assert_array_equal(shortest_path(walls, (2, 2), (1, 1)), [[2, 2], [1, 2], [1, 1]])


def test_shortest_path_unreachable_is_none() -> None:
    assert shortest_path(SPLIT, (1, 1), (2, 4)) is None


def test_shortest_path_start_is_goal() -> None:
    path = shortest_path(DETOUR, (2, 3), (2, 3))
    assert path is not None
    np.testing.assert_array_equal(path, [[2, 3]])


@pytest.mark.parametrize(
    ("start", "goal", "match"),
    [
        ((0, 0), (1, 1), "start .* wall"),
        ((1, 1), (1, 2), "goal .* wall"),
        ((9, 1), (1, 1), "start .* outside"),
        ((1, 1), (1, -1), "goal .* outside"),
    ],
)
def test_shortest_path_rejects_bad_cells(start: tuple, goal: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        shortest_path(DETOUR, start, goal)


def test_distance_to_rejects_wall_goal() -> None:
    with pytest.raises(ValueError, match="wall"):
        distance_to(DETOUR, (0, 2))


def test_random_maze_paths_match_distance_field() -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        walls = random_t_maze(20, rng)
        cells = free_cells(walls)
        goal = tuple(cells[rng.integers(len(cells))])
        dist = distance_to(walls, goal)
        # The T maze is connected: every free cell has a finite distance.
        assert (dist[~walls] >= 0).all() and (dist[walls] == -1).all()
        for start in cells[rng.choice(len(cells), size=10, replace=False)]:
            start = tuple(start)
            path = shortest_path(walls, start, goal)
            assert path is not None
            assert len(path) == dist[start] + 1
            assert_valid_path(walls, path, start, goal)


def test_packaged_tasks_are_solvable() -> None:
    for name in ("spirl", "nav", "traj"):
        task = load_task(name)
        path = shortest_path(task.walls, task.start, task.goal)
        assert path is not None
        assert_valid_path(task.walls, path, task.start, task.goal)
        assert len(path) == distance_to(task.walls, task.goal)[task.start] + 1
