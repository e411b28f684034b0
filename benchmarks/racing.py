"""Racing simulator speed and the car's and the AI's numbers.

    .venv/bin/python benchmarks/racing.py [--cars 1 8 32 128 512] [--seconds 2]
                                          [--start-speeds 144]

Prints, per number of cars N (one process, numpy only): car-steps per second of ``step``
(6 physics steps of 60 Hz) alone, and of ``step`` + ``features`` (the 36 observation features,
what an env step costs); then the car's 0-100 km/h time, 100-0 km/h braking distance and top
speed, the built-in AI's time on the target ``corner`` task at several aggressiveness levels
(and its mean over the demonstrations' range: the teacher the agents must beat),
and the demonstration generator's throughput. Target: thousands of car-steps/s per core.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from skillcritic.envs.racing.car import CarParams, CarState, integrate
from skillcritic.envs.racing.demos import DemoConfig, RacingDemoGenerator
from skillcritic.envs.racing.driver import ai_corner_run
from skillcritic.envs.racing.env import CORNER_REWARD
from skillcritic.envs.racing.sim import ACTION_DT, RacingSim
from skillcritic.envs.racing.track import target_track


def car_steps_per_second(n: int, seconds: float, features: bool) -> float:
    """Car-steps per second of N cars driving (throttle and weaving) on the target track."""
    track = target_track()
    sim = RacingSim(track, n)
    sim.reset(np.arange(n), np.linspace(0, track.length, n, endpoint=False), speed=30.0)
    rng = np.random.default_rng(0)
    actions = np.stack([rng.uniform(-0.2, 0.2, n), np.full(n, 0.4)], axis=1)
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or steps < 5:
        sim.step(actions)
        if features:
            sim.features()
        steps += 1
    return n * steps / elapsed


def straight_line() -> tuple[float, float, float]:
    """0-100 km/h (s), 100-0 km/h (m) and top speed (km/h) of the default car, no track."""
    p, dt = CarParams(), 1 / 60
    car = CarState(1)
    t = 0.0
    while car.vx[0] < 100 / 3.6:
        integrate(car, np.zeros(1), np.ones(1), p, dt)
        t += dt
    zero_to_100 = t
    for _ in range(60 * 120):  # two minutes of full throttle
        integrate(car, np.zeros(1), np.ones(1), p, dt)
    top = car.vx[0] * 3.6
    car = CarState(1)
    car.vx[:] = 100 / 3.6
    distance = 0.0
    while car.vx[0] > 0:
        integrate(car, np.zeros(1), -np.ones(1), p, dt)
        distance += car.vx[0] * dt
    return zero_to_100, distance, top


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cars", type=int, nargs="+", default=[1, 8, 32, 128, 512])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per configuration")
    parser.add_argument(
        "--start-speeds",
        type=float,
        nargs="+",
        default=[144.0],
        help="km/h: the teacher's mean corner time launched at each (the task's start is 144)",
    )
    args = parser.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, one process "
        f"(numpy elementwise ops run on one thread; OMP_NUM_THREADS={threads}), "
        f"{platform.processor() or platform.machine()}"
    )
    print(f"{'cars':>6} {'step only':>14} {'step+features':>14}   (car-steps/s)")
    for n in args.cars:
        step = car_steps_per_second(n, args.seconds, features=False)
        full = car_steps_per_second(n, args.seconds, features=True)
        print(f"{n:>6} {step:>14,.0f} {full:>14,.0f}")

    zero_to_100, braking, top = straight_line()
    print(
        f"car: 0-100 km/h {zero_to_100:.2f} s, 100-0 km/h {braking:.1f} m, top speed {top:.0f} km/h"
    )
    track = target_track()
    segment = track.segments["corner"]
    print(
        f"target track {track.length:.0f} m; corner segment {segment.start:.0f}-"
        f"{segment.end:.0f} m (start at 144 km/h, limit 60 s)"
    )
    for grip in (0.7, 0.8, 0.9, 0.95, 1.0):
        _, info = ai_corner_run(grip)
        seconds, wall = info.get("segment_time", float("nan")), info["wall_hit_time"]
        print(f"AI corner time at grip {grip:.2f}: {seconds:.1f} s (wall contact {wall:.1f} s)")
    # The teacher as it demonstrates: its grip is drawn uniformly from DemoConfig().grip.
    low, high = DemoConfig().grip
    grips = np.linspace(low, high, 11)
    for start_speed in args.start_speeds:
        times = [
            ai_corner_run(float(grip), start_speed)[1].get("segment_time", float("nan"))
            for grip in grips
        ]
        print(
            f"AI corner time from {start_speed:.0f} km/h over the demonstrations' grip "
            f"{low}-{high} (11 levels): mean {np.mean(times):.2f} s (return "
            f"{CORNER_REWARD - np.mean(times) / ACTION_DT:.1f}), median {np.median(times):.1f} s, "
            f"range {min(times):.1f}-{max(times):.1f} s"
        )

    generator = RacingDemoGenerator(0, DemoConfig())
    start = time.perf_counter()
    outcomes = [generator(i) for i in range(256)]
    elapsed = time.perf_counter() - start
    kept = [o for o in outcomes if o.demo is not None]
    attempts = sum(o.attempts for o in outcomes)
    print(
        f"demonstrations: {len(kept)} of 256 kept ({len(kept) / attempts:.0%} of {attempts} "
        f"attempts clean), {sum(len(o.demo.actions) for o in kept) / elapsed:,.0f} "
        "transitions/s on one process"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
