"""Grid planning on maze layouts: BFS distance fields and shortest cell paths (4-connected)."""

from __future__ import annotations

import numpy as np

# Neighbour order (up, down, left, right): fixes how shortest_path breaks ties.
_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _check_grid(walls: np.ndarray) -> np.ndarray:
    """Validate and convert a wall grid to a 2-D bool array."""
    arr = np.asarray(walls, dtype=bool)
    if arr.ndim != 2:
        raise ValueError(f"walls must be a 2-D array, got shape {arr.shape}")
    return arr


def _check_cell(walls: np.ndarray, cell: tuple[int, int], what: str) -> tuple[int, int]:
    """Validate that ``cell`` is a free cell inside the grid; return it as a pair of ints."""
    r, c = (int(v) for v in cell)
    h, w = walls.shape
    if not (0 <= r < h and 0 <= c < w):
        raise ValueError(f"{what} ({r}, {c}) lies outside the {h}x{w} grid")
    if walls[r, c]:
        raise ValueError(f"{what} ({r}, {c}) is a wall cell")
    return r, c


def distance_to(walls: np.ndarray, goal: tuple[int, int]) -> np.ndarray:
    """int32 BFS distance (4-connected steps) from every cell to ``goal``; -1 if wall/unreachable.

    Raises ValueError if the goal lies outside the grid or on a wall.
    """
    walls = _check_grid(walls)
    gr, gc = _check_cell(walls, goal, "goal")
    h, w = walls.shape
    # Work on the grid padded with a wall ring, flattened: every cell's 4 neighbours are then
    # plain index offsets that never leave the array, whether or not the layout has a border.
    pw = w + 2
    open_ = ~np.pad(walls, 1, constant_values=True).ravel()
    offsets = np.array([-pw, pw, -1, 1])
    dist = np.full(open_.size, -1, dtype=np.int32)
    frontier = np.array([(gr + 1) * pw + gc + 1])
    dist[frontier] = 0
    open_[frontier] = False  # open_ doubles as the "not yet visited" mask
    step = 0
    while frontier.size:
        step += 1
        nbrs = (frontier[:, None] + offsets).ravel()
        nbrs = np.unique(nbrs[open_[nbrs]])
        open_[nbrs] = False
        dist[nbrs] = step
        frontier = nbrs
    return dist.reshape(h + 2, pw)[1:-1, 1:-1].copy()


def shortest_path(
    walls: np.ndarray, start: tuple[int, int], goal: tuple[int, int]
) -> np.ndarray | None:
    """(L, 2) int64 shortest 4-connected cell path from start to goal inclusive, or None.

    Descends the BFS distance field greedily, breaking ties in the order up, down, left, right.
    Returns None when the goal is unreachable; raises ValueError if start or goal is a wall or
    lies outside the grid.
    """
    walls = _check_grid(walls)
    r, c = _check_cell(walls, start, "start")
    _check_cell(walls, goal, "goal")
    dist = distance_to(walls, goal)
    if dist[r, c] < 0:
        return None
    h, w = walls.shape
    path = [(r, c)]
    while dist[r, c] > 0:
        want = dist[r, c] - 1
        for dr, dc in _MOVES:
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and dist[nr, nc] == want:
                r, c = nr, nc
                break
        path.append((r, c))
    return np.array(path, dtype=np.int64)
