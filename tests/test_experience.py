"""skillcritic.rl.experience: the schedule, and the collector + replay + update stream over the
real maze (2 envs, 30-step episodes) with small untrained agents."""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch
from torch import Tensor

import skillcritic  # noqa: F401  (registers the maze)
from skillcritic.models.skills import SkillSpec
from skillcritic.prior.module import SkillPriorModule, spec_dict
from skillcritic.rl.agents import AGENT_PRIORS, AgentSpec, SkillAgent, build_agent
from skillcritic.rl.collector import CollectorOutput
from skillcritic.rl.experience import Experience, Schedule, make_vector_env

H = 4
N_ENVS = 2
EPISODE = 30  # max_episode_steps of the maze in these tests


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- helpers


def small_agent(name: str, horizon: int = H, seed: int = 0) -> SkillAgent:
    torch.manual_seed(seed)
    variant = AGENT_PRIORS[name]
    prior = None
    if variant is not None:
        spec = SkillSpec(
            variant=variant,
            state_dim=4,
            action_dim=2,
            image=True,
            horizon=1 if variant == "flat" else horizon,
            hidden=32,
            prior_layers=2,
        )
        prior = SkillPriorModule(spec_dict(spec)).eval()
    spec = AgentSpec(
        name, 4, 2, policy_hidden=32, critic_hidden=32, ll_critic_hidden=32, kl_samples=2
    )
    return build_agent(spec, prior)


def maze_envs(episode: int = EPISODE) -> gymnasium.vector.SyncVectorEnv:
    return make_vector_env(
        lambda: gymnasium.make("skillcritic/Maze-v0", task="spirl", max_episode_steps=episode),
        N_ENVS,
    )


def schedule(**kwargs: Any) -> Schedule:
    fields: dict[str, Any] = dict(
        total_env_steps=96,
        epoch_env_steps=96,
        warmup_env_steps=24,
        batch_size=8,
        hl_capacity=1000,
        ll_capacity=2000,
    )
    return Schedule(**(fields | kwargs))


def make_experience(
    name: str = "skill_critic", horizon: int = H, seed: int = 0, **kwargs: Any
) -> Experience:
    return Experience(small_agent(name, horizon), maze_envs(), schedule(**kwargs), seed)


class StepLog:
    """Wraps ``experience.collector.step``: env steps before each call, rows it returned, the
    agent's stage while it ran, and the batches yielded after it."""

    def __init__(self, experience: Experience, monkeypatch: pytest.MonkeyPatch) -> None:
        self.experience = experience
        self.calls: list[dict[str, Any]] = []
        original = experience.collector.step

        def step(n_steps: int) -> CollectorOutput:
            before = experience.env_steps
            out = original(n_steps)
            self.calls.append(
                {
                    "before": before,
                    "hl": len(out.hl["reward"]),
                    "ll": len(out.ll["reward"]),
                    "stage": experience.agent.stage,
                    "batches": 0,
                }
            )
            return out

        monkeypatch.setattr(experience.collector, "step", step)

    def run(self) -> list[dict[str, dict[str, Tensor]]]:
        batches = []
        for batch in self.experience.batches():
            self.calls[-1]["batches"] += 1
            batches.append(batch)
        return batches


def all_arrays(buffer: Any) -> dict[str, np.ndarray]:
    return {name: t.numpy() for name, t in buffer.state_dict()["fields"].items()}


# ---------------------------------------------------------------------- the schedule


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"total_env_steps": 0}, "total_env_steps must be >= 1"),
        ({"epoch_env_steps": 0}, "epoch_env_steps must be >= 1"),
        ({"hl_capacity": 7}, "hl_capacity=7 is smaller than one batch"),
        ({"ll_capacity": 4}, "ll_capacity=4 is smaller than one batch"),
        ({"warmup_env_steps": -1}, "warm-up and warm-start lengths must be >= 0"),
        ({"warm_start_env_steps": -8}, "warm-up and warm-start lengths must be >= 0"),
        ({"updates_per_hl_step": 0.0}, "updates_per_hl_step must be > 0"),
        ({"updates_per_hl_step": -1.0}, "updates_per_hl_step must be > 0"),
    ],
)
def test_schedule_refuses(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        schedule(**kwargs)


def test_schedule_stage() -> None:
    s = schedule(warmup_env_steps=10, warm_start_env_steps=20)
    assert [s.stage(t) for t in (0, 9, 10, 29)] == ["warm_start"] * 4
    assert [s.stage(t) for t in (30, 31, 10_000)] == ["hybrid"] * 3
    s = schedule(warmup_env_steps=10, warm_start_env_steps=0)
    assert s.stage(9) == "warm_start" and s.stage(10) == "hybrid"
    assert schedule(warmup_env_steps=0).stage(0) == "hybrid"
    schedule(batch_size=8, hl_capacity=8, ll_capacity=8, warmup_env_steps=0)  # edges are fine


# ---------------------------------------------------------------------- the stream


@pytest.mark.parametrize("updates_per_hl_step", [1.0, 0.5, 2.0])
def test_batches_follow_the_schedule_and_nothing_is_dropped(
    updates_per_hl_step: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    experience = make_experience(
        updates_per_hl_step=updates_per_hl_step,
        warmup_env_steps=24,
        warm_start_env_steps=24,
        total_env_steps=128,  # 64 steps per env: two 30-step episodes and a bit
        epoch_env_steps=128,
    )
    log = StepLog(experience, monkeypatch)
    batches = log.run()
    sched = experience.schedule
    assert experience.env_steps == 128
    assert experience.collector.episodes == 2 * N_ENVS

    # no batch during the warm-up; afterwards updates_per_hl_step per new HL transition
    due = 0.0
    for call in log.calls:
        assert call["stage"] == sched.stage(call["before"])
        if call["before"] < sched.warmup_env_steps:
            assert call["batches"] == 0
            continue
        due += call["hl"] * updates_per_hl_step
        assert call["batches"] == int(due)
        due -= int(due)
    post_warmup = sum(c["hl"] for c in log.calls if c["before"] >= sched.warmup_env_steps)
    assert len(batches) == int(post_warmup * updates_per_hl_step) > 0
    assert experience.updates_due == pytest.approx(due)
    assert {c["stage"] for c in log.calls} == {"warm_start", "hybrid"}

    # every HL transition and every LL transition is stored
    collector_state = experience.collector.state_dict()
    assert experience.hl_buffer is not None and experience.ll_buffer is not None
    in_flight = int((collector_state["skill_steps"] > 0).sum())
    pending = int(collector_state["pending"].sum())
    assert len(experience.hl_buffer) == sum(c["hl"] for c in log.calls)
    assert len(experience.hl_buffer) == experience.collector.hl_steps - in_flight
    assert len(experience.ll_buffer) == sum(c["ll"] for c in log.calls)
    assert len(experience.ll_buffer) == experience.env_steps - pending

    # compact storage; batch shapes and keys
    for buffer in (experience.hl_buffer, experience.ll_buffer):
        fields = buffer.fields
        assert fields["view"] == ((2, 3, 32, 32), np.dtype(np.uint8))
        assert fields["next_view"] == ((2, 3, 32, 32), np.dtype(np.uint8))
        assert all(dtype != np.float64 for _, dtype in fields.values())
    for batch in batches:
        assert set(batch) == {"hl", "ll"}
        for level in ("hl", "ll"):
            assert all(len(t) == 8 for t in batch[level].values())
            assert all(t.dtype != torch.float64 for t in batch[level].values())
            assert batch[level]["view"].dtype == torch.uint8
        assert batch["ll"]["k"].dtype == torch.int64


def test_spirl_stream_has_only_hl_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    experience = make_experience("spirl_cl", total_env_steps=64, epoch_env_steps=64)
    calls: list[int] = []
    original = experience.agent.hl_act

    def hl_act(obs: dict[str, Tensor], deterministic: bool = False) -> Tensor:
        calls.append(experience.env_steps)
        return original(obs, deterministic)

    monkeypatch.setattr(experience.agent, "hl_act", hl_act)
    batches = list(experience.batches())
    assert batches and all(set(batch) == {"hl"} for batch in batches)
    assert all(len(t) == 8 for batch in batches for t in batch["hl"].values())
    assert experience.ll_buffer is None and experience.hl_buffer is not None
    assert set(experience.hl_buffer.fields) == {
        "state",
        "view",
        "next_state",
        "next_view",
        "z",
        "reward",
        "terminated",
        "truncated",
        "ref",  # the frozen prior's [μ, log σ] at obs and next obs, cached at collection
        "next_ref",
    }
    assert experience.hl_buffer.fields["z"] == ((10,), np.dtype(np.float32))
    assert experience.hl_buffer.fields["ref"] == ((20,), np.dtype(np.float32))
    # skill agents act with their policy during the warm-up as well
    assert calls[0] == 0 and min(calls) < experience.schedule.warmup_env_steps


@pytest.mark.parametrize(
    ("epoch", "stops"),
    [(24, [24, 48, 60, 60]), (20, [20, 40, 60, 60]), (7, [8, 14, 22, 28])],
)
def test_each_iteration_is_one_epoch(
    epoch: int, stops: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # an iteration collects H steps per env per call, fewer in the last call of the epoch, and
    # stops at the first count (a multiple of the 2 envs) that reaches the next multiple of
    # epoch_env_steps, or total_env_steps = 60
    experience = make_experience(
        "spirl_cl", total_env_steps=60, epoch_env_steps=epoch, warmup_env_steps=16
    )
    sizes: list[int] = []
    original = experience.collector.step

    def step(n_steps: int) -> CollectorOutput:
        sizes.append(n_steps)
        return original(n_steps)

    monkeypatch.setattr(experience.collector, "step", step)
    seen = []
    for _ in stops:
        before = experience.env_steps
        list(experience.batches())
        seen.append(experience.env_steps)
        end = min(60, (before // epoch + 1) * epoch)
        if before < 60:
            assert before < end <= experience.env_steps < end + N_ENVS
    assert seen == stops
    assert sizes and max(sizes) == H and min(sizes) >= 1


def test_sac_warmup_acts_uniformly_then_from_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    warmup = 10
    experience = make_experience(
        "sac", total_env_steps=20, epoch_env_steps=20, warmup_env_steps=warmup
    )
    agent = experience.agent
    assert agent.horizon == 1 and agent.random_warmup and not agent.uses_views
    policy_calls: list[int] = []

    def hl_act(obs: dict[str, Tensor], deterministic: bool = False) -> Tensor:
        policy_calls.append(experience.env_steps)
        assert set(obs) == {"state"}
        return torch.full((len(obs["state"]), 2), 0.25)

    monkeypatch.setattr(agent, "hl_act", hl_act)
    list(experience.batches())
    assert experience.hl_buffer is not None and experience.ll_buffer is None
    assert set(experience.hl_buffer.fields) == {
        "state",
        "next_state",
        "z",
        "reward",
        "terminated",
        "truncated",
    }
    z = all_arrays(experience.hl_buffer)["z"]
    assert z.shape == (20, 2)
    acting_step = N_ENVS * (np.arange(20) // N_ENVS)  # env steps when each row's action was chosen
    random_rows = z[acting_step < warmup]
    assert len(random_rows) == warmup
    assert np.all(np.abs(random_rows) <= 1.0)
    assert not np.any(random_rows == 0.25)
    assert len(np.unique(random_rows)) == random_rows.size  # uniform samples, all different
    assert (random_rows < 0).any() and (random_rows > 0).any()
    np.testing.assert_array_equal(z[acting_step >= warmup], 0.25)
    assert policy_calls and min(policy_calls) == warmup


@pytest.mark.parametrize("horizon", [4, 5])
def test_episode_ends_are_truncations(horizon: int) -> None:
    # 30 = 7·4 + 2: the last skill runs 2 steps; 30 = 6·5: the episode ends on a skill boundary
    experience = make_experience(
        horizon=horizon, total_env_steps=140, epoch_env_steps=140, warmup_env_steps=140
    )
    list(experience.batches())
    episodes = experience.collector.episodes
    assert episodes == 2 * N_ENVS
    assert experience.hl_buffer is not None and experience.ll_buffer is not None
    hl, ll = all_arrays(experience.hl_buffer), all_arrays(experience.ll_buffer)
    assert not hl["terminated"].any() and not ll["terminated"].any()
    assert hl["truncated"].sum() == episodes and ll["truncated"].sum() == episodes
    ends = ll["truncated"]
    assert np.all(ll["k"][ends] == (EPISODE - 1) % horizon)
    assert np.all(ll["next_k"][ends] == EPISODE % horizon)
    assert np.all(ll["next_k"][~ends & (ll["k"] == horizon - 1)] == 0)
    # the final observation, not the reset one, is the truncated rows' next observation
    env = gymnasium.make("skillcritic/Maze-v0", task="spirl")
    start = env.reset(seed=0)[0]["state"]  # the task's (fixed) start
    assert np.all(hl["state"][:N_ENVS] == start)
    for rows in (hl, ll):
        assert not np.any(np.all(rows["next_state"][rows["truncated"]] == start, axis=-1))


# ---------------------------------------------------------------------- checkpointing


def _saved(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_state_dict_round_trip() -> None:
    config: dict[str, Any] = dict(total_env_steps=72, epoch_env_steps=72, warmup_env_steps=16)
    first = make_experience(**config, updates_per_hl_step=0.5)
    assert len(list(first.batches())) > 0
    first.updates_due = 0.5  # a non-trivial value to carry over
    state = _saved(first.state_dict())

    second = make_experience(**config, updates_per_hl_step=0.5)
    second.load_state_dict(state)
    assert second.env_steps == first.env_steps == 72
    assert second.collector.hl_steps == first.collector.hl_steps
    assert second.collector.episodes == first.collector.episodes
    assert second.updates_due == 0.5
    for name in ("hl_buffer", "ll_buffer"):
        mine, theirs = getattr(first, name), getattr(second, name)
        assert len(mine) == len(theirs) > 0 and mine.fields == theirs.fields
        expected, got = all_arrays(mine), all_arrays(theirs)
        for field, array in expected.items():
            assert got[field].dtype == array.dtype
            np.testing.assert_array_equal(got[field], array)
    b1, b2 = first.sample(), second.sample()  # same RNG state: same rows
    for level in ("hl", "ll"):
        assert all(torch.equal(b1[level][key], b2[level][key]) for key in b1[level])
    b1, b2 = first.sample(), second.sample()
    assert torch.equal(b1["hl"]["state"], b2["hl"]["state"])

    # the resumed stream goes on: the in-flight skills come back as truncated HL rows
    hl_rows = len(second.hl_buffer)  # type: ignore[arg-type]
    in_flight = int((first.collector.state_dict()["skill_steps"] > 0).sum())
    second.schedule = schedule(**config | {"total_env_steps": 80, "epoch_env_steps": 80})
    list(second.batches())
    assert second.env_steps == 80
    new = all_arrays(second.hl_buffer)
    assert new["truncated"][hl_rows : hl_rows + in_flight].all()

    # without buffers
    light = _saved(first.state_dict(with_buffers=False))
    assert light["buffers"] == {}
    third = make_experience(**config)
    third.load_state_dict(light)
    assert third.env_steps == 72 and third.hl_buffer is None and third.ll_buffer is None


def test_resumed_sac_warmup_continues_the_random_actions() -> None:
    config: dict[str, Any] = dict(total_env_steps=100, epoch_env_steps=10, warmup_env_steps=100)
    first = make_experience("sac", **config)
    list(first.batches())  # one epoch, still inside the warm-up
    second = make_experience("sac", **config)
    second.load_state_dict(_saved(first.state_dict()))
    obs = {"state": np.zeros((N_ENVS, 4), np.float32)}
    assert first.in_warmup and second.in_warmup
    np.testing.assert_array_equal(second._hl_act(obs), first._hl_act(obs))


def test_state_dict_holds_no_float64_or_numpy() -> None:
    experience = make_experience(total_env_steps=24, epoch_env_steps=24, warmup_env_steps=8)
    list(experience.batches())

    def leaves(tree: Any) -> Iterator[Any]:
        if isinstance(tree, dict):
            for value in tree.values():
                yield from leaves(value)
        else:
            yield tree

    for leaf in leaves(experience.state_dict()):
        assert not isinstance(leaf, np.ndarray | np.generic)
    buffers = experience.state_dict()["buffers"]
    for level in buffers.values():
        for tensor in level["state"]["fields"].values():
            assert tensor.dtype != torch.float64


def test_cached_reference_rows_are_the_frozen_networks_outputs() -> None:
    # Skill-Critic caches D_H's prior on HL rows and D_L's action prior (with z, k) on LL rows
    experience = make_experience("skill_critic", total_env_steps=64, epoch_env_steps=64)
    list(experience.batches())
    agent = experience.agent
    for level, buffer, extra in (
        (agent.hl, experience.hl_buffer, ()),
        (agent.ll, experience.ll_buffer, ("z", "k")),
    ):
        rows = buffer.sample(6, np.random.default_rng(0))
        for prefix in ("", "next_"):
            obs = {key: rows[f"{prefix}{key}"] for key in ("state", "view", *extra)}
            expected = level.reference_params(obs)
            torch.testing.assert_close(rows[f"{prefix}ref"], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["spirl_cl", "skill_critic"])
def test_updates_with_cached_references_equal_updates_without(name: str) -> None:
    # the same batch, the same random draws: identical losses and parameters afterwards
    experience = make_experience(name, total_env_steps=64, epoch_env_steps=64)
    batch = next(iter(experience.batches()))
    uncached = {
        level: {k: v for k, v in rows.items() if not k.endswith("ref")}
        for level, rows in batch.items()
    }
    agents = [experience.agent, copy.deepcopy(experience.agent)]
    results = []
    for agent, rows in zip(agents, (batch, uncached), strict=True):
        agent.set_stage("hybrid")
        torch.manual_seed(3)
        results.append(agent.update(rows["hl"], rows.get("ll"), agent.optimizers()))
    assert results[0].keys() == results[1].keys()
    for key in results[0]:
        assert results[0][key] == pytest.approx(results[1][key], rel=1e-4, abs=1e-5), key
    for p, q in zip(agents[0].parameters(), agents[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
