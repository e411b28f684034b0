"""Tests for skillcritic.envs.maze.demos: the PD waypoint controller demonstrations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import skillcritic  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)
from skillcritic.envs.maze.demos import (
    DemoConfig,
    DemoOutcome,
    MazeDemoGenerator,
    generate_demo,
    pd_action,
)
from skillcritic.envs.maze.layout import connected_components
from skillcritic.envs.maze.physics import MazePhysics
from skillcritic.envs.maze.planner import shortest_path

SEED = 2024
N_DEMOS = 30


@pytest.fixture(scope="module")
def outcomes() -> list[DemoOutcome]:
    config = DemoConfig()
    return [generate_demo(SEED, i, config) for i in range(N_DEMOS)]


def test_demos_are_successful_and_well_formed(outcomes: list[DemoOutcome]) -> None:
    config = DemoConfig()
    for i, outcome in enumerate(outcomes):
        demo = outcome.demo
        assert demo is not None, i
        assert demo.success is True
        assert outcome.attempts >= 1 and 1 <= outcome.successes <= outcome.attempts
        t = len(demo.actions)
        assert t > config.min_steps and t < config.max_steps
        assert demo.states.shape == (t + 1, 4) and demo.states.dtype == np.float32
        assert demo.actions.shape == (t, 2) and demo.actions.dtype == np.float32
        assert demo.rewards.shape == (t,)
        start = np.asarray(demo.options["start"], dtype=np.float64)
        goal = np.asarray(demo.options["goal"], dtype=np.float64)
        assert not np.array_equal(start, goal)
        # The initial position is the start cell centre plus uniform noise of half-width 0.1.
        offset = demo.states[0, :2].astype(np.float64) - start
        assert np.abs(offset).max() <= config.start_noise + 1e-6, offset
        # The controller stops once the goal (the last waypoint) is within reach_tol.
        end = np.linalg.norm(demo.states[-1, :2].astype(np.float64) - goal)
        assert end <= config.reach_tol + 1e-5, end
        # Sparse reward: 1 exactly on the steps ending within goal_radius of the goal.
        distance = np.linalg.norm(demo.states[1:, :2].astype(np.float64) - goal, axis=1)
        np.testing.assert_array_equal(demo.rewards, (distance <= config.goal_radius))
        assert demo.rewards[-1] == 1.0


def test_controller_success_rate(outcomes: list[DemoOutcome]) -> None:
    attempts = sum(o.attempts for o in outcomes)
    successes = sum(o.successes for o in outcomes)
    assert attempts >= N_DEMOS
    assert successes / attempts >= 0.95, (successes, attempts)
    assert all(o.physics_seconds > 0 for o in outcomes)


def test_demo_layouts_are_valid(outcomes: list[DemoOutcome]) -> None:
    config = DemoConfig()
    side = config.layout_size + 2
    for outcome in outcomes:
        options = outcome.demo.options
        walls = options["walls"]
        assert walls.dtype == np.uint8 and walls.shape == (side, side)
        assert set(np.unique(walls).tolist()) <= {0, 1}
        walls = walls.astype(bool)
        assert walls[0].all() and walls[-1].all() and walls[:, 0].all() and walls[:, -1].all()
        assert walls[1:-1, 1:-1].any() and not walls[1:-1, 1:-1].all()
        assert connected_components(walls).max() == 0  # one free component
        for cell in (options["start"], options["goal"]):
            r, c = (int(v) for v in cell)
            assert 0 < r < side - 1 and 0 < c < side - 1
            assert not walls[r, c]


def test_demo_states_stay_out_of_walls(outcomes: list[DemoOutcome]) -> None:
    for outcome in outcomes:
        walls = outcome.demo.options["walls"].astype(bool)
        cells = np.rint(outcome.demo.states[:, :2]).astype(int)
        assert not walls[cells[:, 0], cells[:, 1]].any()


def test_demo_replays_in_physics(outcomes: list[DemoOutcome]) -> None:
    for i, outcome in enumerate(outcomes):
        demo = outcome.demo
        assert np.abs(demo.actions).max() <= 1.0
        physics = MazePhysics(demo.options["walls"].astype(bool))
        physics.reset(demo.states[0, :2].astype(np.float64), demo.states[0, 2:].astype(np.float64))
        replay = [physics.state]
        for action in demo.actions:
            physics.step(action.astype(np.float64))
            replay.append(physics.state)
        np.testing.assert_allclose(np.array(replay), demo.states, rtol=0, atol=1e-5, err_msg=str(i))


def test_demos_reach_the_velocity_cap(outcomes: list[DemoOutcome]) -> None:
    # Long straight corridors let the controller (gain 10, damping 1) saturate: the replay test
    # above then also checks that the velocity clip was applied as physics.step applies it.
    top = max(np.abs(o.demo.states[:, 2:]).max() for o in outcomes)
    assert top > 5.0, top


def test_determinism() -> None:
    config = DemoConfig()
    a = generate_demo(7, 3, config).demo
    b = generate_demo(7, 3, config).demo
    for field in ("states", "actions", "rewards"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for key in ("walls", "start", "goal"):
        np.testing.assert_array_equal(a.options[key], b.options[key])
    for other in (generate_demo(7, 4, config).demo, generate_demo(8, 3, config).demo):
        assert not np.array_equal(a.options["walls"], other.options["walls"])
        assert not np.array_equal(a.states, other.states)  # shape or values differ

    generator = MazeDemoGenerator(7, config)
    e = generator(3)
    np.testing.assert_array_equal(e.demo.states, a.states)
    np.testing.assert_array_equal(e.demo.actions, a.actions)
    np.testing.assert_array_equal(e.demo.options["walls"], a.options["walls"])


def test_generator_is_picklable() -> None:
    import pickle

    generator = MazeDemoGenerator(1, DemoConfig(layout_size=8, min_steps=5))
    clone = pickle.loads(pickle.dumps(generator))
    assert clone == generator
    np.testing.assert_array_equal(clone(0).demo.states, generator(0).demo.states)


def test_small_config() -> None:
    config = DemoConfig(layout_size=6, min_steps=10, max_steps=800)
    outcome = generate_demo(0, 0, config)
    assert outcome.demo is not None
    assert outcome.demo.options["walls"].shape == (8, 8)
    assert config.min_steps < len(outcome.demo.actions) < config.max_steps


def test_failed_demo_returns_none() -> None:
    # 2 physics steps can never reach the goal: every try fails and no demo is returned.
    config = DemoConfig(min_steps=1, max_steps=2, max_tries=3)
    outcome = generate_demo(0, 0, config)
    assert outcome.demo is None
    assert outcome.attempts == 3 and outcome.successes == 0


def test_keep_unfinished_cuts_at_max_steps() -> None:
    # 60 steps cover ~2 cells: most goals are farther, and such demos are kept, cut at 60 steps,
    # marked unsuccessful (stored as truncated) and rewarded only where they pass the goal.
    config = DemoConfig(min_steps=50, max_steps=60, keep_unfinished=True)
    demos = [generate_demo(SEED, i, config).demo for i in range(8)]
    unfinished = [d for d in demos if not d.success]
    assert unfinished, "expected at least one demonstration that ran out of steps"
    for demo in unfinished:
        assert demo.actions.shape == (60, 2) and demo.states.shape == (61, 4)
        distance = np.linalg.norm(demo.states[1:, :2] - demo.options["goal"], axis=1)
        np.testing.assert_array_equal(demo.rewards, distance <= config.goal_radius)
    # Without keep_unfinished the same demonstrations need more tries or fail.
    strict = [
        generate_demo(SEED, i, dataclasses.replace(config, keep_unfinished=False)) for i in range(8)
    ]
    assert all(o.demo is None or o.demo.success for o in strict)


def test_waypoint_offset_shifts_the_path() -> None:
    # No noise, offset -0.3: the controller passes within reach_tol of (first path cell - 0.3).
    config = DemoConfig(waypoint_jitter=0.0, waypoint_offset=-0.3)
    demo = generate_demo(SEED, 0, config).demo
    walls = demo.options["walls"].astype(bool)
    path = shortest_path(walls, tuple(demo.options["start"]), tuple(demo.options["goal"]))
    assert len(path) > 2
    waypoint = path[1] - 0.3
    closest = np.linalg.norm(demo.states[:, :2] - waypoint, axis=1).min()
    assert closest <= config.reach_tol + 1e-5, closest
    # The unshifted cell centre is never reached that closely on the way past it.
    assert np.linalg.norm(demo.states[:, :2] - path[1], axis=1).min() > config.reach_tol


# --------------------------------------------------------------------------------------------
# pd_action and DemoConfig
# --------------------------------------------------------------------------------------------


def pd_both(waypoint, position, velocity, gain: float, damping: float) -> list[float]:
    return [
        pd_action(*axis, gain, damping) for axis in zip(waypoint, position, velocity, strict=True)
    ]


def test_pd_action_linear_region() -> None:
    # 10 * (1.0 - 0.95) - 1 * 0.1 = 0.4; 10 * (2.0 - 2.02) - 1 * (-0.3) = 0.1
    action = pd_both([1.0, 2.0], [0.95, 2.02], [0.1, -0.3], 10.0, 1.0)
    np.testing.assert_allclose(action, [0.4, 0.1], atol=1e-12)
    # gain 2, damping 0.5: 2 * 0.25 - 0.5 * 0.2 = 0.4; 2 * (-0.1) - 0.5 * (-1.0) = 0.3
    action = pd_both([0.25, 0.0], [0.0, 0.1], [0.2, -1.0], 2.0, 0.5)
    np.testing.assert_allclose(action, [0.4, 0.3], atol=1e-12)


def test_pd_action_saturates() -> None:
    # 10 * 3 - 0 = 30 -> 1; 10 * (-0.2) + 0.5 = -1.5 -> -1
    np.testing.assert_array_equal(
        pd_both([3.0, 0.0], [0.0, 0.2], [0.0, -0.5], 10.0, 1.0), [1.0, -1.0]
    )
    # At the waypoint, the damping term alone: -1 * 4 -> -1; -1 * (-0.25) = 0.25
    action = pd_both([0.0, 0.0], [0.0, 0.0], [4.0, -0.25], 10.0, 1.0)
    np.testing.assert_allclose(action, [-1.0, 0.25], atol=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_steps": 100, "max_steps": 100},
        {"min_steps": 200, "max_steps": 100},
        {"min_steps": 0},
        {"layout_size": 4},
        {"layout_size": 0},
    ],
)
def test_demo_config_rejects_invalid(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        DemoConfig(**kwargs)


def test_demo_config_accepts_boundaries() -> None:
    config = DemoConfig(layout_size=5, min_steps=99, max_steps=100)
    assert config.layout_size == 5
    assert dataclasses.replace(config, min_steps=1).min_steps == 1
