"""MuJoCo point mass in a grid maze (the D4RL maze2d / PointMaze physics, in cell units).

World axes are the layout's axes: world x = row, world y = column, one unit = one cell, and
the centre of cell (r, c) is at (r, c). The agent is a sphere on two slide joints whose qpos is
its (row, col) position directly, driven by two motors (gear 100, control in [-1, 1]) with
joint damping 1, timestep 0.01, no gravity, and velocities clipped to +-5 before each step.
"""

from __future__ import annotations

import mujoco
import numpy as np

TIMESTEP = 0.01
MAX_SPEED = 5.0
AGENT_RADIUS = 0.1
GOAL_MARKER_RADIUS = 0.3
# Flat colours for the tracking camera (lit by a pure ambient headlight, so rgba = pixel colour).
WALL_RGBA = (1.0, 1.0, 1.0, 1.0)
GOAL_RGBA = (1.0, 0.0, 0.0, 1.0)
FLOOR_RGBA = (0.0, 0.0, 0.0, 1.0)
CAMERA_NAME = "agent_view"
_AGENT_GROUP = 3  # geom group hidden from the tracking camera


def wall_boxes(walls: np.ndarray) -> list[tuple[float, float, float]]:
    """Merge each row's runs of wall cells into boxes: (row centre, col centre, half length in col).

    Fewer geoms make collision detection cheaper; the merged boxes cover exactly the wall cells.
    """
    boxes = []
    for row, line in enumerate(walls):
        padded = np.concatenate([[False], line, [False]])
        edges = np.flatnonzero(padded[1:] != padded[:-1])
        for first, end in zip(edges[::2], edges[1::2], strict=True):  # wall run = cols first..end-1
            boxes.append((float(row), (first + end - 1) / 2.0, (end - first) / 2.0))
    return boxes


def maze_xml(walls: np.ndarray, goal: tuple[float, float] | None, view_cells: float = 4.0) -> str:
    """The MJCF of a maze: merged wall boxes, an optional goal marker, the agent and its camera."""
    rows, cols = walls.shape
    geoms = [
        f'<geom type="box" pos="{r} {c} 0.5" size="0.5 {half} 0.5" rgba="{_rgba(WALL_RGBA)}"/>'
        for r, c, half in wall_boxes(walls)
    ]
    # Outside the grid reads as wall in the raster views; show the camera the same with a
    # visual-only frame around the layout, wide enough for any view from inside.
    frame = view_cells / 2 + 1
    mid_row, mid_col = (rows - 1) / 2, (cols - 1) / 2
    half_rows, half_cols = rows / 2 + frame, cols / 2
    for pos, size in (
        ((-0.5 - frame / 2, mid_col), (frame / 2, half_cols + frame)),
        ((rows - 0.5 + frame / 2, mid_col), (frame / 2, half_cols + frame)),
        ((mid_row, -0.5 - frame / 2), (half_rows, frame / 2)),
        ((mid_row, cols - 0.5 + frame / 2), (half_rows, frame / 2)),
    ):
        geoms.append(
            f'<geom type="box" pos="{pos[0]} {pos[1]} 0.5" size="{size[0]} {size[1]} 0.5" '
            f'contype="0" conaffinity="0" rgba="{_rgba(WALL_RGBA)}"/>'
        )
    if goal is not None:
        geoms.append(
            f'<geom name="goal" type="cylinder" pos="{goal[0]} {goal[1]} 0.01" '
            f'size="{GOAL_MARKER_RADIUS} 0.01" contype="0" conaffinity="0" '
            f'rgba="{_rgba(GOAL_RGBA)}"/>'
        )
    return f"""
<mujoco model="maze">
  <option timestep="{TIMESTEP}" gravity="0 0 0" integrator="Euler"/>
  <visual>
    <quality shadowsize="0"/>
    <headlight ambient="1 1 1" diffuse="0 0 0" specular="0 0 0"/>
  </visual>
  <default>
    <joint damping="1" limited="false"/>
    <geom friction=".5 .1 .1" density="1000" margin="0.002" condim="1"
          contype="2" conaffinity="1"/>
  </default>
  <worldbody>
    <geom name="floor" type="plane" pos="{(rows - 1) / 2} {(cols - 1) / 2} 0"
          size="{rows / 2 + 5} {cols / 2 + 5} 0.1" rgba="{_rgba(FLOOR_RGBA)}"
          contype="0" conaffinity="0"/>
    {"".join(geoms)}
    <body name="agent" pos="0 0 {AGENT_RADIUS}">
      <joint name="row" type="slide" axis="1 0 0"/>
      <joint name="col" type="slide" axis="0 1 0"/>
      <geom name="agent" type="sphere" size="{AGENT_RADIUS}" contype="1"
            group="{_AGENT_GROUP}" rgba="0 0 1 1"/>
      <!-- top-down orthographic tracking camera: image right = +col, image down = +row -->
      <camera name="{CAMERA_NAME}" pos="0 0 5" xyaxes="0 1 0 -1 0 0"
              projection="orthographic" fovy="{view_cells}"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="row" gear="100" ctrlrange="-1 1" ctrllimited="true"/>
    <motor joint="col" gear="100" ctrlrange="-1 1" ctrllimited="true"/>
  </actuator>
</mujoco>
"""


def _rgba(rgba: tuple[float, float, float, float]) -> str:
    return " ".join(str(v) for v in rgba)


class MazePhysics:
    """The MuJoCo model and state of one maze; positions and velocities in cell units."""

    def __init__(
        self, walls: np.ndarray, goal: tuple[float, float] | None = None, view_cells: float = 4.0
    ) -> None:
        self.walls = walls
        self.model = mujoco.MjModel.from_xml_string(maze_xml(walls, goal, view_cells))
        self.data = mujoco.MjData(self.model)

    def reset(self, position: np.ndarray, velocity: np.ndarray | None = None) -> None:
        """Place the agent at ``position`` (row, col) with ``velocity`` (zero by default)."""
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = position
        self.data.qvel[:] = 0.0 if velocity is None else velocity
        mujoco.mj_forward(self.model, self.data)

    def step(self, action: np.ndarray, n_steps: int = 1) -> None:
        """Apply ``action`` (clipped to [-1, 1] by the actuators) for ``n_steps`` physics steps."""
        data = self.data
        data.ctrl[:] = action
        for _ in range(n_steps):
            np.clip(data.qvel, -MAX_SPEED, MAX_SPEED, out=data.qvel)
            mujoco.mj_step(self.model, data)

    @property
    def position(self) -> np.ndarray:
        """(row, col) of the agent, a copy."""
        return self.data.qpos.copy()

    @property
    def velocity(self) -> np.ndarray:
        """(v_row, v_col) of the agent in cells per second, a copy."""
        return self.data.qvel.copy()

    @property
    def state(self) -> np.ndarray:
        """``[row, col, v_row, v_col]`` as float32."""
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float32)
