"""skillcritic.envs.maze.layout: parsing, packaged tasks, connectivity, T-maze generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skillcritic.envs.maze.layout import (
    TASK_NAMES,
    LayoutError,
    MazeTask,
    connected_components,
    free_cells,
    load_layout,
    load_task,
    parse_layout,
    random_t_maze,
)

SMALL = "#####\n#OO##\n#O#O#\n#####\n"


# --- parsing -------------------------------------------------------------------------------


def test_parse_layout_values_and_trailing_blank_lines() -> None:
    walls = parse_layout(SMALL + "\n\n   \n")
    assert walls.dtype == bool
    expected = np.array(
        [
            [1, 1, 1, 1, 1],
            [1, 0, 0, 1, 1],
            [1, 0, 1, 0, 1],
            [1, 1, 1, 1, 1],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(walls, expected)


def test_parse_layout_ragged_row() -> None:
    with pytest.raises(LayoutError, match=r"row 2 .* 4 characters, expected 5") as info:
        parse_layout("#####\n#OO##\n#O##\n#####", source="ragged.txt")
    assert "ragged.txt" in str(info.value)
    assert "same length" in str(info.value)


def test_parse_layout_bad_character() -> None:
    with pytest.raises(LayoutError, match=r"row 1 .*column 2 holds 'x'"):
        parse_layout("#####\n#Ox##\n#####")


def test_parse_layout_open_border() -> None:
    with pytest.raises(LayoutError, match=r"border cell \(row 1, col 4\) is free"):
        parse_layout("#####\n#OOOO\n#####")


def test_parse_layout_no_free_cell() -> None:
    with pytest.raises(LayoutError, match="no free cell"):
        parse_layout("###\n###\n###")


@pytest.mark.parametrize("text", ["", "\n\n", "  \n"])
def test_parse_layout_empty(text: str) -> None:
    with pytest.raises(LayoutError, match="empty"):
        parse_layout(text)


def test_layout_error_is_value_error() -> None:
    assert issubclass(LayoutError, ValueError)


def test_load_layout_roundtrip_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_text(SMALL)
    np.testing.assert_array_equal(load_layout(path), parse_layout(SMALL))
    missing = tmp_path / "nope.txt"
    with pytest.raises(LayoutError, match=r"nope\.txt"):
        load_layout(missing)


def test_load_layout_reports_path_in_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("###\n#O\n###\n")
    with pytest.raises(LayoutError, match=r"bad\.txt"):
        load_layout(str(path))


# --- packaged tasks --------------------------------------------------------------------------


def test_task_names() -> None:
    assert TASK_NAMES == ("spirl", "spirl_l2", "nav", "traj")


@pytest.mark.parametrize("name", ["spirl", "spirl_l2", "nav", "traj"])
def test_load_task(name: str) -> None:
    task = load_task(name)
    assert isinstance(task, MazeTask)
    assert task.name == name
    h, w = task.walls.shape
    for cell in (task.start, task.goal):
        assert 0 <= cell[0] < h and 0 <= cell[1] < w
        assert not task.walls[cell]
    assert task.goal_radius > 0
    assert task.episode_steps > 0
    # Start and goal must be joined by free cells.
    labels = connected_components(task.walls)
    assert labels[task.start] == labels[task.goal] >= 0
    # Cached and read-only.
    assert load_task(name) is task
    with pytest.raises(ValueError):
        task.walls[0, 0] = False


@pytest.mark.parametrize(
    ("name", "shape", "start", "goal"),
    [
        ("spirl", (42, 42), (10, 24), (18, 8)),
        ("spirl_l2", (42, 42), (10, 24), (20, 16)),
        ("nav", (18, 17), (1, 1), (3, 10)),
        ("traj", (19, 20), (1, 1), (9, 13)),
    ],
)
def test_task_shapes(
    name: str, shape: tuple[int, int], start: tuple[int, int], goal: tuple[int, int]
) -> None:
    task = load_task(name)
    assert task.walls.shape == shape
    assert task.start == start
    assert task.goal == goal
    assert task.walls[0].all() and task.walls[-1].all()
    assert task.walls[:, 0].all() and task.walls[:, -1].all()


def test_load_task_unknown_name_lists_valid_names() -> None:
    with pytest.raises(LayoutError, match="unknown maze task 'bogus'") as info:
        load_task("bogus")
    for name in TASK_NAMES:
        assert name in str(info.value)


# --- cells and connectivity --------------------------------------------------------------------


def test_free_cells_row_major() -> None:
    cells = free_cells(parse_layout(SMALL))
    assert cells.dtype == np.int64
    np.testing.assert_array_equal(cells, [[1, 1], [1, 2], [2, 1], [2, 3]])


def test_connected_components_two_components() -> None:
    rows = ("#######", "#OO#OO#", "#O##OO#", "#OO#O##", "#######")
    walls = parse_layout("\n".join(rows))
    labels = connected_components(walls)
    assert labels.dtype == np.int32
    expected = np.array(
        [
            [-1, -1, -1, -1, -1, -1, -1],
            [-1, 0, 0, -1, 1, 1, -1],
            [-1, 0, -1, -1, 1, 1, -1],
            [-1, 0, 0, -1, 1, -1, -1],
            [-1, -1, -1, -1, -1, -1, -1],
        ]
    )
    np.testing.assert_array_equal(labels, expected)


def test_connected_components_diagonal_is_not_connected() -> None:
    walls = parse_layout("####\n#O##\n##O#\n####")
    labels = connected_components(walls)
    assert labels[1, 1] == 0 and labels[2, 2] == 1


def test_connected_components_winding_corridor() -> None:
    # A serpentine corridor: one component however long the path between its ends.
    walls = np.ones((21, 21), dtype=bool)
    walls[1:-1:2, 1:-1] = False
    for i, row in enumerate(range(2, 19, 2)):
        walls[row, 19 if i % 2 == 0 else 1] = False
    labels = connected_components(walls)
    assert labels.max() == 0
    assert (labels[~walls] == 0).all()
    # Cutting the corridor splits it in two.
    walls[9, 10] = True
    assert connected_components(walls).max() == 1


def test_connected_components_many_isolated_cells() -> None:
    walls = np.ones((9, 9), dtype=bool)
    walls[1:-1:2, 1:-1:2] = False
    labels = connected_components(walls)
    assert labels.max() == 15
    np.testing.assert_array_equal(labels[1:-1:2, 1:-1:2].ravel(), np.arange(16))


# --- random T mazes ----------------------------------------------------------------------------


def test_random_t_maze_properties_over_seeds() -> None:
    size = 20
    min_t_cells = 2 * round(0.3 * size) - 1  # smallest bar + stem, minus the door
    for seed in range(20):
        walls = random_t_maze(size, np.random.default_rng(seed))
        assert walls.shape == (size + 2, size + 2)
        assert walls.dtype == bool
        assert walls[0].all() and walls[-1].all()
        assert walls[:, 0].all() and walls[:, -1].all()
        interior = walls[1:-1, 1:-1]
        assert 0.2 <= interior.mean() <= 0.3, seed
        assert interior.sum() >= 3 * min_t_cells
        assert connected_components(walls).max() == 0, seed


def test_random_t_maze_deterministic() -> None:
    a = random_t_maze(20, np.random.default_rng(7))
    b = random_t_maze(20, np.random.default_rng(7))
    c = random_t_maze(20, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_t_maze_zero_coverage_is_empty_room() -> None:
    walls = random_t_maze(6, np.random.default_rng(0), coverage=0.0)
    assert not walls[1:-1, 1:-1].any()


def test_random_t_maze_other_settings_stay_connected() -> None:
    for seed in range(5):
        walls = random_t_maze(
            12, np.random.default_rng(seed), coverage=0.4, wall_length=(0.5, 1.0), temperature=0.0
        )
        assert walls.shape == (14, 14)
        assert connected_components(walls).max() == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 4}, "size"),
        ({"size": 20, "coverage": 0.6}, "coverage"),
        ({"size": 20, "coverage": -0.1}, "coverage"),
        ({"size": 20, "wall_length": (0.0, 0.5)}, "wall_length"),
        ({"size": 20, "wall_length": (0.5, 0.3)}, "wall_length"),
        ({"size": 20, "wall_length": (0.3, 1.5)}, "wall_length"),
        ({"size": 20, "temperature": -1.0}, "temperature"),
    ],
)
def test_random_t_maze_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        random_t_maze(rng=np.random.default_rng(0), **kwargs)
