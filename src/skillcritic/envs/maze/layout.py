"""Maze layouts: parsing, the packaged tasks, connectivity and a random T-wall generator.

A layout is a 2-D bool array ``walls[row, col]`` (True = wall) that includes its border. Layout
text files hold one text row per maze row, ``'#'`` for a wall cell and ``'O'`` for a free cell.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from skillcritic.errors import UserError

logger = logging.getLogger(__name__)

WALL_CHAR = "#"
FREE_CHAR = "O"
_TASKS_FILE = "tasks.json"
_TASK_FIELDS = ("layout", "start", "goal", "goal_radius", "episode_steps")

# random_t_maze budgets: T shapes drawn in total, and placements tried per T before giving up on it.
_MAX_T_SAMPLES = 200
_MAX_PLACEMENT_TRIES = 10


class LayoutError(UserError, ValueError):
    """A layout file or task definition is malformed (the message names the problem and the fix)."""


# --------------------------------------------------------------------------------------------
# Parsing and loading
# --------------------------------------------------------------------------------------------


def parse_layout(text: str, source: str = "<string>") -> np.ndarray:
    """Parse layout text ('#' = wall, 'O' = free, one line per row) into a bool wall grid.

    Trailing whitespace on a line and blank trailing lines are ignored. Raises LayoutError for
    empty text, ragged rows, other characters, a grid without free cells or an open border.
    """
    rows = [line.rstrip(" \t") for line in text.splitlines()]
    while rows and not rows[-1]:
        rows.pop()
    if not rows:
        raise LayoutError(
            f"layout {source} is empty; it needs at least one row of '{WALL_CHAR}'/'{FREE_CHAR}' "
            "characters"
        )
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise LayoutError(
                f"layout {source}: row {i} (line {i + 1}) has {len(row)} characters, expected "
                f"{width}; every row must have the same length"
            )
        for j, char in enumerate(row):
            if char not in (WALL_CHAR, FREE_CHAR):
                raise LayoutError(
                    f"layout {source}: row {i} (line {i + 1}), column {j} holds {char!r}; use only "
                    f"'{WALL_CHAR}' for walls and '{FREE_CHAR}' for free cells"
                )
    walls = np.array([[char == WALL_CHAR for char in row] for row in rows], dtype=bool)
    if walls.all():
        raise LayoutError(f"layout {source} has no free cell; mark at least one cell '{FREE_CHAR}'")
    border = np.ones_like(walls)
    border[1:-1, 1:-1] = False
    open_border = np.argwhere(border & ~walls)
    if len(open_border):
        r, c = (int(v) for v in open_border[0])
        raise LayoutError(
            f"layout {source}: border cell (row {r}, col {c}) is free; the outermost rows and "
            f"columns must all be walls '{WALL_CHAR}'"
        )
    return walls


def load_layout(path: str | Path) -> np.ndarray:
    """Read and parse a layout text file; LayoutError if it cannot be read or is malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise LayoutError(
            f"cannot read layout file {path} ({reason}); check that the path exists and is a "
            "readable UTF-8 text file"
        ) from exc
    return parse_layout(text, source=str(path))


# --------------------------------------------------------------------------------------------
# Packaged tasks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # eq=False: array fields make field-wise == ambiguous
class MazeTask:
    """A navigation task: layout, start and goal cells (row, col), goal radius, episode length."""

    name: str
    walls: np.ndarray
    start: tuple[int, int]
    goal: tuple[int, int]
    goal_radius: float
    episode_steps: int


def _layouts_dir() -> Any:
    """The packaged ``layouts`` folder as an importlib.resources Traversable."""
    return files("skillcritic.envs.maze") / "layouts"


@functools.lru_cache(maxsize=1)
def _tasks_json() -> dict[str, Any]:
    """The packaged tasks.json, parsed."""
    try:
        data = json.loads((_layouts_dir() / _TASKS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LayoutError(
            f"cannot read the packaged {_TASKS_FILE} ({exc}); reinstall skillcritic or restore "
            "the file"
        ) from exc
    if not isinstance(data, dict):
        raise LayoutError(f"the packaged {_TASKS_FILE} is not a JSON object; restore the file")
    return data


@functools.cache
def _packaged_layout(filename: str) -> np.ndarray:
    """A packaged layout file, parsed once and returned read-only (shared between tasks)."""
    resource = _layouts_dir() / filename
    try:
        text = resource.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LayoutError(
            f"cannot read packaged layout file {filename} ({exc}); fix the 'layout' entry in "
            f"{_TASKS_FILE} or restore the file"
        ) from exc
    walls = parse_layout(text, source=f"packaged {filename}")
    walls.flags.writeable = False
    return walls


TASK_NAMES: tuple[str, ...] = tuple(key for key in _tasks_json() if not key.startswith("_"))


def _task_cell(value: Any, field: str, task: str, walls: np.ndarray) -> tuple[int, int]:
    """Validate a task's start/goal entry: a [row, col] pair naming a free cell of its layout."""
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise LayoutError(
            f"task {task!r}: {field} is {value!r}; give it as a [row, col] pair of integers"
        )
    r, c = int(value[0]), int(value[1])
    h, w = walls.shape
    if not (0 <= r < h and 0 <= c < w):
        raise LayoutError(
            f"task {task!r}: {field} ({r}, {c}) lies outside the {h}x{w} layout; pick a cell "
            "inside the grid"
        )
    if walls[r, c]:
        raise LayoutError(
            f"task {task!r}: {field} ({r}, {c}) is a wall cell; pick a free ('{FREE_CHAR}') cell"
        )
    return r, c


@functools.cache
def load_task(name: str) -> MazeTask:
    """Load a packaged task by name (see TASK_NAMES); its walls array is read-only and cached."""
    if name not in TASK_NAMES:
        raise LayoutError(f"unknown maze task {name!r}; valid names are {', '.join(TASK_NAMES)}")
    entry = _tasks_json()[name]
    missing = [f for f in _TASK_FIELDS if not isinstance(entry, dict) or f not in entry]
    if missing:
        raise LayoutError(
            f"task {name!r} in {_TASKS_FILE} lacks {', '.join(missing)}; add the missing fields"
        )
    walls = _packaged_layout(str(entry["layout"]))
    return MazeTask(
        name=name,
        walls=walls,
        start=_task_cell(entry["start"], "start", name, walls),
        goal=_task_cell(entry["goal"], "goal", name, walls),
        goal_radius=float(entry["goal_radius"]),
        episode_steps=int(entry["episode_steps"]),
    )


# --------------------------------------------------------------------------------------------
# Cells and connectivity
# --------------------------------------------------------------------------------------------


def _as_walls(walls: np.ndarray) -> np.ndarray:
    """Validate and convert a wall grid to a 2-D bool array."""
    arr = np.asarray(walls, dtype=bool)
    if arr.ndim != 2:
        raise ValueError(f"walls must be a 2-D array, got shape {arr.shape}")
    return arr


def free_cells(walls: np.ndarray) -> np.ndarray:
    """(N, 2) int64 (row, col) indices of the free cells, in row-major order."""
    return np.argwhere(~_as_walls(walls)).astype(np.int64, copy=False)


def _component_roots(free: np.ndarray) -> np.ndarray:
    """Label the free cells (in row-major order) by the smallest free-cell index in their component.

    Vectorised min-label hooking with pointer jumping (Shiloach-Vishkin style): each round hooks
    every root onto the smallest label across its edges, then compresses all label chains, so
    the number of rounds grows roughly with log(component size) rather than its diameter.
    """
    n = int(free.sum())
    index = np.full(free.shape, -1, dtype=np.int64)
    index[free] = np.arange(n)
    # Edges between 4-neighbouring free cells, as pairs of free-cell indices.
    horiz = free[:, :-1] & free[:, 1:]
    vert = free[:-1, :] & free[1:, :]
    u = np.concatenate([index[:, :-1][horiz], index[:-1, :][vert]])
    v = np.concatenate([index[:, 1:][horiz], index[1:, :][vert]])
    label = np.arange(n)
    while True:
        lu, lv = label[u], label[v]
        differ = lu != lv
        if not differ.any():
            return label
        lu, lv = lu[differ], lv[differ]
        # Labels are always roots here, so this hooks roots onto a smaller label only.
        np.minimum.at(label, np.maximum(lu, lv), np.minimum(lu, lv))
        while True:
            jumped = label[label]
            if not (jumped != label).any():
                break
            label = jumped


def _num_components(free: np.ndarray) -> int:
    """Number of 4-connected components of the True cells of ``free``."""
    label = _component_roots(free)
    return int(np.count_nonzero(label == np.arange(label.size)))


def connected_components(walls: np.ndarray) -> np.ndarray:
    """int32 label grid: -1 on walls, 0..K-1 for the 4-connected free components.

    Components are numbered in row-major order of their first cell.
    """
    free = ~_as_walls(walls)
    label = _component_roots(free)
    # A component's root is its first cell, so ranking the roots numbers components in order.
    is_root = label == np.arange(label.size)
    rank = np.cumsum(is_root) - 1
    out = np.full(free.shape, -1, dtype=np.int32)
    out[free] = rank[label]
    return out


# --------------------------------------------------------------------------------------------
# Random T-wall layouts
# --------------------------------------------------------------------------------------------


def _t_shape(
    bar: int, stem: int, orientation: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A T of the given bar/stem lengths, rotated by ``orientation`` quarter turns.

    Returns (footprint, wall_cells): the full T and the T minus its one door cell. The door is
    drawn among the cells that are neither the junction nor a tip (so it splits the wall), or,
    for the tiniest T, among all non-junction cells.
    """
    footprint = np.zeros((stem + 1, bar), dtype=bool)
    mid = bar // 2
    footprint[0, :] = True  # the bar
    footprint[1:, mid] = True  # the stem, hanging from the bar's middle (the junction)
    candidates = [(0, j) for j in range(1, bar - 1) if j != mid]
    candidates += [(i, mid) for i in range(1, stem)]
    if not candidates:
        candidates = [(0, j) for j in range(bar) if j != mid] + [(stem, mid)]
    door = candidates[int(rng.integers(len(candidates)))]
    wall_cells = footprint.copy()
    wall_cells[door] = False
    return np.rot90(footprint, orientation), np.rot90(wall_cells, orientation)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Dilate a bool mask by one cell in all 8 directions (output grows by 1 on each side)."""
    h, w = mask.shape
    rows = np.zeros((h + 2, w), dtype=bool)  # separable: dilate along rows, then along columns
    rows[:-2] |= mask
    rows[1:-1] |= mask
    rows[2:] |= mask
    out = np.zeros((h + 2, w + 2), dtype=bool)
    out[:, :-2] |= rows
    out[:, 1:-1] |= rows
    out[:, 2:] |= rows
    return out


def random_t_maze(
    size: int,
    rng: np.random.Generator,
    coverage: float = 0.25,
    wall_length: tuple[float, float] = (0.3, 0.5),
    temperature: float = 20.0,
) -> np.ndarray:
    """A random (size+2, size+2) layout of T-shaped walls in the style of the SPiRL generator.

    T walls (bar and stem lengths ``round(U(wall_length) * size)``, one door each) are placed
    where they overlap existing walls least (placement ~ softmax(-temperature * wall density
    around the T)) until ``coverage`` of the interior is wall. Placements that would split the
    free space are rejected, so all free cells form one 4-connected component. Deterministic
    given the state of ``rng``.
    """
    if int(size) != size or size < 5:
        raise ValueError(f"size must be an integer >= 5, got {size!r}")
    if not 0.0 <= coverage < 0.6:
        raise ValueError(f"coverage must lie in [0, 0.6), got {coverage!r}")
    lo, hi = wall_length
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(
            "wall_length must satisfy 0 < wall_length[0] <= wall_length[1] <= 1, "
            f"got {wall_length!r}"
        )
    if not temperature >= 0.0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    size = int(size)

    walls = np.zeros((size + 2, size + 2), dtype=bool)
    walls[0, :] = walls[-1, :] = walls[:, 0] = walls[:, -1] = True
    interior = walls[1:-1, 1:-1]  # a view: tracks every wall placed

    for _ in range(_MAX_T_SAMPLES):
        if interior.mean() >= coverage:
            break
        bar = min(max(round(rng.uniform(lo, hi) * size), 3), size)
        stem = min(max(round(rng.uniform(lo, hi) * size), 1), size - 1)
        footprint, wall_cells = _t_shape(bar, stem, int(rng.integers(4)), rng)
        halo = _dilate(footprint)
        h, w = footprint.shape
        # Window (i, j) of the bordered grid is the halo of the T whose top-left cell is
        # (i + 1, j + 1); these are exactly the placements that keep the T inside the interior.
        # The border counts as wall, which keeps Ts from doubling it.
        windows = sliding_window_view(walls.astype(np.float64), halo.shape)
        density = np.tensordot(windows, halo, axes=([2, 3], [0, 1])) / halo.sum()
        logits = -temperature * density.ravel()
        weights = np.exp(logits - logits.max())
        cdf = np.cumsum(weights)
        for _ in range(_MAX_PLACEMENT_TRIES):
            flat = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
            r, c = divmod(min(flat, cdf.size - 1), density.shape[1])
            candidate = walls.copy()
            candidate[r + 1 : r + 1 + h, c + 1 : c + 1 + w] |= wall_cells
            if _num_components(~candidate) == 1:
                walls = candidate
                interior = walls[1:-1, 1:-1]
                break
    if interior.mean() < coverage:
        logger.warning(
            "random_t_maze: gave up after %d T samples at coverage %.3f < %.3f",
            _MAX_T_SAMPLES,
            interior.mean(),
            coverage,
        )
    return walls
