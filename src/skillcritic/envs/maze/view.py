"""Agent-centric views of the maze: an exact raster from the layout, or a MuJoCo camera.

A view is a top-down ``size x size`` image of the ``view_cells x view_cells`` square centred on
the agent (image rows follow maze rows, image columns follow maze columns) with two channels:
``WALL`` (fraction of the pixel covered by wall cells, 0..255; outside the grid counts as wall)
and ``GOAL`` (255 where the pixel centre lies on the goal marker). The raster is vectorised over
positions, so datasets can re-create the views of a whole batch from stored layouts and states.
"""

from __future__ import annotations

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
    """Exact raster views of one layout, vectorised over agent positions.

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
        self.size, self.view_cells = size, view_cells
        self.goal = None if goal is None else np.asarray(goal, dtype=np.float64)
        self._n_cells = int(np.ceil(view_cells)) + 1
        # Pad with walls so that windows leaving the grid read "wall" there.
        self._pad = self._n_cells + 1
        self._padded = np.pad(walls.astype(np.float64), self._pad, constant_values=1.0)
        pixel = view_cells / size
        self._pixel_offsets = (np.arange(size) + 0.5) * pixel - view_cells / 2

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """Views at ``positions`` (N, 2) (row, col): uint8 (N, 2, size, size)."""
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        row_first, row_overlap = _axis_overlap(positions[:, 0], self.size, self.view_cells)
        col_first, col_overlap = _axis_overlap(positions[:, 1], self.size, self.view_cells)
        k = np.arange(self._n_cells)
        limit = np.array(self._padded.shape) - 1
        rows = np.minimum(np.maximum(row_first[:, None] + self._pad + k, 0), limit[0])
        cols = np.minimum(np.maximum(col_first[:, None] + self._pad + k, 0), limit[1])
        window = self._padded[rows[:, :, None], cols[:, None, :]]  # (N, K, K)
        # coverage[n, i, j] = sum_ab overlap_row[n, i, a] * wall[n, a, b] * overlap_col[n, j, b]
        coverage = row_overlap @ window @ col_overlap.transpose(0, 2, 1)
        views = np.zeros((len(positions), N_CHANNELS, self.size, self.size), dtype=np.uint8)
        views[:, WALL] = np.rint(np.minimum(coverage, 1.0) * 255)
        reach = self.view_cells / 2 + GOAL_MARKER_RADIUS
        if self.goal is not None and (np.abs(positions - self.goal).max(axis=1) <= reach).any():
            d_row = positions[:, 0, None] + self._pixel_offsets - self.goal[0]  # (N, size)
            d_col = positions[:, 1, None] + self._pixel_offsets - self.goal[1]
            on_goal = d_row[:, :, None] ** 2 + d_col[:, None, :] ** 2 <= GOAL_MARKER_RADIUS**2
            views[:, GOAL] = on_goal * np.uint8(255)
        return views


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
