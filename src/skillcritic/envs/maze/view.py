"""Agent-centric views of the maze: an exact raster from the layout, or a MuJoCo camera.

A view is a top-down ``size x size`` image of the ``view_cells x view_cells`` square around a
centre (image rows follow maze rows, image columns follow maze columns) with three channels:
``WALL`` (fraction of the pixel covered by wall cells, 0..255; outside the grid counts as wall),
``GOAL`` (255 where the pixel centre lies on the goal marker) and ``AGENT`` (255 where it lies on
the agent's disc). The centre trails the agent like MuJoCo's tracking camera, which the reference
renders its views with: ``c_t = c_{t-1} + g (p_t - c_{t-1})``, ``c_0 = p_0``, gain ``g = 0.2``
(:func:`tracking_centres`). In steady motion the agent sits ``(1 - g) / g = 4`` steps of motion
ahead of the centre, so one view shows which way and how fast the agent moves; with the agent
exactly centred, two frames 0.01 s apart differ by a third of a pixel and a skill prior cannot
tell the direction of motion. The raster is vectorised over positions, so datasets re-create
the views of a whole batch from stored layouts, states and centres.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from skillcritic.envs.maze.physics import CAMERA_NAME, GOAL_MARKER_RADIUS, MazePhysics

WALL, GOAL, AGENT = 0, 1, 2
N_CHANNELS = 3
AGENT_MARKER_RADIUS = 0.25  # cells: the agent's disc in the AGENT channel (2 px at 8 px a cell)
TRACKING_GAIN = 0.2  # MuJoCo's tracking camera: lookat += 0.2 (com - lookat) per render


def pixel_offsets(size: int, view_cells: float) -> np.ndarray:
    """Offsets (size,) of the pixel centres from the view centre along one axis, in cells."""
    return (np.arange(size) + 0.5) * (view_cells / size) - view_cells / 2


def agent_marker(offsets: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """The AGENT channel (N, size, size): 255 where a pixel centre (``pixels``: its offsets from
    the view centre) lies within ``AGENT_MARKER_RADIUS`` of the agent at ``offsets`` (N, 2)."""
    d_row = pixels - offsets[:, 0, None]
    d_col = pixels - offsets[:, 1, None]
    on_agent = d_row[:, :, None] ** 2 + d_col[:, None, :] ** 2 <= AGENT_MARKER_RADIUS**2
    return on_agent * np.uint8(255)


def tracking_step(centre: np.ndarray, position: np.ndarray, gain: float) -> np.ndarray:
    """The view centre after the agent moved to ``position`` (one step of the tracking filter)."""
    return centre + gain * (position - centre)


def tracking_centres(
    positions: np.ndarray, episode_start: np.ndarray, episode_length: np.ndarray, gain: float
) -> np.ndarray:
    """View centres (N, 2) of flat per-step ``positions`` (N, 2) of consecutive episodes.

    Episode ``e`` owns rows ``episode_start[e] .. + episode_length[e] - 1``; its first centre is
    its first position, then :func:`tracking_step` (vectorised over episodes, looped over time).
    """
    positions = np.asarray(positions, dtype=np.float64)
    centres = positions.copy()
    episode_start = np.asarray(episode_start, dtype=np.int64)
    episode_length = np.asarray(episode_length, dtype=np.int64)
    for t in range(1, int(episode_length.max(initial=0))):
        rows = episode_start[episode_length > t] + t
        centres[rows] = tracking_step(centres[rows - 1], positions[rows], gain)
    return centres


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

    def __call__(self, positions: np.ndarray, agents: np.ndarray | None = None) -> np.ndarray:
        """Views centred at ``positions`` (N, 2) (row, col) with the agent at ``agents`` (N, 2;
        default: the centres): uint8 (N, 3, size, size)."""
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        agents = positions if agents is None else np.asarray(agents, np.float64).reshape(-1, 2)
        views = np.zeros(
            (len(positions), N_CHANNELS, self._raster.size, self._raster.size), np.uint8
        )
        # One layout, one block: straight to the renderer (the env calls this every step).
        index = np.zeros(len(positions), np.int64)
        self._raster._render(views, index, positions, agents, slice(None))
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
        self._pixel_offsets = pixel_offsets(size, view_cells)

    def __call__(
        self, layout_index: np.ndarray, positions: np.ndarray, agents: np.ndarray | None = None
    ) -> np.ndarray:
        """Views centred at ``positions`` (N, 2) (row, col) in layouts ``layout_index`` (N,),
        with the agent at ``agents`` (N, 2; default: the centres).

        Returns uint8 (N, 3, size, size). Large batches are rendered in blocks of ``block``
        positions (cache-sized temporaries), over ``threads`` threads when more than one.
        """
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        agents = positions if agents is None else np.asarray(agents, np.float64).reshape(-1, 2)
        if agents.shape != positions.shape:
            raise ValueError(f"{len(agents)} agent positions for {len(positions)} view centres")
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
            render = partial(self._render, views, layout_index, positions, agents)
            list(self._pool.map(render, blocks))  # numpy releases the GIL in these loops
        else:
            for block in blocks:
                self._render(views, layout_index, positions, agents, block)
        return views

    def _render(
        self,
        views: np.ndarray,
        layout_index: np.ndarray,
        positions: np.ndarray,
        agents: np.ndarray,
        block: slice,
    ) -> None:
        """Write the views of ``positions[block]`` into ``views[block]`` (zeros on entry)."""
        layout_index, positions, views = layout_index[block], positions[block], views[block]
        views[:, AGENT] = agent_marker(agents[block] - positions, self._pixel_offsets)
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
    """Exact raster views of ``walls`` centred on the agent at ``positions`` (N, 2): uint8
    (N, 3, size, size)."""
    return ViewRaster(walls, goal, size, view_cells)(positions)


class CameraViews:
    """Views from the MuJoCo top-down camera (needs an OpenGL backend, e.g. MUJOCO_GL=egl).

    The camera rides on the agent; each view moves it to the tracking centre (``centre``). It
    renders walls white, the goal marker red and the floor black with flat ambient light; pixels
    are classified by colour into the WALL and GOAL channels, and the AGENT channel is the same
    marker as the raster's.
    """

    def __init__(self, physics: MazePhysics, size: int = 32, view_cells: float = 4.0) -> None:
        import mujoco

        self._mujoco = mujoco
        self._physics = physics
        self._renderer = mujoco.Renderer(physics.model, size, size)
        self._option = mujoco.MjvOption()
        self._option.geomgroup[:] = 1
        self._option.geomgroup[3] = 0  # hide the agent sphere
        self._camera = mujoco.mj_name2id(physics.model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAME)
        self._height = float(physics.model.cam_pos[self._camera, 2])
        self._pixels = pixel_offsets(size, view_cells)

    def __call__(self, centre: np.ndarray | None = None) -> np.ndarray:
        """The view around ``centre`` (row, col; default: the agent): uint8 (3, size, size)."""
        position = self._physics.data.qpos[:2]
        offset = np.zeros(2) if centre is None else np.asarray(centre, np.float64) - position
        # world x = row, y = col; the camera is a child of the (non-rotating) agent body
        self._physics.model.cam_pos[self._camera] = (offset[0], offset[1], self._height)
        # the camera's world pose from qpos and the new offset (mj_camlight needs the kinematics)
        self._mujoco.mj_kinematics(self._physics.model, self._physics.data)
        self._mujoco.mj_camlight(self._physics.model, self._physics.data)
        self._renderer.update_scene(self._physics.data, CAMERA_NAME, self._option)
        rgb = self._renderer.render()
        views = np.zeros((N_CHANNELS, *rgb.shape[:2]), dtype=np.uint8)
        views[WALL] = (rgb.min(axis=-1) > 127) * np.uint8(255)
        views[GOAL] = ((rgb[..., 0] > 127) & (rgb[..., 1] < 128)) * np.uint8(255)
        views[AGENT] = agent_marker(-offset[None], self._pixels)[0]
        return views

    def close(self) -> None:
        """Release the GL context."""
        self._renderer.close()
