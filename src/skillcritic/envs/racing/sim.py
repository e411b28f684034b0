"""N cars on one track: 10 Hz actions integrated at 60 Hz, walls, course position, laps, and the
36 GTS observation features. Vectorised over the cars; the cars do not interact."""

from __future__ import annotations

import math

import numpy as np

from skillcritic.envs.racing.car import GRAVITY, CarParams, CarState, integrate
from skillcritic.envs.racing.track import Track

ACTION_DT = 0.1  # s, one action (10 Hz)
SUBSTEPS = 6  # physics steps per action (60 Hz)
N_FEATURES = 36
LIDAR_ANGLES_DEG = (0, 15, 30, 45, 60, 75, 90, 270, 285, 300, 315, 330, 345)
LOOKAHEAD_TIMES = tuple(0.2 * k for k in range(1, 15))  # s, 0.2 ... 2.8
WALL_FRICTION = 0.5  # tangential speed lost per unit of normal impact speed
WALL_SCRUB = 0.015  # fraction of the speed lost per 60 Hz step in wall contact
WALL_ALIGN = 0.5  # fraction of the heading error into the wall removed per contact step

# Names of the observation features, in the GTS order (DESIGN §3.2).
FEATURE_NAMES = (
    "front_g", "side_g", "vertical_g", "vx", "vy", "vz", "heading_error", "hit_wall", "steering",
    *(f"lidar_{a}" for a in LIDAR_ANGLES_DEG),
    *(f"curvature_{t:.1f}s" for t in LOOKAHEAD_TIMES),
)  # fmt: skip


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return np.mod(angle + math.pi, 2 * math.pi) - math.pi


class RacingSim:
    """``n_cars`` independent cars on ``track``.

    Per car it tracks the course position ``s`` (m along the centreline, in ``[0, length)``),
    the lateral offset ``ey`` (m, left positive), the ``distance`` driven along the track since
    its reset (m, signed: backwards counts negative), whether it touched a wall during the last
    action (``hit``) and for how long (``contact_time``, s).

    Walls: a car whose body crosses a wall is put back against it; the velocity into the wall is
    removed, the speed along it reduced (``WALL_FRICTION`` per unit of impact speed and
    ``WALL_SCRUB`` per contact step), the yaw rate zeroed and the heading turned part of the way
    (``WALL_ALIGN``) towards the wall, so that the car slides along it rather than sticking.
    """

    def __init__(self, track: Track, n_cars: int, params: CarParams | None = None) -> None:
        if not isinstance(n_cars, int | np.integer) or isinstance(n_cars, bool) or n_cars < 1:
            raise ValueError(f"the number of cars must be an integer >= 1, got {n_cars!r}")
        self.track = track
        self.n = int(n_cars)
        self.params = params or CarParams()
        self.dt = ACTION_DT / SUBSTEPS
        self.car = CarState(self.n)
        self.s = np.zeros(self.n)
        self.ey = np.zeros(self.n)
        self.index = np.zeros(self.n, dtype=np.int64)
        self.distance = np.zeros(self.n)
        self.hit = np.zeros(self.n, dtype=bool)
        self.contact_time = np.zeros(self.n)
        self._angles = np.radians(LIDAR_ANGLES_DEG)
        self._lookahead = np.array(LOOKAHEAD_TIMES)
        self.reset(np.arange(self.n), np.zeros(self.n))

    def reset(
        self,
        cars: np.ndarray,
        s: np.ndarray,
        ey: np.ndarray | float = 0.0,
        heading: np.ndarray | float = 0.0,
        speed: np.ndarray | float = 0.0,
    ) -> None:
        """Place ``cars`` (indices) at course positions ``s`` and lateral offsets ``ey`` with a
        heading ``heading`` (rad) relative to the centreline, driving at ``speed`` (m/s) with
        the steering straight. Offsets beyond the walls are clipped to them."""
        cars = np.asarray(cars, dtype=np.int64)
        if cars.size == 0:
            return
        s = np.broadcast_to(np.asarray(s, dtype=np.float64), cars.shape)
        limit = self.track.half_width_at(s) - 0.5 * self.params.width
        ey = np.clip(np.broadcast_to(np.asarray(ey, dtype=np.float64), cars.shape), -limit, limit)
        xy, track_heading = self.track.pose_at(s, ey)
        c = self.car
        c.x[cars], c.y[cars] = xy[:, 0], xy[:, 1]
        c.yaw[cars] = track_heading + heading
        c.vx[cars] = speed
        for name in ("vy", "yaw_rate", "steer", "ax", "ay"):
            getattr(c, name)[cars] = 0.0
        self.s[cars], self.ey[cars], self.index[cars] = self.track.project(xy)
        self.distance[cars] = 0.0
        self.hit[cars] = False
        self.contact_time[cars] = 0.0

    def step(self, actions: np.ndarray) -> None:
        """Apply ``actions`` (N, 2) = ``[steer, pedal]`` in [-1, 1] for 0.1 s (6 steps of 60 Hz).

        The caller checks and clips the actions (``RacingEnv`` / ``RacingVectorEnv``)."""
        steer, pedal = actions[:, 0], actions[:, 1]
        self.hit[:] = False
        self.contact_time[:] = 0.0
        for _ in range(SUBSTEPS):
            integrate(self.car, steer, pedal, self.params, self.dt)
            self._follow_track()

    def _follow_track(self) -> None:
        c, track = self.car, self.track
        xy = np.stack([c.x, c.y], axis=1)
        s, ey, index = track.project(xy, self.index)
        delta = s - self.s
        self.distance += delta - track.length * np.rint(delta / track.length)
        limit = track.half_width[index] - 0.5 * self.params.width
        over = np.abs(ey) - limit
        touching = over > 0
        if touching.any():
            self._wall_contact(np.flatnonzero(touching), xy, ey, index, over)
            ey = np.clip(ey, -limit, limit)
        self.s, self.ey, self.index = s, ey, index
        self.hit |= touching
        self.contact_time += self.dt * touching

    def _wall_contact(
        self, cars: np.ndarray, xy: np.ndarray, ey: np.ndarray, index: np.ndarray, over: np.ndarray
    ) -> None:
        c, track = self.car, self.track
        side = np.sign(ey[cars])
        outward = side[:, None] * track.normal[index[cars]]
        position = xy[cars] - over[cars, None] * outward
        yaw = c.yaw[cars]
        cos_y, sin_y = np.cos(yaw), np.sin(yaw)
        vx, vy = c.vx[cars], c.vy[cars]
        velocity = np.stack([vx * cos_y - vy * sin_y, vx * sin_y + vy * cos_y], axis=1)
        into = np.maximum((velocity * outward).sum(1), 0.0)
        velocity -= into[:, None] * outward
        speed = np.linalg.norm(velocity, axis=1)
        kept = np.maximum(speed - WALL_FRICTION * into, 0.0) * (1.0 - WALL_SCRUB)
        velocity *= (kept / np.maximum(speed, 1e-9))[:, None]
        # Turn the heading part of the way towards the wall's direction (forwards or backwards,
        # whichever is nearer) when it points into the wall.
        along = track.heading[index[cars]]
        error = wrap_angle(yaw - along)
        reference = np.where(np.abs(error) <= math.pi / 2, along, along + math.pi)
        error = wrap_angle(yaw - reference)
        into_wall = np.sin(error) * side > 0
        yaw = np.where(into_wall, reference + (1.0 - WALL_ALIGN) * error, yaw)
        cos_y, sin_y = np.cos(yaw), np.sin(yaw)
        c.x[cars], c.y[cars], c.yaw[cars] = position[:, 0], position[:, 1], yaw
        c.vx[cars] = np.maximum(velocity[:, 0] * cos_y + velocity[:, 1] * sin_y, 0.0)
        c.vy[cars] = -velocity[:, 0] * sin_y + velocity[:, 1] * cos_y
        c.yaw_rate[cars] = 0.0

    @property
    def speed(self) -> np.ndarray:
        """Speed over ground, m/s."""
        return np.hypot(self.car.vx, self.car.vy)

    def heading_error(self) -> np.ndarray:
        """Car heading minus the centreline heading at its course position, in [-pi, pi)."""
        _, track_heading = self.track.pose_at(self.s)
        return wrap_angle(self.car.yaw - track_heading)

    def features(self) -> np.ndarray:
        """The 36 GTS observation features of every car, (N, 36) float32, in this order:

        ===  =====================  =====================================================
        0    front_g                forward acceleration of the last 60 Hz step, in g
        1    side_g                 leftward acceleration, in g
        2    vertical_g             vertical acceleration beyond gravity, in g (0: flat)
        3-5  vx, vy, vz             velocity in the car frame, m/s (forward, left, up=0)
        6    heading_error          car heading minus centreline heading, rad (left +)
        7    hit_wall               1 if the car touched a wall during the last action
        8    steering               current road-wheel angle, rad (left +)
        9-21 lidar_0 ... lidar_345  wall distance along rays at 0, 15, ..., 90, 270, ...,
                                    345 degrees counter-clockwise from the heading, m,
                                    capped at 100 m
        22+  curvature_0.2s ...     centreline curvature (1/m, left +) at the course
                                    positions reached in 0.2, 0.4, ..., 2.8 s at the
                                    current forward speed
        ===  =====================  =====================================================
        """
        c = self.car
        out = np.empty((self.n, N_FEATURES), dtype=np.float64)
        out[:, 0] = c.ax / GRAVITY
        out[:, 1] = c.ay / GRAVITY
        out[:, 2] = 0.0
        out[:, 3] = c.vx
        out[:, 4] = c.vy
        out[:, 5] = 0.0
        out[:, 6] = self.heading_error()
        out[:, 7] = self.hit
        out[:, 8] = c.steer
        xy = np.stack([c.x, c.y], axis=1)
        out[:, 9:22] = self.track.ray_distances(xy, c.yaw, self.index, self._angles)
        ahead = self.s[:, None] + np.maximum(c.vx, 0.0)[:, None] * self._lookahead[None]
        out[:, 22:36] = self.track.curvature_at(ahead)
        return out.astype(np.float32)
