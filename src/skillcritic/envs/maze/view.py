"""Agent-centric views of the maze: an exact raster from the layout, or a MuJoCo camera.

A view is a top-down ``size x size`` image of the ``view_cells x view_cells`` square centred on
the agent (image rows follow maze rows, image columns follow maze columns) with two channels:
``WALL`` (fraction of the pixel covered by wall cells, 0..255; outside the grid counts as wall)
and ``GOAL`` (255 where the pixel centre lies on the goal marker). The raster is vectorised over
positions, so datasets can re-create the views of a whole batch from stored layouts and states.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from skillcritic.envs.maze.physics import CAMERA_NAME, GOAL_MARKER_RADIUS, MazePhysics

WALL, GOAL = 0, 1
N_CHANNELS = 2


def _axis_overlap(
    centres: np.ndarray, size: int, view_cells: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per view and pixel, the fraction of the pixel's extent along one axis inside each cell.

    Returns the first cell index of each view (N,) and overlaps (N, size, K) for cells
    first..first+K-1, where cell a spans [a - 0.5, a + 0.5).
    """
    pixel = view_cells / size
    low = centres - view_cells / 2
    n_cells = int(np.ceil(view_cells)) + 1
    first = np.floor(low + 0.5).astype(np.int64)
    edges = low[:, None] + pixel * np.arange(size + 1)  # (N, size+1)
    cell_low = first[:, None] + np.arange(n_cells) - 0.5  # (N, K)
    lo = np.maximum(edges[:, :-1, None], cell_low[:, None, :])
    hi = np.minimum(edges[:, 1:, None], cell_low[:, None, :] + 1.0)
    return first, np.maximum(hi - lo, 0.0) / pixel


class ViewRaster:
    """Exact raster views of one layout, vectorised over agent positions: a
    ``MultiLayoutRaster`` of one layout.

    Args:
        walls: bool (rows, cols) layout, True = wall.
        goal: (row, col) of the goal marker, or None for no marker.
        size: pixels per side of a view.
        view_cells: cells per side of a view.
    """

    def __init__(
        self,
        walls: np.ndarray,
        goal: np.ndarray | tuple[float, float] | None = None,
        size: int = 32,
        view_cells: float = 4.0,
    ) -> None:
        goals = None if goal is None else np.asarray(goal, dtype=np.float64).reshape(1, 2)
        self._raster = MultiLayoutRaster([walls], goals, size, view_cells)

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """Views at ``positions`` (N, 2) (row, col): uint8 (N, 2, size, size)."""
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        views = np.zeros(
            (len(positions), N_CHANNELS, self._raster.size, self._raster.size), np.uint8
        )
        # One layout, one block: straight to the renderer (the env calls this every step).
        self._raster._render(views, np.zeros(len(positions), np.int64), positions, slice(None))
        return views


class MultiLayoutRaster:
    """Exact raster views of positions that each belong to one of ``E`` layouts.

    The layouts may have different sizes: all are padded once to a common shape (wall outside
    each layout), so that a batch mixing layouts is rendered with a few vectorised operations.

    Args:
        walls: ``E`` bool (rows, cols) layouts, True = wall.
        goals: (E, 2) goal cells (row, col), a NaN row for a layout without a goal marker, or
            None for no goal markers at all.
        size: pixels per side of a view.
        view_cells: cells per side of a view.
        threads: threads that render the blocks of a large batch (1: the calling thread).
        block: positions per block.
    """

    def __init__(
        self,
        walls: Sequence[np.ndarray],
        goals: np.ndarray | None = None,
        size: int = 32,
        view_cells: float = 4.0,
        threads: int = 1,
        block: int = 256,
    ) -> None:
        if len(walls) == 0:
            raise ValueError("MultiLayoutRaster needs at least one layout")
        if any(np.ndim(w) != 2 for w in walls):
            raise ValueError("every layout must be a 2-D (rows, cols) array")
        if threads < 1 or block < 1:
            raise ValueError(f"threads and block must be >= 1, got {threads}, {block}")
        self.size, self.view_cells = size, view_cells
        self.threads, self.block = threads, block
        self._pool: ThreadPoolExecutor | None = None
        self.n_layouts = len(walls)
        self._n_cells = int(np.ceil(view_cells)) + 1
        self._pad = self._n_cells + 1
        shape = np.max([np.shape(w) for w in walls], axis=0) + 2 * self._pad
        # Binary layouts are kept as uint8 (8x less memory); the window is cast to float64.
        binary = all(np.asarray(w).dtype in (np.bool_, np.uint8) for w in walls)
        self._walls = np.ones((self.n_layouts, *shape), dtype=np.uint8 if binary else np.float64)
        for index, layout in enumerate(walls):
            rows, cols = np.shape(layout)
            self._walls[index, self._pad : self._pad + rows, self._pad : self._pad + cols] = layout
        self._limit = shape - 1
        if goals is not None:
            goals = np.asarray(goals, dtype=np.float64)
            if goals.shape != (self.n_layouts, 2):
                raise ValueError(f"goals must have shape ({self.n_layouts}, 2), got {goals.shape}")
        self.goals = goals
        pixel = view_cells / size
        self._pixel_offsets = (np.arange(size) + 0.5) * pixel - view_cells / 2

    def __call__(self, layout_index: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Views at ``positions`` (N, 2) (row, col) in layouts ``layout_index`` (N,).

        Returns uint8 (N, 2, size, size). Large batches are rendered in blocks of ``block``
        positions (cache-sized temporaries), over ``threads`` threads when more than one.
        """
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        layout_index = np.asarray(layout_index, dtype=np.int64).reshape(-1)
        if len(layout_index) != len(positions):
            raise ValueError(f"{len(layout_index)} layout indices for {len(positions)} positions")
        if len(layout_index) and (layout_index.min() < 0 or layout_index.max() >= self.n_layouts):
            raise IndexError(f"layout index out of range [0, {self.n_layouts})")
        views = np.zeros((len(positions), N_CHANNELS, self.size, self.size), dtype=np.uint8)
        blocks = [slice(i, i + self.block) for i in range(0, len(positions), self.block)]
        if self.threads > 1 and len(blocks) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="raster")
            render = partial(self._render, views, layout_index, positions)
            list(self._pool.map(render, blocks))  # numpy releases the GIL in these loops
        else:
            for block in blocks:
                self._render(views, layout_index, positions, block)
        return views

    def _render(
        self, views: np.ndarray, layout_index: np.ndarray, positions: np.ndarray, block: slice
    ) -> None:
        """Write the views of ``positions[block]`` into ``views[block]`` (zeros on entry)."""
        layout_index, positions, views = layout_index[block], positions[block], views[block]
        row_first, row_overlap = _axis_overlap(positions[:, 0], self.size, self.view_cells)
        col_first, col_overlap = _axis_overlap(positions[:, 1], self.size, self.view_cells)
        k = np.arange(self._n_cells)
        rows = np.minimum(np.maximum(row_first[:, None] + self._pad + k, 0), self._limit[0])
        cols = np.minimum(np.maximum(col_first[:, None] + self._pad + k, 0), self._limit[1])
        window = self._walls[layout_index[:, None, None], rows[:, :, None], cols[:, None, :]]
        # The same operations, in the same order, as ViewRaster: bit-identical coverage.
        coverage = row_overlap @ window.astype(np.float64) @ col_overlap.transpose(0, 2, 1)
        np.minimum(coverage, 1.0, out=coverage)
        coverage *= 255
        views[:, WALL] = np.rint(coverage, out=coverage)
        if self.goals is None:
            return
        goals = self.goals[layout_index]
        reach = self.view_cells / 2 + GOAL_MARKER_RADIUS
        # Farther than ``reach`` on either axis, no pixel centre lies on the marker (a NaN goal
        # compares False: no marker).
        near = np.flatnonzero(np.abs(positions - goals).max(axis=1) <= reach)
        if len(near):
            near_positions, near_goals = positions[near], goals[near]
            d_row = near_positions[:, 0, None] + self._pixel_offsets - near_goals[:, 0, None]
            d_col = near_positions[:, 1, None] + self._pixel_offsets - near_goals[:, 1, None]
            on_goal = d_row[:, :, None] ** 2 + d_col[:, None, :] ** 2 <= GOAL_MARKER_RADIUS**2
            views[near, GOAL] = on_goal * np.uint8(255)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_pool"] = None  # threads do not pickle; a copy starts its own pool
        return state

    def close(self) -> None:
        """Stop the render threads (a later call starts them again)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def raster_views(
    walls: np.ndarray,
    positions: np.ndarray,
    goal: np.ndarray | tuple[float, float] | None = None,
    size: int = 32,
    view_cells: float = 4.0,
) -> np.ndarray:
    """Exact raster views of ``walls`` at ``positions`` (N, 2): uint8 (N, 2, size, size)."""
    return ViewRaster(walls, goal, size, view_cells)(positions)


class CameraViews:
    """Views from the MuJoCo top-down tracking camera (needs an OpenGL backend, e.g. MUJOCO_GL=egl).

    The camera renders walls white, the goal marker red and the floor black with flat ambient
    light; pixels are classified by colour into the same two channels as ``raster_views``.
    """

    def __init__(self, physics: MazePhysics, size: int = 32) -> None:
        import mujoco

        self._mujoco = mujoco
        self._physics = physics
        self._renderer = mujoco.Renderer(physics.model, size, size)
        self._option = mujoco.MjvOption()
        self._option.geomgroup[:] = 1
        self._option.geomgroup[3] = 0  # hide the agent sphere

    def __call__(self) -> np.ndarray:
        """The view at the agent's current position: uint8 (2, size, size)."""
        self._renderer.update_scene(self._physics.data, CAMERA_NAME, self._option)
        rgb = self._renderer.render()
        views = np.zeros((N_CHANNELS, *rgb.shape[:2]), dtype=np.uint8)
        views[WALL] = (rgb.min(axis=-1) > 127) * np.uint8(255)
        views[GOAL] = ((rgb[..., 0] > 127) & (rgb[..., 1] < 128)) * np.uint8(255)
        return views

    def close(self) -> None:
        """Release the GL context."""
        self._renderer.close()
