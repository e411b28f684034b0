"""Vectorised car dynamics: a dynamic bicycle model with Pacejka tyres, kinematic at low speed.

All functions work on arrays of N cars at once (no per-car Python). The state of the cars lives
in ``CarState``; ``integrate`` advances it by one time step ``dt`` (the simulator calls it at
60 Hz, six times per 10 Hz action).

Model (single track, flat ground):

- Tyre lateral forces from the Pacejka magic formula
  ``Fy = D sin(C atan(B a - E (B a - atan(B a))))`` of the slip angle ``a`` of each axle, with
  the peak ``D = mu Fz`` reduced by the longitudinal force on the same axle (friction ellipse).
- Axle loads from the static distribution, the longitudinal load transfer of the previous step's
  acceleration and the aerodynamic downforce.
- Rear-wheel drive limited by a maximum force and by the power; brakes on both axles; ABS and
  traction control cap each axle's longitudinal force at a share ``slip_control`` of its grip;
  aerodynamic drag and rolling resistance.
- The lateral and yaw velocities are advanced with a linearly implicit Euler step (the tyre
  forces are stiff at low speed); the forward speed explicitly. No reverse gear: brakes,
  drag and rolling resistance stop the car but never push it backwards.
- Below ``kinematic_speed`` the lateral and yaw velocities are those of the kinematic bicycle
  model (no slip), above ``dynamic_speed`` those of the dynamic one, blended in between.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRAVITY = 9.81


@dataclass(frozen=True)
class CarParams:
    """A GT-class race car (GT3/GT4-like, rear-wheel drive, racing tyres).

    ==================  ========  ==========================================================
    field               default   meaning
    ==================  ========  ==========================================================
    mass                1350 kg   with driver and fuel
    yaw_inertia         2300      kg m², about the vertical axis through the centre of mass
    front_axle          1.30 m    centre of mass to front axle (lf)
    rear_axle           1.35 m    centre of mass to rear axle (lr); wheelbase 2.65 m
    cg_height           0.35 m    height of the centre of mass (load transfer)
    width               1.95 m    body width (wall contact)
    max_steer           30°       road-wheel angle at steering action ±1
    steer_rate          180°/s    fastest change of the road-wheel angle
    power               320 kW    at the wheels
    max_drive_force     9500 N    traction / first-gear limit of the drive force
    max_brake_force     24 kN     at full brake pedal, before tyre limits
    brake_front         0.70      front share of the brake force
    slip_control        0.8       share of an axle's grip that braking (ABS) or driving
                                  (traction control) may use; the rest stays for cornering
    mu                  1.45      tyre friction coefficient (racing hard), front
    rear_grip           1.12      rear friction relative to the front (wider rear tyres:
                                  the car understeers at the limit, also under braking)
    tyre_b_front        11.0      Pacejka stiffness factor B, front
    tyre_b_rear         15.0      Pacejka stiffness factor B, rear (stiffer: understeer)
    tyre_c              1.45      Pacejka shape factor C (peak at 10° front, 7° rear)
    tyre_e              0.0       Pacejka curvature factor E
    drag_area           1.0 m²    drag coefficient × frontal area (Cd A)
    downforce_area      2.6 m²    lift coefficient × area (Cl A), downforce
    aero_front          0.45      front share of the downforce
    rolling             0.015     rolling resistance coefficient
    air_density         1.2       kg/m³
    kinematic_speed     3 m/s     below: kinematic model
    dynamic_speed       6 m/s     above: dynamic model (blended in between)
    ==================  ========  ==========================================================

    Resulting performance (``benchmarks/racing.py``): 0-100 km/h in 4.1 s, 100-0 km/h in 30 m,
    top speed 283 km/h, lateral grip about 1.5 g plus downforce (+0.35 g at 200 km/h).
    """

    mass: float = 1350.0
    yaw_inertia: float = 2300.0
    front_axle: float = 1.30
    rear_axle: float = 1.35
    cg_height: float = 0.35
    width: float = 1.95
    max_steer: float = math.radians(30.0)
    steer_rate: float = math.radians(180.0)
    power: float = 320e3
    max_drive_force: float = 9500.0
    max_brake_force: float = 24e3
    brake_front: float = 0.70
    slip_control: float = 0.8
    mu: float = 1.45
    rear_grip: float = 1.12
    tyre_b_front: float = 11.0
    tyre_b_rear: float = 15.0
    tyre_c: float = 1.45
    tyre_e: float = 0.0
    drag_area: float = 1.0
    downforce_area: float = 2.6
    aero_front: float = 0.45
    rolling: float = 0.015
    air_density: float = 1.2
    kinematic_speed: float = 3.0
    dynamic_speed: float = 6.0

    def __post_init__(self) -> None:
        positive = (
            "mass", "yaw_inertia", "front_axle", "rear_axle", "width", "max_steer", "steer_rate",
            "power", "max_drive_force", "max_brake_force", "mu", "tyre_b_front", "tyre_b_rear",
            "tyre_c", "slip_control", "rear_grip",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"car parameter {name} must be > 0, got {value!r}")
        if not 0 < self.brake_front < 1 or self.slip_control >= 1:
            raise ValueError("car parameters need 0 < brake_front < 1 and slip_control < 1")
        if not 0 <= self.kinematic_speed < self.dynamic_speed:
            raise ValueError("car parameters need 0 <= kinematic_speed < dynamic_speed")

    @property
    def wheelbase(self) -> float:
        return self.front_axle + self.rear_axle


class CarState:
    """The state of N cars as arrays of shape (N,).

    ``x, y`` (m) and ``yaw`` (rad) in the world; ``vx, vy`` (m/s) forward and leftward in the car
    frame; ``yaw_rate`` (rad/s); ``steer`` the road-wheel angle (rad); ``ax, ay`` (m/s²) the
    forward and lateral accelerations of the last step (from the tyre and aero forces).
    """

    FIELDS = ("x", "y", "yaw", "vx", "vy", "yaw_rate", "steer", "ax", "ay")

    def __init__(self, n: int) -> None:
        for name in self.FIELDS:
            setattr(self, name, np.zeros(n))

    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    yaw_rate: np.ndarray
    steer: np.ndarray
    ax: np.ndarray
    ay: np.ndarray


def pacejka(
    slip: np.ndarray, peak: np.ndarray, b: float, c: float, e: float
) -> tuple[np.ndarray, np.ndarray]:
    """Magic-formula lateral force and its slope d force / d slip at slip angles ``slip``."""
    bs = b * slip
    phi = bs - e * (bs - np.arctan(bs))
    angle = c * np.arctan(phi)
    dphi = b - e * (b - b / (1.0 + bs * bs))
    return peak * np.sin(angle), peak * np.cos(angle) * c / (1.0 + phi * phi) * dphi


def integrate(
    car: CarState, steer_command: np.ndarray, pedal: np.ndarray, p: CarParams, dt: float
) -> None:
    """Advance ``car`` by ``dt`` seconds in place under the commands (both in [-1, 1])."""
    m, lf, lr = p.mass, p.front_axle, p.rear_axle
    wheelbase = lf + lr
    # Steering actuator: rate-limited towards the commanded road-wheel angle.
    max_change = p.steer_rate * dt
    car.steer += np.clip(steer_command * p.max_steer - car.steer, -max_change, max_change)
    steer = car.steer
    cos_s, sin_s = np.cos(steer), np.sin(steer)
    vx, vy, r = car.vx, car.vy, car.yaw_rate
    moving = vx > 0.0
    # Weight of the dynamic model (1) against the kinematic one (0), from the speed.
    dynamic = np.clip(
        (np.hypot(vx, vy) - p.kinematic_speed) / (p.dynamic_speed - p.kinematic_speed), 0.0, 1.0
    )

    q = 0.5 * p.air_density * vx * vx
    downforce = q * p.downforce_area
    transfer = m * car.ax * p.cg_height / wheelbase
    fz_front = np.maximum(
        m * GRAVITY * lr / wheelbase - transfer + p.aero_front * downforce, 0.05 * m * GRAVITY
    )
    fz_rear = np.maximum(
        m * GRAVITY * lf / wheelbase + transfer + (1 - p.aero_front) * downforce,
        0.05 * m * GRAVITY,
    )
    grip_front, grip_rear = p.mu * fz_front, p.mu * p.rear_grip * fz_rear

    # Longitudinal tyre forces: brakes on both axles (only while moving), drive on the rear.
    throttle = np.maximum(pedal, 0.0)
    brake = np.where(moving, np.maximum(-pedal, 0.0) * p.max_brake_force, 0.0)
    drive = throttle * np.minimum(p.max_drive_force, p.power / np.maximum(vx, 1.0))
    cap_front, cap_rear = p.slip_control * grip_front, p.slip_control * grip_rear
    fx_front = -np.minimum(brake * p.brake_front, cap_front)
    fx_rear = np.clip(drive - brake * (1 - p.brake_front), -cap_rear, cap_rear)
    peak_front = grip_front * np.sqrt(1.0 - (fx_front / grip_front) ** 2)
    peak_rear = grip_rear * np.sqrt(1.0 - (fx_rear / grip_rear) ** 2)

    # Lateral tyre forces from the slip angles (forward speed floored: defined at standstill).
    u = np.maximum(vx, 1.0)
    front_lateral = vy + lf * r
    rear_lateral = vy - lr * r
    slip_front = steer - np.arctan2(front_lateral, u)
    slip_rear = -np.arctan2(rear_lateral, u)
    fy_front, k_front = pacejka(slip_front, peak_front, p.tyre_b_front, p.tyre_c, p.tyre_e)
    fy_rear, k_rear = pacejka(slip_rear, peak_rear, p.tyre_b_rear, p.tyre_c, p.tyre_e)

    resistance = np.where(moving, q * p.drag_area + p.rolling * (m * GRAVITY + downforce), 0.0)
    # Front tyre force in the car frame; at low speed the kinematic model has no tyre slip, so
    # the lateral forces there neither brake the car nor count in the reported acceleration.
    front_x = fx_front * cos_s - dynamic * fy_front * sin_s
    front_y = fx_front * sin_s + fy_front * cos_s
    ax = (front_x + fx_rear - resistance) / m
    ay = (front_y + fy_rear) / m
    f_vy = ay - vx * r
    f_r = (lf * front_y - lr * fy_rear) / p.yaw_inertia

    # Linearly implicit Euler for (vy, r): (I - dt J) delta = dt f, J from the tyre slopes
    # (slopes past the force peak count as 0, which keeps the step stable there too).
    g_front = -u / (u * u + front_lateral * front_lateral)  # d slip_front / d vy
    g_rear = -u / (u * u + rear_lateral * rear_lateral)  # d slip_rear / d vy
    kf = np.maximum(k_front, 0.0) * cos_s * g_front
    kr = np.maximum(k_rear, 0.0) * g_rear
    j11 = (kf + kr) / m
    j12 = (lf * kf - lr * kr) / m - vx
    j21 = (lf * kf - lr * kr) / p.yaw_inertia
    j22 = (lf * lf * kf + lr * lr * kr) / p.yaw_inertia
    a11, a12, a21, a22 = 1.0 - dt * j11, -dt * j12, -dt * j21, 1.0 - dt * j22
    det = np.maximum(a11 * a22 - a12 * a21, 0.25)
    vy_dynamic = vy + dt * (a22 * f_vy - a12 * f_r) / det
    r_dynamic = r + dt * (a11 * f_r - a21 * f_vy) / det

    # Forward speed: explicit; resistances and brakes stop the car but do not reverse it.
    vx_new = np.maximum(vx + dt * (ax + vy * r), 0.0)

    # Kinematic bicycle at low speed: no slip, yaw rate from the steering geometry.
    r_kinematic = vx_new * np.tan(steer) / wheelbase
    blend = np.clip(
        (np.hypot(vx_new, vy_dynamic) - p.kinematic_speed) / (p.dynamic_speed - p.kinematic_speed),
        0.0,
        1.0,
    )
    car.vx = vx_new
    car.vy = blend * vy_dynamic + (1.0 - blend) * r_kinematic * lr
    car.yaw_rate = blend * r_dynamic + (1.0 - blend) * r_kinematic
    car.ax = ax
    car.ay = dynamic * ay + (1.0 - dynamic) * vx * vx * np.tan(steer) / wheelbase

    # Pose: semi-implicit Euler with the new velocities.
    cos_y, sin_y = np.cos(car.yaw), np.sin(car.yaw)
    car.x = car.x + dt * (car.vx * cos_y - car.vy * sin_y)
    car.y = car.y + dt * (car.vx * sin_y + car.vy * cos_y)
    car.yaw = car.yaw + dt * car.yaw_rate
