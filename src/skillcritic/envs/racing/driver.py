"""The built-in AI driver: a grip-limited speed profile, pure-pursuit steering on the centreline
and a speed controller, for N cars at once.

Speed profile: the highest speed at each point of the centreline at which the lateral
acceleration ``v² |kappa|`` stays within a fraction ``grip`` of the tyre grip (with downforce),
then a forward pass (the car cannot accelerate faster than its drive force and the remaining
grip allow) and a backward pass (it cannot brake harder than ``grip`` of the grip left after
cornering) around the closed track. ``grip`` is the driver's aggressiveness: 1 drives on the
limit, smaller values leave a margin.

Steering: pure pursuit of the centreline point ``lookahead`` seconds ahead (at least
``min_lookahead`` metres): the road-wheel angle ``atan(wheelbase * k)`` that puts the car on the
circle of curvature ``k = 2 y / d²`` through that point (``y`` its lateral offset in the car
frame, ``d`` its distance), plus the understeer of the car's tyres at the lateral acceleration
``v² k`` (the linear bicycle model's understeer gradient).

Speed controller: pedal = feed-forward against drag and rolling resistance plus
``speed_gain * (v_ref - v)``, where ``v_ref`` is the lowest profile speed over the next
``preview`` seconds (the controller acts at 10 Hz).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from skillcritic.envs.racing.car import GRAVITY, CarParams
from skillcritic.envs.racing.env import RacingEnv
from skillcritic.envs.racing.sim import RacingSim
from skillcritic.envs.racing.track import Track

TOP_SPEED = 100.0  # m/s, the profile's cap on straights
REAR_SHARE = 0.55  # share of the grip on the (driven) rear axle while accelerating


@dataclass(frozen=True)
class DriverSettings:
    """How the AI drives (all cars share these; ``grip`` is per car).

    Args:
        lookahead: pure-pursuit look-ahead time, s.
        min_lookahead: shortest look-ahead distance, m.
        speed_gain: pedal per m/s of speed error.
        preview: the speed target is the profile's minimum over the next ``preview`` seconds.
    """

    lookahead: float = 0.55
    min_lookahead: float = 7.0
    speed_gain: float = 0.6
    preview: float = 0.3


def speed_profile(track: Track, params: CarParams, grip: np.ndarray) -> np.ndarray:
    """Target speed (m/s) at every track sample for each grip fraction ``grip`` (N,): (N, n)."""
    grip = np.atleast_1d(np.asarray(grip, dtype=np.float64))
    m, mu = params.mass, params.mu * grip[:, None]
    aero = 0.5 * params.air_density * params.downforce_area  # downforce per (m/s)²
    # The tightest curvature within a car length either side: a margin for the discretisation.
    curvature = np.abs(track.curvature)
    reach = max(1, round(3.0 / track.ds))
    curvature = np.max([np.roll(curvature, k) for k in range(-reach, reach + 1)], axis=0)
    # Lateral limit: m v² k <= mu (m g + aero v²).
    denominator = np.maximum(m * curvature[None] - mu * aero, 1e-9)
    limit = np.minimum(np.sqrt(mu * m * GRAVITY / denominator), TOP_SPEED)  # (N, n)

    def longitudinal(v: np.ndarray, k: float, mu_row: np.ndarray) -> np.ndarray:
        """Grip left for braking at speed v on curvature k (m/s²), within the ABS share."""
        total = mu_row * (GRAVITY + aero * v * v / m)
        lateral = v * v * k
        return params.slip_control * np.sqrt(np.maximum(total * total - lateral * lateral, 0.0))

    n = track.n
    start = int(np.argmin(limit[0]))  # the slowest point: its speed is its own limit
    order = (start + np.arange(n + 1)) % n
    mu_col = mu[:, 0]
    drag = 0.5 * params.air_density * params.drag_area
    v = limit[:, start].copy()
    forward = limit.copy()
    for i in order[1:]:
        drive = np.minimum(params.max_drive_force, params.power / np.maximum(v, 1.0)) / m
        traction = REAR_SHARE * longitudinal(v, curvature[i], mu_col)
        accel = np.minimum(drive, traction) - drag * v * v / m
        v = np.minimum(np.sqrt(v * v + 2.0 * track.ds * np.maximum(accel, 0.0)), forward[:, i])
        forward[:, i] = v
    v = forward[:, start].copy()
    profile = forward
    for i in order[::-1][1:]:
        decel = longitudinal(v, curvature[i], mu_col) + drag * v * v / m
        v = np.minimum(np.sqrt(v * v + 2.0 * track.ds * decel), profile[:, i])
        profile[:, i] = v
    return profile


class AIDriver:
    """Drives the N cars of a ``RacingSim``; ``grip`` (N,) in (0, 1] is each car's aggressiveness
    (the fraction of the tyre grip its speed profile uses)."""

    def __init__(
        self, sim: RacingSim, grip: np.ndarray, settings: DriverSettings | None = None
    ) -> None:
        grip = np.broadcast_to(np.asarray(grip, dtype=np.float64), (sim.n,))
        if not ((grip > 0) & (grip <= 1)).all():
            raise ValueError(f"driver grip fractions must lie in (0, 1], got {grip}")
        self.sim = sim
        self.settings = settings or DriverSettings()
        self.profile = speed_profile(sim.track, sim.params, grip)
        self._cars = np.arange(sim.n)
        # Understeer gradient of the linear bicycle model (rad per m/s² of lateral acceleration):
        # cornering stiffness B C mu Fz per axle, with the static loads.
        p = sim.params
        self.understeer = (1.0 / (GRAVITY * p.tyre_c * p.mu)) * (
            1.0 / p.tyre_b_front - 1.0 / (p.tyre_b_rear * p.rear_grip)
        )

    def target_speed(self) -> np.ndarray:
        """The speed the controller aims for now (m/s), per car."""
        sim, track = self.sim, self.sim.track
        v = np.maximum(sim.car.vx, 0.0)
        ahead = sim.s[:, None] + v[:, None] * np.linspace(0.0, self.settings.preview, 4)[None]
        index = np.rint(ahead / track.ds).astype(np.int64) % track.n
        return self.profile[self._cars[:, None], index].min(axis=1)

    def act(self) -> np.ndarray:
        """Actions ``[steer, pedal]`` (N, 2) in [-1, 1] for the cars' current states."""
        sim, p, s = self.sim, self.sim.params, self.settings
        car = sim.car
        v = np.maximum(car.vx, 0.0)
        distance = np.maximum(s.lookahead * v, s.min_lookahead)
        target, _ = sim.track.pose_at(sim.s + distance)
        dx, dy = target[:, 0] - car.x, target[:, 1] - car.y
        cos_y, sin_y = np.cos(car.yaw), np.sin(car.yaw)
        forward = cos_y * dx + sin_y * dy
        left = -sin_y * dx + cos_y * dy
        curvature = 2.0 * left / np.maximum(forward * forward + left * left, 1e-6)
        understeer = self.understeer * v * v * curvature  # extra angle the tyres' slip takes
        steer = (np.arctan(p.wheelbase * curvature) + understeer) / p.max_steer

        v_ref = self.target_speed()
        drive = np.minimum(p.max_drive_force, p.power / np.maximum(v, 1.0))
        resistance = (
            0.5 * p.air_density * v * v * (p.drag_area + p.rolling * p.downforce_area)
            + p.rolling * p.mass * GRAVITY
        )
        pedal = resistance / drive + s.speed_gain * (v_ref - v)
        return np.clip(np.stack([steer, pedal], axis=1), -1.0, 1.0)


def ai_corner_run(grip: float, start_speed: float = 144.0) -> tuple[bool, dict[str, Any]]:
    """The built-in AI with aggressiveness ``grip`` on the target ``corner`` task (reset seed 0),
    launched at ``start_speed`` km/h: whether it reached the segment end, and the last step's
    info (``segment_time`` s, ``wall_hit_time`` s). Its segment time is the bar the agents must
    beat."""
    env = RacingEnv(task="corner", start_speed=start_speed)
    env.reset(seed=0)
    driver = AIDriver(env.sim, grip)
    while True:
        _, _, terminated, truncated, info = env.step(driver.act()[0])
        if terminated or truncated:
            return terminated, info
