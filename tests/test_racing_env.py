"""``skillcritic/Racing-v0``: gymnasium API, tasks, bad input, and the vector env."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import skillcritic  # noqa: F401  (registers the envs)
from skillcritic.envs.racing.driver import AIDriver
from skillcritic.envs.racing.env import CORNER_REWARD, RacingEnv, RacingVectorEnv
from skillcritic.envs.racing.track import CORNER_SEGMENT, target_track


def test_check_env_and_spaces() -> None:
    env = gymnasium.make("skillcritic/Racing-v0")
    with pytest.warns(UserWarning, match="infinity"):  # unbounded features: accelerations etc.
        check_env(env.unwrapped, skip_render_check=True)
    assert env.observation_space["state"].shape == (36,)
    assert env.observation_space["state"].dtype == np.float32
    assert env.action_space.shape == (2,) and env.action_space.low.min() == -1
    obs, info = env.reset(seed=0)
    assert obs["state"].dtype == np.float32 and env.observation_space.contains(obs)
    assert info == {
        "success": False,
        "time": 0.0,
        "wall_hit_time": 0.0,
        "course_position": pytest.approx(target_track().segments[CORNER_SEGMENT].start),
        "lap_count": 0,
        "speed_kmh": pytest.approx(144.0),
    }
    state = obs["state"]
    assert state[3] == pytest.approx(40.0)  # vx: 144 km/h in m/s
    assert state[6] == pytest.approx(0.0, abs=1e-3) and state[7] == 0.0  # heading, no wall
    assert (state[9:22] > 0).all() and (state[9:22] <= 100).all()
    assert state[15] == pytest.approx(6.0 - 0.0, abs=0.3)  # 90 degrees: the left wall, 6 m


def test_corner_task_reward_and_termination_with_the_ai() -> None:
    env = RacingEnv(task="corner")
    env.reset(seed=0)
    driver = AIDriver(env.sim, 0.9)
    rewards = []
    for _ in range(600):
        _, reward, terminated, truncated, info = env.step(driver.act()[0])
        rewards.append(reward)
        if terminated or truncated:
            break
    steps = len(rewards)
    assert terminated and not truncated and info["success"]
    assert rewards[-1] == CORNER_REWARD - steps and not any(rewards[:-1])
    assert 15.0 < info["segment_time"] <= steps * 0.1 < 45.0  # the AI: about 27 s
    assert info["segment_time"] > (steps - 1) * 0.1
    assert info["wall_hit_time"] == 0.0


def test_corner_task_truncates_at_the_step_limit() -> None:
    env = gymnasium.make("skillcritic/Racing-v0", max_steps=5)
    env.reset(seed=0)
    for step in range(1, 6):
        _, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0]))
        assert reward == 0.0 and not terminated and truncated == (step == 5)
    assert not info["success"] and "segment_time" not in info and info["time"] == 0.5


def test_default_corner_limit_is_600_steps() -> None:
    env = RacingEnv()
    assert env.tasks.max_steps == 600
    assert RacingEnv(task="lap").tasks.max_steps == 2000


def test_lap_task_rewards_progress_and_penalises_walls() -> None:
    env = RacingEnv(task="lap")
    env.reset(seed=0)
    total = 0.0
    for _ in range(20):
        _, reward, *_ = env.step(np.array([0.0, 1.0]))
        total += reward
    assert total == pytest.approx(env.sim.distance[0])
    # steer hard into the wall at speed: contact costs reward
    penalised = []
    for _ in range(30):
        _, reward, _, _, info = env.step(np.array([1.0, 1.0]))
        if env.sim.hit[0]:
            penalised.append(reward)
    assert penalised and min(penalised) < 0 and info["wall_hit_time"] > 0


def test_lap_task_counts_a_lap() -> None:
    env = RacingEnv(task="lap", start_speed=100.0)
    env.reset(seed=0)
    driver = AIDriver(env.sim, 0.95)
    for _ in range(2000):
        _, _, terminated, truncated, info = env.step(driver.act()[0])
        if terminated or truncated:
            break
    assert terminated and info["success"] and info["lap_count"] == 1
    assert 50.0 < info["lap_time"] < 100.0 and info["wall_hit_time"] == 0.0


def test_actions_are_clipped_and_nan_is_refused() -> None:
    a, b = RacingEnv(), RacingEnv()
    a.reset(seed=0)
    b.reset(seed=0)
    obs_a = a.step(np.array([5.0, -7.0]))[0]
    obs_b = b.step(np.array([1.0, -1.0]))[0]
    np.testing.assert_array_equal(obs_a["state"], obs_b["state"])
    before = a.sim.features().copy()
    for bad in ([np.nan, 0.0], [0.0, np.inf], [0.0], [[0.0, 0.0, 0.0]]):
        with pytest.raises(ValueError, match="racing actions"):
            a.step(np.array(bad))
    np.testing.assert_array_equal(a.sim.features(), before)  # nothing reached the state
    np.testing.assert_array_equal(a.step([0.2, 0.5])[0]["state"], b.step([0.2, 0.5])[0]["state"])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown racing task"):
        RacingEnv(task="drift")
    with pytest.raises(ValueError, match="start_speed"):
        RacingEnv(start_speed=-1.0)
    with pytest.raises(ValueError, match="random_start"):
        RacingEnv(task="corner", random_start=True)
    with pytest.raises(ValueError, match="corner"):
        RacingEnv(task="corner", track=3)  # procedural tracks have no corner segment
    with pytest.raises(ValueError, match="render_mode"):
        RacingEnv(render_mode="human")
    for n in (0, -1, 2.5):
        with pytest.raises(ValueError, match="num_envs"):
            RacingVectorEnv(n)


def test_reset_seeds_the_random_start() -> None:
    env = RacingEnv(task="lap", random_start=True)
    first = env.reset(seed=3)[1]["course_position"]
    assert env.reset(seed=3)[1]["course_position"] == first
    assert env.reset(seed=4)[1]["course_position"] != first
    assert RacingEnv(task="lap").reset(seed=5)[1]["course_position"] == pytest.approx(0.0)


def test_render_draws_the_track_and_the_cars() -> None:
    env = RacingEnv(render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert max(frame.shape[:2]) == 480
    assert (frame == [230, 40, 40]).all(-1).sum() > 5  # the car
    assert RacingEnv().render() is None
    vector = RacingVectorEnv(3, render_mode="rgb_array", task="lap", random_start=True)
    vector.reset(seed=0)
    frame = vector.render()
    for colour in ([230, 40, 40], [40, 90, 230], [240, 200, 30]):
        assert (frame == colour).all(-1).sum() > 5


def assert_same(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, set(a) ^ set(b))
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert b.dtype == object and a.shape == b.shape, path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif a is None:
        assert b is None, path
    else:
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, (path, a.dtype, b.dtype)
        # equal up to rounding (SIMD code paths may differ between 1 and N cars on some CPUs)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=path)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_env_equals_single_envs(mode: AutoresetMode) -> None:
    kwargs = {"task": "lap", "random_start": True, "max_steps": 12}
    n = 3
    vector = gymnasium.make_vec(
        "skillcritic/Racing-v0",
        num_envs=n,
        vectorization_mode="vector_entry_point",
        autoreset_mode=mode,
        **kwargs,
    )
    assert isinstance(vector, RacingVectorEnv)
    sync = gymnasium.vector.SyncVectorEnv([lambda: RacingEnv(**kwargs)] * n, autoreset_mode=mode)
    assert vector.single_observation_space == sync.single_observation_space
    assert vector.action_space == sync.action_space
    assert_same(vector.reset(seed=7), sync.reset(seed=7))
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(30):
        actions = rng.uniform(-1, 1, (n, 2))
        actions[:, 1] = np.abs(actions[:, 1])
        out_vector, out_sync = vector.step(actions), sync.step(actions)
        assert_same(out_vector, out_sync)
        ends += out_sync[3].sum()
    assert ends >= n  # autoresets happened


def test_vector_env_without_autoreset() -> None:
    vector = RacingVectorEnv(2, autoreset_mode=AutoresetMode.DISABLED, max_steps=2)
    vector.reset(seed=0)
    vector.step(np.zeros((2, 2)))
    truncated = vector.step(np.zeros((2, 2)))[3]
    assert truncated.all()
    with pytest.raises(RuntimeError, match="reset"):
        vector.step(np.zeros((2, 2)))
    _, info = vector.reset(options={"reset_mask": np.array([True, False])})
    assert info["time"].tolist() == [0.0, 0.2]
    vector.reset(options={"reset_mask": np.array([False, True])})
    vector.step(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="racing actions"):
        vector.step(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="racing actions"):
        vector.step(np.zeros((3, 2)))
