"""``skillcritic/Racing-v0``: the racing tasks as a gymnasium env, and a ``VectorEnv`` that steps
N cars in one numpy call.

Tasks (``task=``):

- ``corner`` (the GTS corner-2 task): start at the beginning of the target track's ``corner``
  segment, on the centreline at ``start_speed`` km/h; reward ``600 - steps`` on the step that
  reaches the segment's end (``terminated``), 0 on every other step; ``truncated`` after
  ``max_steps`` (600 = 60 s) steps. Wall contact ends nothing; it only costs time.
- ``lap``: start on the start line (or anywhere with ``random_start``) at ``start_speed``;
  dense reward = metres of progress along the track minus a wall penalty
  ``wall_penalty * contact seconds * (speed in km/h)²`` (the GTS progress reward);
  ``terminated`` after ``laps`` laps, ``truncated`` after ``max_steps`` (2000) steps.

``info`` (every step and reset): ``success`` (the segment end or the laps were reached),
``time`` (s since reset), ``wall_hit_time`` (s of wall
contact in this episode), ``course_position`` (m), ``lap_count`` (start-line crossings, as GTS
counts them) and ``speed_kmh``; once ``success``, also ``segment_time`` (corner) or
``lap_time`` (lap): when the goal was crossed, interpolated within the step (s).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from skillcritic.envs.racing.car import CarParams
from skillcritic.envs.racing.render import TrackPainter
from skillcritic.envs.racing.sim import ACTION_DT, LIDAR_ANGLES_DEG, N_FEATURES, RacingSim
from skillcritic.envs.racing.track import (
    CORNER_SEGMENT,
    LIDAR_RANGE,
    Track,
    random_track,
    target_track,
)

TASKS = ("corner", "lap")
DEFAULT_MAX_STEPS = {"corner": 600, "lap": 2000}
CORNER_REWARD = 600.0  # reward at the segment end: CORNER_REWARD - steps
WALL_PENALTY = 10.0 / (2000.0 * 10.0 / 9.3)  # GTS: per contact second and (km/h)²


def observation_space() -> spaces.Dict:
    """One car's observation: ``state`` = the 36 GTS features (``sim.FEATURE_NAMES``)."""
    low = np.full(N_FEATURES, -np.inf, dtype=np.float32)
    high = np.full(N_FEATURES, np.inf, dtype=np.float32)
    low[7], high[7] = 0.0, 1.0  # wall-hit flag
    lidar = slice(9, 9 + len(LIDAR_ANGLES_DEG))
    low[lidar], high[lidar] = 0.0, LIDAR_RANGE
    return spaces.Dict(state=spaces.Box(low, high, dtype=np.float32))


def make_track(track: str | int | Track) -> Track:
    """``"target"``, an integer seed of a procedural track, or a ``Track``."""
    if isinstance(track, Track):
        return track
    if track == "target":
        return target_track()
    if isinstance(track, int | np.integer) and not isinstance(track, bool):
        return random_track(np.random.default_rng(int(track)))
    raise ValueError(f"track must be 'target', an integer seed or a Track, got {track!r}")


def check_actions(actions: np.ndarray, n: int) -> np.ndarray:
    """``actions`` as float64 (n, 2), clipped to [-1, 1]; non-finite values are a ValueError."""
    array = np.asarray(actions, dtype=np.float64)
    if array.shape not in ((n, 2), (2,) if n == 1 else (n, 2)):
        raise ValueError(f"racing actions must have shape ({n}, 2) or (2,), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"racing actions must be finite numbers, got {actions!r}")
    return np.clip(array.reshape(n, 2), -1.0, 1.0)


class RacingTasks:
    """The task logic for N cars on one track: starts, rewards, ends and infos (vectorised)."""

    def __init__(
        self,
        n_cars: int,
        task: str = "corner",
        track: str | int | Track = "target",
        start_speed: float = 144.0,
        max_steps: int | None = None,
        laps: int = 1,
        random_start: bool = False,
        wall_penalty: float = WALL_PENALTY,
        car: CarParams | dict | None = None,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown racing task {task!r}; use one of {TASKS}")
        self.task = task
        self.track = make_track(track)
        if task == "corner" and CORNER_SEGMENT not in self.track.segments:
            raise ValueError(f"the corner task needs a track with a {CORNER_SEGMENT!r} segment")
        if not (math.isfinite(start_speed) and start_speed >= 0):
            raise ValueError(f"start_speed must be >= 0 km/h, got {start_speed!r}")
        self.max_steps = DEFAULT_MAX_STEPS[task] if max_steps is None else int(max_steps)
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps!r}")
        if not isinstance(laps, int) or laps < 1:
            raise ValueError(f"laps must be an integer >= 1, got {laps!r}")
        if random_start and task != "lap":
            raise ValueError("random_start is a lap task option (the corner task starts fixed)")
        self.start_speed = start_speed / 3.6
        self.random_start = random_start
        self.wall_penalty = wall_penalty
        params = CarParams(**car) if isinstance(car, dict) else car
        self.sim = RacingSim(self.track, n_cars, params)
        n = self.sim.n
        if task == "corner":
            segment = self.track.segments[CORNER_SEGMENT]
            self.start_s, self.goal = segment.start, segment.end - segment.start
        else:
            self.start_s, self.goal = 0.0, laps * self.track.length
        self.steps = np.zeros(n, dtype=np.int64)
        self.wall_time = np.zeros(n)
        self.finish_time = np.full(n, np.nan)
        self.success = np.zeros(n, dtype=bool)
        self.origin = np.zeros(n)  # course position at reset

    @property
    def n(self) -> int:
        return self.sim.n

    def reset(self, cars: np.ndarray, rngs: list[np.random.Generator]) -> None:
        """Start a new episode for ``cars``; ``rngs[i]`` draws car ``cars[i]``'s random start."""
        cars = np.asarray(cars, dtype=np.int64)
        s = np.full(len(cars), self.start_s)
        if self.random_start:
            s = np.array([rng.uniform(0.0, self.track.length) for rng in rngs])
        self.sim.reset(cars, s, speed=self.start_speed)
        self.origin[cars] = s
        self.steps[cars] = 0
        self.wall_time[cars] = 0.0
        self.finish_time[cars] = np.nan
        self.success[cars] = False

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step all cars with checked actions (N, 2); rewards, terminated, truncated (N,)."""
        before = self.sim.distance.copy()
        self.sim.step(actions)
        after = self.sim.distance
        self.steps += 1
        self.wall_time += self.sim.contact_time
        crossed = ~self.success & (after >= self.goal)
        fraction = np.clip((self.goal - before) / np.maximum(after - before, 1e-9), 0.0, 1.0)
        self.finish_time = np.where(
            crossed, (self.steps - 1 + fraction) * ACTION_DT, self.finish_time
        )
        self.success |= crossed
        if self.task == "corner":
            rewards = np.where(crossed, CORNER_REWARD - self.steps, 0.0)
        else:
            speed_kmh = 3.6 * self.sim.speed
            rewards = (after - before) - self.wall_penalty * self.sim.contact_time * speed_kmh**2
        truncated = (self.steps >= self.max_steps) & ~crossed
        return rewards.astype(np.float64), crossed, truncated

    def observations(self) -> np.ndarray:
        return self.sim.features()

    @property
    def finish_key(self) -> str:
        """The info key of the time at the goal (only for cars that reached it)."""
        return "segment_time" if self.task == "corner" else "lap_time"

    def infos(self) -> dict[str, np.ndarray]:
        """Per-car infos (N,); ``finish_key`` holds NaN for cars without ``success``."""
        return {
            "success": self.success.copy(),
            "time": self.steps * ACTION_DT,
            self.finish_key: self.finish_time.copy(),
            "wall_hit_time": self.wall_time.copy(),
            "course_position": self.sim.s.copy(),
            "lap_count": np.floor((self.origin + self.sim.distance) / self.track.length).astype(
                np.int64
            ),
            "speed_kmh": 3.6 * self.sim.speed,
        }


class _RacingView:
    """What the single and the vector env share: their track, simulator and frames."""

    tasks: RacingTasks
    render_mode: str | None
    _painter: TrackPainter | None = None

    @property
    def track(self) -> Track:
        return self.tasks.track

    @property
    def sim(self) -> RacingSim:
        return self.tasks.sim

    def render(self) -> np.ndarray | None:
        """A top-down RGB frame of the whole track with every car (``rgb_array``)."""
        if self.render_mode != "rgb_array":
            return None
        if self._painter is None:
            self._painter = TrackPainter(self.track, segment=CORNER_SEGMENT)
        car = self.sim.car
        return self._painter(np.stack([car.x, car.y], axis=1), car.yaw)


class RacingEnv(_RacingView, gymnasium.Env):
    """One car on the target track; the ``corner`` or ``lap`` task (see the module docstring).

    Observation: a Dict with ``state`` = the 36 GTS features, float32 (``RacingSim.features``).
    Action: ``[steer, pedal]`` in [-1, 1]² (steer × 30° road-wheel angle, left positive; pedal
    > 0 throttle, < 0 brake); values outside the box are clipped, non-finite ones rejected.

    Args:
        task: ``corner`` or ``lap``.
        track: ``"target"`` or the integer seed of a procedural track (``lap`` only).
        start_speed: km/h at reset.
        max_steps: steps before ``truncated`` (default 600 corner, 2000 lap).
        laps: laps to drive in the ``lap`` task.
        random_start: ``lap``: start at a uniformly random course position.
        wall_penalty: ``lap``: penalty per second of wall contact and (km/h)².
        car: ``CarParams`` (or a dict of its fields) replacing the default GT car.
        render_mode: ``"rgb_array"`` for ``render()`` top-down frames.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"unsupported render_mode {render_mode!r}; use 'rgb_array' or None")
        self.tasks = RacingTasks(1, **kwargs)
        self.render_mode = render_mode
        self.observation_space = observation_space()
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)

    def _info(self) -> dict[str, Any]:
        info = {key: value[0].item() for key, value in self.tasks.infos().items()}
        if not info["success"]:
            del info[self.tasks.finish_key]
        return info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self.tasks.reset(np.zeros(1, dtype=np.int64), [self.np_random])
        return {"state": self.tasks.observations()[0]}, self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        rewards, terminated, truncated = self.tasks.step(check_actions(action, 1))
        obs = {"state": self.tasks.observations()[0]}
        return obs, float(rewards[0]), bool(terminated[0]), bool(truncated[0]), self._info()


class RacingVectorEnv(_RacingView, gymnasium.vector.VectorEnv):
    """``num_envs`` cars on one track stepped together (one numpy call per physics step).

    Behaves like ``SyncVectorEnv`` over ``num_envs`` ``RacingEnv``s with the same arguments
    (same observations, rewards, flags and infos, ``reset(seed=s)`` seeding car i with
    ``s + i``), including the ``autoreset_mode`` (``NEXT_STEP`` by default, ``SAME_STEP`` with
    ``final_obs`` / ``final_info``, or ``DISABLED`` with ``reset(options={"reset_mask": m})``).
    Other keyword arguments are those of ``RacingEnv``.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array"],
        "render_fps": 10,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(num_envs, int | np.integer) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unsupported render_mode {render_mode!r}; use 'rgb_array' or None")
        self.num_envs = int(num_envs)
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = render_mode
        self.tasks = RacingTasks(self.num_envs, **kwargs)
        self.single_observation_space = observation_space()
        self.single_action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rngs = [seeding.np_random()[0] for _ in range(self.num_envs)]
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def _infos(self, cars: np.ndarray | None = None) -> dict[str, Any]:
        """The infos of ``cars`` (a mask; all cars by default) as ``SyncVectorEnv`` batches
        them: ``key`` (N,) and ``_key`` the mask of the cars that have it."""
        cars = np.ones(self.num_envs, dtype=bool) if cars is None else cars
        infos: dict[str, Any] = {}
        finish = self.tasks.finish_key
        for key, value in self.tasks.infos().items():
            has = cars & self.tasks.success if key == finish else cars
            if has.any():
                infos[key] = np.where(has, value, np.zeros_like(value))
                infos[f"_{key}"] = has
        return infos

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset all cars (or, with ``options={"reset_mask": m}``, those where ``m`` is true)."""
        mask = np.ones(self.num_envs, dtype=bool)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
            if mask.shape != (self.num_envs,):
                raise ValueError(f"reset_mask must have shape ({self.num_envs},)")
        if isinstance(seed, int | np.integer):
            seed = [int(seed) + i for i in range(self.num_envs)]
        if seed is not None:
            if len(seed) != self.num_envs:
                raise ValueError(f"need {self.num_envs} seeds, got {len(seed)}")
            for i, s in enumerate(seed):
                if s is not None and mask[i]:
                    self._rngs[i] = seeding.np_random(s)[0]
        cars = np.flatnonzero(mask)
        self.tasks.reset(cars, [self._rngs[i] for i in cars])
        self._needs_reset[cars] = False
        return {"state": self.tasks.observations()}, self._infos()

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = check_actions(actions, self.num_envs)
        if self.autoreset_mode == AutoresetMode.DISABLED and self._needs_reset.any():
            raise RuntimeError("some cars' episodes ended: reset them (reset_mask) before stepping")
        resetting = (
            self._needs_reset.copy() if self.autoreset_mode == AutoresetMode.NEXT_STEP else None
        )
        rewards, terminated, truncated = self.tasks.step(actions)
        done = terminated | truncated
        infos: dict[str, Any] = {}
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            # Cars whose episode ended last step start a new one instead of this step.
            cars = np.flatnonzero(resetting)
            self.tasks.reset(cars, [self._rngs[i] for i in cars])
            rewards[cars] = 0.0
            terminated[cars] = truncated[cars] = False
            self._needs_reset = terminated | truncated
        elif self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i, state in zip(np.flatnonzero(done), self.tasks.observations()[done], strict=True):
                final_obs[i] = {"state": state}
            infos = {"final_obs": final_obs, "_final_obs": done.copy()}
            infos |= {"final_info": self._infos(done), "_final_info": done.copy()}
            cars = np.flatnonzero(done)
            self.tasks.reset(cars, [self._rngs[i] for i in cars])
        else:
            self._needs_reset = done
        obs = {"state": self.tasks.observations()}
        return obs, rewards, terminated, truncated, infos | self._infos()
