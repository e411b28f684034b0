"""Racing demonstrations: the built-in AI driver from randomised starts, 10 s per episode.

Like the GTS demonstrations (built-in AI, ``c2`` sampler): each episode starts at a random
course position, speed (0-144 km/h), lateral offset (±80 % of the half-width) and heading
(±0.1 pi from the centreline) with a random aggressiveness (the share of the tyre grip the AI's
speed profile uses), and lasts 10 s (100 steps). Episodes that touch a wall are dropped and
retried from new start conditions (up to ``max_tries``).

A share ``target_fraction`` of the episodes drive on the target track, starting inside its
``corner`` segment; the others on one of ``n_tracks`` procedural tracks. Episodes are simulated
``batch`` cars at a time on one track (episode ``i`` is in batch ``i // batch``); every random
draw comes from ``(seed, batch)`` or ``(seed, i, attempt)``, so a dataset depends only on the
seed and the settings, not on how the episodes are spread over worker processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from time import perf_counter

import numpy as np

from skillcritic.data.collect import Demo, DemoOutcome
from skillcritic.envs.racing.car import CarParams
from skillcritic.envs.racing.driver import AIDriver
from skillcritic.envs.racing.sim import RacingSim
from skillcritic.envs.racing.track import CORNER_SEGMENT, Track, random_track, target_track

CAR_WIDTH = CarParams().width


@dataclass(frozen=True)
class DemoConfig:
    """How racing demonstrations are generated.

    Args:
        episode_steps: steps per demonstration (10 Hz).
        target_fraction: share of the batches driven on the target track (in its corner segment).
        n_tracks: procedural tracks the other batches are spread over.
        track_length, track_width: ranges of the procedural tracks' length and full width, m.
        speed: range of the start speed, km/h.
        lateral: start offset from the centreline, as a share of the half-width (±; clipped
            so that the car starts inside the walls).
        heading: start heading error, as a share of pi (±).
        grip: range of the AI's aggressiveness (share of the tyre grip its speed profile uses).
        batch: cars simulated together (one track per batch).
        max_tries: attempts per episode before it counts as failed (each from a new start).
    """

    episode_steps: int = 100
    target_fraction: float = 0.5
    n_tracks: int = 50
    track_length: tuple[float, float] = (1500.0, 3000.0)
    track_width: tuple[float, float] = (10.0, 14.0)
    speed: tuple[float, float] = (0.0, 144.0)
    lateral: float = 0.8
    heading: float = 0.1
    grip: tuple[float, float] = (0.7, 0.95)
    batch: int = 32
    max_tries: int = 5

    def __post_init__(self) -> None:
        for name in ("track_length", "track_width", "speed", "grip"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or not value[0] <= value[1]:
                raise ValueError(f"{name} must be a range [low, high], got {getattr(self, name)}")
            object.__setattr__(self, name, value)  # lists from a config become tuples
        if self.episode_steps < 1 or self.batch < 1 or self.max_tries < 1 or self.n_tracks < 1:
            raise ValueError("episode_steps, batch, max_tries and n_tracks must be >= 1")
        if not 0 <= self.target_fraction <= 1:
            raise ValueError(f"target_fraction must lie in [0, 1], got {self.target_fraction}")
        if not (self.grip[0] > 0 and self.grip[1] <= 1):
            raise ValueError(f"grip must lie in (0, 1], got {self.grip}")
        if self.speed[0] < 0 or not 0 <= self.lateral <= 1 or not 0 <= self.heading <= 0.5:
            raise ValueError("need speed >= 0, 0 <= lateral <= 1 and 0 <= heading <= 0.5")


@lru_cache(maxsize=16)
def demo_track(seed: int, track_id: int, config: DemoConfig) -> Track:
    """Procedural track ``track_id`` of the collection seeded with ``seed`` (-1: the target)."""
    if track_id < 0:
        return target_track()
    rng = np.random.default_rng([seed, track_id, 1])
    return random_track(rng, config.track_length, config.track_width)


def _starts(
    track: Track, on_target: bool, seed: int, episodes: np.ndarray, attempt: int, config: DemoConfig
) -> np.ndarray:
    """Start conditions ``[s, speed m/s, ey, heading, grip]`` (E, 5) of ``episodes``."""
    low, high = 0.0, track.length
    if on_target:
        segment = track.segments[CORNER_SEGMENT]
        low, high = segment.start, segment.end
    starts = np.empty((len(episodes), 5))
    for row, index in enumerate(episodes):
        rng = np.random.default_rng([seed, int(index), attempt])
        s = rng.uniform(low, high)
        half_width = track.half_width_at(np.array([s]))[0]
        inside = half_width - 0.5 * CAR_WIDTH  # the car's centre, with the car inside the walls
        starts[row] = (
            s,
            rng.uniform(*config.speed) / 3.6,
            np.clip(config.lateral * half_width * rng.uniform(-1.0, 1.0), -inside, inside),
            config.heading * math.pi * rng.uniform(-1.0, 1.0),
            rng.uniform(*config.grip),
        )
    return starts


def drive(track: Track, starts: np.ndarray, steps: int) -> tuple[np.ndarray, ...]:
    """The AI drives one car per row of ``starts`` for ``steps`` steps.

    Returns states (E, steps+1, 36), actions (E, steps, 2), progress rewards (E, steps), whether
    each car touched a wall, and the seconds spent simulating.
    """
    tic = perf_counter()
    n = len(starts)
    sim = RacingSim(track, n)
    sim.reset(np.arange(n), starts[:, 0], starts[:, 2], starts[:, 3], starts[:, 1])
    driver = AIDriver(sim, starts[:, 4])
    states = np.empty((n, steps + 1, 36), dtype=np.float32)
    actions = np.empty((n, steps, 2), dtype=np.float32)
    rewards = np.empty((n, steps), dtype=np.float32)
    hit = np.zeros(n, dtype=bool)
    states[:, 0] = sim.features()
    for t in range(steps):
        action = driver.act()
        before = sim.distance.copy()
        sim.step(action)
        actions[:, t] = action
        rewards[:, t] = sim.distance - before
        states[:, t + 1] = sim.features()
        hit |= sim.hit
    return states, actions, rewards, hit, perf_counter() - tic


@lru_cache(maxsize=2)
def simulate_batch(seed: int, batch: int, config: DemoConfig) -> tuple[DemoOutcome, ...]:
    """The outcomes of the episodes of ``batch`` (indices ``batch * config.batch`` onwards)."""
    rng = np.random.default_rng([seed, batch])
    on_target = bool(rng.random() < config.target_fraction)
    track_id = -1 if on_target else int(rng.integers(config.n_tracks))
    track = demo_track(seed, track_id, config)
    episodes = batch * config.batch + np.arange(config.batch)
    outcomes: list[DemoOutcome | None] = [None] * config.batch
    pending = np.arange(config.batch)
    seconds = 0.0
    for attempt in range(config.max_tries):
        starts = _starts(track, on_target, seed, episodes[pending], attempt, config)
        states, actions, rewards, hit, spent = drive(track, starts, config.episode_steps)
        seconds += spent
        for row, slot in enumerate(pending):
            if hit[row]:
                continue
            options = {
                "track": np.array([seed if track_id >= 0 else -1, track_id], dtype=np.int64),
                "start": starts[row, :4].copy(),
                "grip": np.array(starts[row, 4]),
            }
            demo = Demo(states[row], actions[row], rewards[row], False, options)
            outcomes[slot] = DemoOutcome(demo, attempt + 1, 1, 0.0)
        pending = pending[hit]
        if len(pending) == 0:
            break
    for slot in pending:
        outcomes[slot] = DemoOutcome(None, config.max_tries, 0, 0.0)
    for outcome in outcomes:
        outcome.physics_seconds = seconds / config.batch
    return tuple(outcomes)


@dataclass(frozen=True)
class RacingDemoGenerator:
    """Picklable ``index -> DemoOutcome`` for worker processes (demonstration ``index``)."""

    seed: int
    config: DemoConfig

    def __call__(self, index: int) -> DemoOutcome:
        batch, slot = divmod(index, self.config.batch)
        return simulate_batch(self.seed, batch, self.config)[slot]
