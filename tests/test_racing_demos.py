"""The built-in AI driver, the racing demonstrations, and ``skillcritic-data env=racing``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import minari
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from conftest import BIN
from skillcritic.cli import config_dir
from skillcritic.data.minari_io import minari_root
from skillcritic.data.windows import WindowDataModule
from skillcritic.envs.racing.demos import (
    DemoConfig,
    RacingDemoGenerator,
    demo_track,
    simulate_batch,
)
from skillcritic.envs.racing.driver import AIDriver, ai_corner_run, speed_profile
from skillcritic.envs.racing.sim import RacingSim
from skillcritic.envs.racing.track import CORNER_SEGMENT, random_track, target_track

SMALL = DemoConfig(batch=4, n_tracks=3, episode_steps=30)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ai_laps_random_tracks_without_walls(seed: int) -> None:
    track = random_track(np.random.default_rng(seed))
    sim = RacingSim(track, 2)
    sim.reset(np.arange(2), 0.0)  # standing starts
    driver = AIDriver(sim, np.array([0.7, 0.9]))
    for _ in range(1500):
        sim.step(driver.act())
        assert not sim.hit.any()
        if (sim.distance > track.length).all():
            break
    assert (sim.distance > track.length).all()


def test_speed_profile_respects_grip_and_braking() -> None:
    track = target_track()
    profile = speed_profile(track, RacingSim(track, 1).params, np.array([0.6, 0.9]))
    assert profile.shape == (2, track.n)
    assert (profile[0] <= profile[1] + 1e-9).all()  # more grip, never slower
    hairpin = int(np.argmax(np.abs(track.curvature)))
    lateral = profile[:, hairpin] ** 2 * abs(track.curvature[hairpin])
    assert (lateral < np.array([0.6, 0.9]) * 1.45 * 9.81 * 1.1).all()
    # braking: speed never drops faster than the brakes allow over one metre
    decel = (profile[:, :-1] ** 2 - profile[:, 1:] ** 2) / (2 * track.ds)
    assert decel.max() < 20.0


def test_ai_corner_time_on_the_target_task() -> None:
    times = {}
    for grip in (0.8, 0.95):
        terminated, info = ai_corner_run(grip)
        assert terminated and info["wall_hit_time"] == 0.0
        times[grip] = info["segment_time"]
    assert 20.0 < times[0.95] < times[0.8] < 35.0
    # launched slower, the same driver needs longer for the same segment
    terminated, info = ai_corner_run(0.8, start_speed=100.0)
    assert terminated and info["segment_time"] > times[0.8]


def test_demonstrations_are_well_formed() -> None:
    outcomes = [RacingDemoGenerator(3, SMALL)(i) for i in range(8)]
    kept = [o for o in outcomes if o.demo is not None]
    assert len(kept) >= 6
    for outcome in outcomes:
        assert 1 <= outcome.attempts <= SMALL.max_tries and outcome.physics_seconds > 0
        assert outcome.successes == (outcome.demo is not None)
    for outcome in kept:
        demo = outcome.demo
        assert demo.states.shape == (31, 36) and demo.states.dtype == np.float32
        assert demo.actions.shape == (30, 2) and demo.actions.dtype == np.float32
        assert np.abs(demo.actions).max() <= 1.0 and demo.rewards.shape == (30,)
        assert not demo.success  # 10 s episodes end by their time limit
        assert not demo.states[:, 7].any()  # wall hits are dropped
        s, speed, ey, heading = demo.options["start"]
        assert 0 <= speed <= 40.0 + 1e-9 and abs(heading) <= 0.1 * np.pi
        assert 0.7 <= float(demo.options["grip"]) <= 0.95
        np.testing.assert_allclose(demo.states[0, 3], speed, atol=1e-4)
        np.testing.assert_allclose(demo.states[0, 6], heading, atol=1e-3)
        track_seed, track_id = demo.options["track"]
        track = demo_track(int(track_seed), int(track_id), SMALL)
        if track_id < 0:
            segment = track.segments[CORNER_SEGMENT]
            assert segment.start <= s <= segment.end
        assert abs(ey) <= 0.8 * track.half_width.max()


def test_demonstrations_replay_in_the_simulator() -> None:
    demo = RacingDemoGenerator(5, SMALL)(1).demo
    track_seed, track_id = demo.options["track"]
    sim = RacingSim(demo_track(int(track_seed), int(track_id), SMALL), 1)
    s, speed, ey, heading = demo.options["start"]
    sim.reset([0], [s], ey, heading, speed)
    np.testing.assert_allclose(sim.features()[0], demo.states[0], atol=1e-5)
    for t, action in enumerate(demo.actions):
        sim.step(action[None].astype(np.float64))
        np.testing.assert_allclose(sim.features()[0], demo.states[t + 1], atol=2e-3, rtol=1e-3)


def test_demonstrations_are_reproducible_and_independent_of_order() -> None:
    a = RacingDemoGenerator(9, SMALL)(6).demo
    simulate_batch.cache_clear()
    b = RacingDemoGenerator(9, SMALL)(6).demo
    np.testing.assert_array_equal(a.states, b.states)
    np.testing.assert_array_equal(a.actions, b.actions)
    other = RacingDemoGenerator(10, SMALL)(6).demo
    assert not np.array_equal(a.options["start"], other.options["start"])


def test_demo_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="grip"):
        DemoConfig(grip=(0.5, 1.5))
    with pytest.raises(ValueError, match="range"):
        DemoConfig(speed=(100.0, 10.0))
    with pytest.raises(ValueError, match="target_fraction"):
        DemoConfig(target_fraction=2.0)
    assert DemoConfig(speed=[0, 50]).speed == (0.0, 50.0)  # config lists become tuples


def test_racing_config_composes() -> None:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="collect", overrides=["env=racing", "data=small"])
        lap = compose(config_name="train_rl", overrides=["env=racing", "env.task=lap"])
        prior = compose(config_name="train_prior", overrides=["env=racing"])
    assert cfg.env.task == "corner" and cfg.env.family == "racing"
    assert cfg.data.dataset_id == "skillcritic/racing-demos-small-v0"
    assert cfg.env.normalize_states is True and cfg.env.image is False
    assert lap.env.task == "lap" and prior.env.prior_env == "racing"
    DemoConfig(**{k: v for k, v in cfg.env.demos.items() if k != "episodes"})


def test_collect_racing_dataset_round_trip(tmp_path: Path) -> None:
    args = [
        "env=racing",
        "data=small",
        "data.episodes=6",
        "data.workers=1",
        "env.demos.batch=3",
        "env.demos.episode_steps=20",
        "paths.data_dir=ds",
    ]
    environ = os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    done = subprocess.run(
        [str(BIN / "skillcritic-data"), *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "skillcritic/racing-demos-small-v0"
    with minari_root(tmp_path / "ds"):
        dataset = minari.load_dataset("skillcritic/racing-demos-small-v0")
    assert 4 <= dataset.total_episodes <= 6
    assert dataset.observation_space.shape == (36,)
    for episode in dataset.iterate_episodes():
        assert episode.observations.shape == (21, 36) and episode.actions.shape == (20, 2)
        assert episode.truncations[-1] and not episode.terminations.any()
        assert np.isfinite(episode.observations).all()
    windows = WindowDataModule(tmp_path / "ds", dataset.spec.dataset_id, 10, normalize_states=True)
    windows.setup("fit")
    mean, std = windows.state_stats
    assert mean.shape == std.shape == (36,) and (std > 0).all()
