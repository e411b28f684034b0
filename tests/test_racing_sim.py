"""The racing simulator: dynamics sanity for a GT car, walls, course position, vectorisation."""

from __future__ import annotations

import numpy as np
import pytest

from skillcritic.envs.racing.car import GRAVITY, CarParams
from skillcritic.envs.racing.driver import AIDriver
from skillcritic.envs.racing.sim import FEATURE_NAMES, N_FEATURES, RacingSim
from skillcritic.envs.racing.track import Track, path_points

KMH = 1 / 3.6


@pytest.fixture(scope="module")
def oval() -> Track:
    """Two 1 km straights joined by 100 m radius half circles, 14 m wide."""
    points, _, _ = path_points((("S", 1000.0), ("A", 180.0, 100.0)) * 2)
    return Track(points, 14.0)


@pytest.fixture(scope="module")
def ring() -> Track:
    angles = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
    return Track(np.stack([100 * np.cos(angles), 100 * np.sin(angles)], axis=1), 12.0)


def drive(sim: RacingSim, action: tuple[float, float], steps: int) -> None:
    actions = np.tile(np.asarray(action, dtype=np.float64), (sim.n, 1))
    for _ in range(steps):
        sim.step(actions)


def test_feature_names_follow_the_gts_order() -> None:
    assert len(FEATURE_NAMES) == N_FEATURES == 36
    assert FEATURE_NAMES[:9] == (
        "front_g", "side_g", "vertical_g", "vx", "vy", "vz", "heading_error", "hit_wall",
        "steering",
    )  # fmt: skip
    assert FEATURE_NAMES[9] == "lidar_0" and FEATURE_NAMES[15] == "lidar_90"
    assert FEATURE_NAMES[16] == "lidar_270" and FEATURE_NAMES[21] == "lidar_345"
    assert FEATURE_NAMES[22] == "curvature_0.2s" and FEATURE_NAMES[35] == "curvature_2.8s"


def test_acceleration_0_to_100(oval: Track) -> None:
    sim = RacingSim(oval, 1)
    sim.reset([0], [150.0])  # on the straight, away from the spline's transition to the arc
    steps = 0
    while sim.car.vx[0] < 100 * KMH:
        sim.step(np.array([[0.0, 1.0]]))
        steps += 1
        assert steps < 100
    assert 3.5 <= steps * 0.1 <= 5.5  # GT3 / GT4 cars: about 3.5 - 4.5 s
    assert not sim.hit[0] and abs(sim.ey[0]) < 0.1
    assert 0.4 < sim.features()[0, 0] < 0.8  # front_g while still accelerating near 100 km/h


def test_braking_distance_from_100(oval: Track) -> None:
    sim = RacingSim(oval, 1)
    sim.reset([0], [150.0], speed=100 * KMH)
    features = []
    for _ in range(100):
        sim.step(np.array([[0.0, -1.0]]))
        features.append(sim.features()[0])
        if sim.car.vx[0] == 0.0:
            break
    assert sim.car.vx[0] == 0.0
    assert 25.0 <= sim.distance[0] <= 40.0  # about 30 m
    assert min(f[0] for f in features) < -1.1  # over 1.1 g of braking
    drive(sim, (0.0, -1.0), 10)  # the brakes hold the car; they never push it backwards
    assert sim.car.vx[0] == 0.0 and sim.distance[0] <= 40.0


def test_steady_state_cornering_below_the_grip_limit(ring: Track) -> None:
    sim = RacingSim(ring, 1)
    sim.reset([0], [0.0], speed=20.0)
    driver = AIDriver(sim, 0.6)
    samples = []
    for step in range(250):
        sim.step(driver.act())
        if step >= 150:
            samples.append(sim.features()[0])
        assert not sim.hit[0]
    f = np.array(samples)
    speed = f[:, 3].mean()
    assert f[:, 3].std() < 0.2 and abs(sim.ey[0]) < 1.0
    radius = 100.0 - sim.ey[0]
    assert f[:, 1].mean() == pytest.approx(speed**2 / radius / GRAVITY, rel=0.05)  # side g
    assert 0.6 < f[:, 1].mean() < 1.45  # well above gentle driving, below the tyre grip
    assert sim.car.yaw_rate[0] == pytest.approx(speed / radius, rel=0.05)
    wheelbase = CarParams().wheelbase
    assert f[:, 8].mean() > np.arctan(wheelbase / radius)  # an understeering car
    assert np.abs(f[:, 22:]).max() == pytest.approx(0.01, rel=0.01)  # curvature look-aheads


def test_standstill_is_stable(oval: Track) -> None:
    sim = RacingSim(oval, 3)
    start = np.stack([sim.car.x, sim.car.y], axis=1).copy()
    drive(sim, (0.0, 0.0), 20)
    drive(sim, (0.7, -1.0), 20)
    features = sim.features()
    assert np.isfinite(features).all()
    np.testing.assert_array_equal(np.stack([sim.car.x, sim.car.y], axis=1), start)
    np.testing.assert_array_equal(features[:, 3:6], 0.0)
    # full lock and throttle from standstill: a tight, slow left turn, no blow-up
    drive(sim, (1.0, 0.3), 20)
    features = sim.features()
    assert np.isfinite(features).all()
    assert (sim.car.yaw_rate > 0).all() and (sim.car.vx > 1.0).all()


def test_high_speed_random_driving_stays_finite_and_inside(oval: Track) -> None:
    sim = RacingSim(oval, 16)
    sim.reset(np.arange(16), np.linspace(0, oval.length, 16, endpoint=False), speed=80.0)
    rng = np.random.default_rng(0)
    p = sim.params
    aero = 0.5 * p.air_density * p.downforce_area / p.mass
    limit = oval.half_width[0] - 0.5 * p.width
    for _ in range(100):
        sim.step(rng.uniform(-1.2, 1.2, (16, 2)).clip(-1, 1))
        features = sim.features()
        assert np.isfinite(features).all()
        assert (np.abs(sim.ey) <= limit + 1e-9).all()
        grip = p.mu * p.rear_grip * (GRAVITY + aero * sim.car.vx**2)
        assert (np.hypot(sim.car.ax, sim.car.ay) <= 1.05 * grip).all()


def test_walls_stop_and_slow_the_car_and_set_the_flag(oval: Track) -> None:
    sim = RacingSim(oval, 2)
    # car 0 aims at the left wall at 0.4 rad, car 1 drives along the centreline
    sim.reset(np.arange(2), [100.0, 100.0], heading=np.array([0.4, 0.0]), speed=30.0)
    limit = oval.half_width[0] - 0.5 * sim.params.width
    hits, speeds = [], []
    for _ in range(30):
        sim.step(np.array([[0.0, 0.0], [0.0, 0.0]]))
        hits.append(sim.hit.copy())
        speeds.append(sim.speed.copy())
        assert sim.ey[0] <= limit + 1e-9  # never through the wall
        assert sim.contact_time[0] <= 0.1 + 1e-9
        assert sim.features()[0, 7] == float(sim.hit[0])
    hits, speeds = np.array(hits), np.array(speeds)
    assert hits[:, 0].any() and not hits[:, 1].any()
    first = int(np.argmax(hits[:, 0]))
    assert speeds[first, 0] < 0.8 * speeds[first, 1]  # the impact costs speed
    assert abs(sim.heading_error()[0]) < 0.2  # turned along the wall, not stuck in it
    assert sim.speed[0] > 10.0 and sim.distance[0] > 50.0  # and still moving on


def test_distance_and_course_position_along_laps(ring: Track) -> None:
    sim = RacingSim(ring, 1)
    sim.reset([0], [600.0], speed=15.0)
    driver = AIDriver(sim, 0.7)
    distance, positions = [0.0], []
    while sim.distance[0] < 1.3 * ring.length:
        sim.step(driver.act())
        distance.append(sim.distance[0])
        positions.append(sim.s[0])
    assert (np.diff(distance) > 0).all()
    positions = np.array(positions)
    assert ((positions >= 0) & (positions < ring.length)).all()
    assert (np.diff(positions) < 0).sum() == 2  # wrapped through s = 0 twice in 1.3 laps


def test_many_cars_equal_single_cars(oval: Track) -> None:
    n = 5
    rng = np.random.default_rng(1)
    s, ey = rng.uniform(0, oval.length, n), rng.uniform(-4, 4, n)
    heading, speed = rng.uniform(-0.3, 0.3, n), rng.uniform(0, 60, n)
    actions = rng.uniform(-1, 1, (30, n, 2))
    batch = RacingSim(oval, n)
    batch.reset(np.arange(n), s, ey, heading, speed)
    singles = [RacingSim(oval, 1) for _ in range(n)]
    for i, single in enumerate(singles):
        single.reset([0], s[i : i + 1], ey[i], heading[i], speed[i])
    for action in actions:
        batch.step(action)
        for i, single in enumerate(singles):
            single.step(action[i : i + 1])
    features = batch.features()
    for i, single in enumerate(singles):
        np.testing.assert_allclose(features[i], single.features()[0], rtol=1e-6, atol=1e-6)
        assert batch.distance[i] == pytest.approx(single.distance[0], abs=1e-9)


@pytest.mark.parametrize("n", [0, -2, 1.5, True, "3"])
def test_number_of_cars_is_checked(oval: Track, n: object) -> None:
    with pytest.raises(ValueError, match="number of cars"):
        RacingSim(oval, n)


def test_car_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="mass"):
        CarParams(mass=0.0)
    with pytest.raises(ValueError, match="kinematic_speed"):
        CarParams(kinematic_speed=8.0, dynamic_speed=6.0)
