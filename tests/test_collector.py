"""HierarchicalCollector: LL / HL transition bookkeeping checked on a deterministic toy env."""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import TimeLimit

from skillcritic.rl.collector import CollectorOutput, HierarchicalCollector

H = 4


class ToyEnv(gymnasium.Env):
    """``state = [t, uid]`` (t = steps taken in the episode, uid = 100·env + episode number),
    ``view = [t, env, episode]`` uint8; reward ``t`` after the step (= 1 + acting t).

    Episode j terminates after ``term_lengths[j % len]`` steps when ``term_lengths`` is given,
    else it runs until the TimeLimit wrapper truncates it. ``info["success"]`` = terminated.
    """

    def __init__(self, env_index: int, term_lengths: list[int] | None = None) -> None:
        self.env_index = env_index
        self.term_lengths = term_lengths
        self.observation_space = spaces.Dict(
            state=spaces.Box(-np.inf, np.inf, (2,), np.float32),
            view=spaces.Box(0, 255, (3,), np.uint8),
        )
        self.action_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.episode = -1
        self.t = 0
        self.actions: list[np.ndarray] = []  # executed actions (to compare with stored ones)

    def _obs(self) -> dict[str, np.ndarray]:
        uid = 100 * self.env_index + self.episode
        return {
            "state": np.array([self.t, uid], np.float32),
            "view": np.array([self.t, self.env_index, self.episode], np.uint8),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {"success": False}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        self.actions.append(np.array(action, copy=True))
        self.t += 1
        terminated = bool(
            self.term_lengths is not None
            and self.t == self.term_lengths[self.episode % len(self.term_lengths)]
        )
        return self._obs(), float(self.t), terminated, False, {"success": terminated}


# (time limit, termination lengths) per env, with H = 4:
#   env 0: truncated at 10 (mid-skill, last skill runs 2 steps);
#   env 1: truncated at 8 (on a skill boundary: the bootstrap z comes from the final obs);
#   env 2: terminated at 3, 5, 4 (mid-skill, one step into a skill, on a boundary);
#   env 3: terminated and truncated together at 6, then terminated at 2.
CONFIGS: list[tuple[int, list[int] | None]] = [(10, None), (8, None), (50, [3, 5, 4]), (6, [6, 2])]


def expected_end(env: int, episode: int) -> tuple[int, bool, bool]:
    """(length, terminated, truncated) of an episode of the toy env ``env``."""
    limit, lengths = CONFIGS[env]
    if lengths is None:
        return limit, False, True
    length = lengths[episode % len(lengths)]
    if length >= limit:
        return limit, length == limit, True
    return length, True, False


def make_envs(configs: list[tuple[int, list[int] | None]] = CONFIGS) -> SyncVectorEnv:
    fns = [
        (lambda i=i, limit=limit, lengths=lengths: TimeLimit(ToyEnv(i, lengths), limit))
        for i, (limit, lengths) in enumerate(configs)
    ]
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


class FakePolicies:
    """``z = [t, uid, serial]`` of the observation it was chosen at (serial counts hl rows);
    ``action = [k, z_serial]``. Records every call."""

    def __init__(self) -> None:
        self.serial = 0
        self.hl_calls: list[dict[str, np.ndarray]] = []
        self.ll_calls: list[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]] = []

    def hl_act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self.hl_calls.append({k: v.copy() for k, v in obs.items()})
        n = len(obs["state"])
        serial = np.arange(self.serial, self.serial + n, dtype=np.float32)
        self.serial += n
        return np.concatenate([obs["state"], serial[:, None]], axis=1)

    def ll_act(self, obs: dict[str, np.ndarray], z: np.ndarray, k: np.ndarray) -> np.ndarray:
        self.ll_calls.append(({key: v.copy() for key, v in obs.items()}, z.copy(), k.copy()))
        return np.stack([k.astype(np.float64), z[:, 2]], axis=1)


def make_collector(envs: SyncVectorEnv | None = None) -> tuple[HierarchicalCollector, FakePolicies]:
    fake = FakePolicies()
    envs = make_envs() if envs is None else envs
    return HierarchicalCollector(envs, H, fake.hl_act, fake.ll_act, seed=0), fake


def collect(collector: HierarchicalCollector, sizes: list[int]) -> list[CollectorOutput]:
    return [collector.step(n) for n in sizes]


def cat(outs: list[CollectorOutput], part: str) -> dict[str, np.ndarray]:
    return {k: np.concatenate([getattr(o, part)[k] for o in outs]) for k in getattr(outs[0], part)}


def by_env(rows: dict[str, np.ndarray], key: str = "state") -> dict[int, list[dict[str, Any]]]:
    """Rows grouped by env (uid // 100 of the observation), each group in emission order."""
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for j in range(len(rows[key])):
        row = {name: arr[j] for name, arr in rows.items()}
        groups[int(row[key][1]) // 100].append(row)
    return groups


def test_requires_same_step_autoreset() -> None:
    fake = FakePolicies()
    envs = SyncVectorEnv([lambda: TimeLimit(ToyEnv(0), 5)])
    with pytest.raises(ValueError, match="SAME_STEP"):
        HierarchicalCollector(envs, H, fake.hl_act, fake.ll_act, seed=0)


def test_ll_transitions() -> None:
    collector, _ = make_collector()
    outs = collect(collector, [13, 1, 20, 6])
    ll = cat(outs, "ll")
    groups = by_env(ll)
    assert sorted(groups) == [0, 1, 2, 3]
    seen_ends = defaultdict(int)
    for env, rows in groups.items():
        for j, row in enumerate(rows):
            t, uid = row["state"]
            episode = int(uid) % 100
            length, term, trunc = expected_end(env, episode)
            # Acting index: a new episode starts a new skill, so k = t mod H.
            assert row["k"] == int(t) % H
            assert row["next_k"] == (row["k"] + 1) % H
            assert row["action"][0] == row["k"]  # the action was taken with k ...
            assert row["action"][1] == row["z"][2]  # ... and with z
            assert row["z"][0] == t - row["k"] and row["z"][1] == uid  # z chosen at skill start
            assert row["reward"] == t + 1
            np.testing.assert_array_equal(row["view"], [t, env, episode])
            # next_obs: the next state of the same episode; at the end the FINAL obs (t = length).
            np.testing.assert_array_equal(row["next_state"], [t + 1, uid])
            np.testing.assert_array_equal(row["next_view"], [t + 1, env, episode])
            ends = t + 1 == length
            assert (row["terminated"], row["truncated"]) == ((term, trunc) if ends else (0, 0))
            seen_ends[(term, trunc)] += ends
            boundary = row["next_k"] == 0
            if not boundary:
                np.testing.assert_array_equal(row["next_z"], row["z"])
            elif ends:
                # Bootstrap skill sampled at the final observation.
                np.testing.assert_array_equal(row["next_z"][:2], [t + 1, uid])
                assert row["next_z"][2] != row["z"][2]
            if j + 1 < len(rows):
                nxt = rows[j + 1]
                if ends:
                    np.testing.assert_array_equal(nxt["state"], [0, uid + 1])
                    assert nxt["k"] == 0
                else:
                    np.testing.assert_array_equal(nxt["state"], row["next_state"])
                    # next_z is the skill active at the next step; the switch fires iff k' = 0.
                    np.testing.assert_array_equal(nxt["z"], row["next_z"])
                    assert (nxt["z"][2] != row["z"][2]) == boundary
    # Every kind of episode end happened, and both-flag ends are reported as both.
    assert seen_ends[(True, False)] > 0 and seen_ends[(False, True)] > 0
    assert seen_ends[(True, True)] > 0
    assert ll["state"].dtype == np.float32 and ll["view"].dtype == np.uint8
    assert ll["z"].dtype == np.float32 and ll["k"].dtype == np.int64
    assert ll["terminated"].dtype == bool and ll["truncated"].dtype == bool


def test_stored_actions_are_executed_actions() -> None:
    envs = make_envs()
    collector, _ = make_collector(envs)
    ll = cat(collect(collector, [17, 1]), "ll")
    for env, rows in by_env(ll).items():
        executed = envs.envs[env].unwrapped.actions
        stored = [r["action"] for r in rows]
        np.testing.assert_array_equal(np.array(executed[: len(stored)]), np.array(stored))


def test_hl_transitions() -> None:
    collector, _ = make_collector()
    outs = collect(collector, [9, 14, 1, 16])
    hl, ll = cat(outs, "hl"), cat(outs, "ll")
    for env, rows in by_env(hl).items():
        for row in rows:
            t0, uid = row["state"]
            length, term, trunc = expected_end(env, int(uid) % 100)
            np.testing.assert_array_equal(row["z"][:2], row["state"])  # obs where z was chosen
            assert t0 % H == 0
            steps = min(H, length - int(t0))
            assert row["steps"] == steps
            assert row["reward"] == sum(t0 + j for j in range(1, steps + 1))  # last step included
            np.testing.assert_array_equal(row["next_state"], [t0 + steps, uid])
            ends = t0 + steps == length
            assert (row["terminated"], row["truncated"]) == ((term, trunc) if ends else (0, 0))
    # One HL row per completed skill: per LL transition that closed its skill (the last ones
    # may still wait for their next_z in the collector: count those too).
    state = collector.state_dict()
    ll = {k: np.concatenate([v, state["pending_rows"][k][state["pending"]]]) for k, v in ll.items()}
    closes = (ll["next_k"] == 0) | ll["terminated"] | ll["truncated"]
    assert len(hl["z"]) == int(closes.sum())
    # ... and the HL reward sums the LL rewards of that skill.
    ll_sum = defaultdict(float)
    for z, r in zip(ll["z"][:, 2], ll["reward"], strict=True):
        ll_sum[z] += r
    for z, r in zip(hl["z"][:, 2], hl["reward"], strict=True):
        assert ll_sum[z] == r


def test_no_transition_dropped() -> None:
    collector, _ = make_collector()
    sizes = [5, 1, 7, 0, 8, 3]  # 24 steps: env 0 (t = 4) and env 1 (truncated) on a boundary
    outs = collect(collector, sizes)
    n_envs, total = len(CONFIGS), sum(sizes)
    assert outs[-1].env_steps == n_envs * total
    ll = cat(outs, "ll")
    pending = int(collector.state_dict()["pending"].sum())
    assert pending > 0  # this schedule ends some envs on a skill boundary
    assert len(ll["k"]) == n_envs * total - pending
    # Each (env, episode, t) acted exactly once; the missing ones are the pending last steps.
    acted = {(int(s[1]), int(s[0])) for s in ll["state"]}
    assert len(acted) == len(ll["k"])
    # One more step completes them all (and adds its own, minus the new pending ones).
    out = collector.step(1)
    pending_after = int(collector.state_dict()["pending"].sum())
    assert len(ll["k"]) + len(out.ll["k"]) == n_envs * (total + 1) - pending_after
    # HL rows: skills chosen = skills completed + skills still active.
    hl_rows = sum(len(o.hl["z"]) for o in [*outs, out])
    active = int((collector.state_dict()["skill_steps"] > 0).sum())
    assert out.hl_steps == hl_rows + active
    # Episodes.
    eps = cat([*outs, out], "episodes")
    assert out.episodes_done == len(eps["episode_length"])
    for length, ret, success in zip(
        eps["episode_length"], eps["episode_return"], eps["episode_success"], strict=True
    ):
        assert ret == length * (length + 1) / 2
        assert success in (0.0, 1.0)


def test_episode_stats() -> None:
    collector, _ = make_collector()
    out = collector.step(10)
    # Ends within the first 10 steps, in completion order (step, then env index):
    # step 3: env2 (term 3); step 6: env3 (term+trunc 6); step 8: env1 (trunc 8), env2 (term 5);
    # step 8: env3 (term 2); step 10: env0 (trunc 10).
    np.testing.assert_array_equal(out.episodes["episode_length"], [3, 6, 8, 5, 2, 10])
    np.testing.assert_array_equal(out.episodes["episode_success"], [1, 1, 0, 1, 1, 0])
    assert out.episodes_done == 6


def test_split_calls_match_one_call() -> None:
    a, _ = make_collector()
    b, _ = make_collector()
    split = collect(a, [3, 3, 3, 3])
    whole = b.step(12)
    for part in ("ll", "hl", "episodes"):
        joined = cat(split, part)
        assert joined.keys() == getattr(whole, part).keys()
        for name, arr in getattr(whole, part).items():
            np.testing.assert_array_equal(joined[name], arr, err_msg=f"{part}/{name}")
            assert joined[name].dtype == arr.dtype
    assert (split[-1].env_steps, split[-1].hl_steps, split[-1].episodes_done) == (
        whole.env_steps,
        whole.hl_steps,
        whole.episodes_done,
    )


def test_policy_calls_are_batched() -> None:
    collector, fake = make_collector()
    out = collector.step(24)
    n_envs = len(CONFIGS)
    assert len(fake.ll_calls) == 24
    for obs, z, k in fake.ll_calls:
        assert obs["state"].shape == (n_envs, 2) and z.shape == (n_envs, 3) and k.shape == (n_envs,)
    assert 1 <= len(fake.hl_calls) <= 24
    hl_rows = sum(len(c["state"]) for c in fake.hl_calls)
    # Rows: every skill that acted + one bootstrap row per episode ending on a skill boundary
    # (env 1 at 8, 16, 24 — the one at 24 is still pending; env 2's 4-step episode at 12).
    assert out.hl_steps + 3 == hl_rows
    # The first call covers all envs at their reset observations.
    np.testing.assert_array_equal(fake.hl_calls[0]["state"][:, 0], np.zeros(n_envs))


def _assert_same(a: CollectorOutput, b: CollectorOutput) -> None:
    for part in ("ll", "hl", "episodes"):
        for name, arr in getattr(a, part).items():
            np.testing.assert_array_equal(getattr(b, part)[name], arr, err_msg=f"{part}/{name}")
    assert (a.env_steps, a.hl_steps, a.episodes_done) == (b.env_steps, b.hl_steps, b.episodes_done)


def _leaves_ok(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _leaves_ok(v) for k, v in value.items())
    return isinstance(value, np.ndarray | int | float | bool | str)


def test_state_dict_round_trip() -> None:
    envs = make_envs()
    a, fake_a = make_collector(envs)
    a.step(7)  # env 1 and env 3 pending/mid-episode, env 2 in its second episode
    state = copy.deepcopy(a.state_dict())
    assert _leaves_ok(state)
    assert state["pending"].any() or state["skill_steps"].any()
    envs_b = copy.deepcopy(envs)  # the toy env is deterministic: same state
    b, fake_b = make_collector(envs_b)
    fake_b.serial = fake_a.serial
    b.load_state_dict(state)
    for n in (1, 5, 13):
        _assert_same(a.step(n), b.step(n))


def test_state_dict_round_trip_with_pending_boot() -> None:
    a, fake_a = make_collector()
    a.step(8)  # env 1 truncated on a boundary at step 8: its last transition waits for next_z
    state = a.state_dict()
    assert state["pending"][1] and state["pending_boot"][1]
    b, fake_b = make_collector(copy.deepcopy(a.envs))
    fake_b.serial = fake_a.serial
    b.load_state_dict(copy.deepcopy(state))
    _assert_same(a.step(9), b.step(9))


def test_restart_episodes_after_load() -> None:
    a, _ = make_collector()
    a.step(7)
    # After 7 steps: env 0 and env 1 are 3 steps into their 2nd skill, env 2 (episode 1, t = 4)
    # ended a skill (its last transition is pending) and env 3 (episode 1, t = 1) is 1 step in.
    state = a.state_dict()
    np.testing.assert_array_equal(state["pending"], [False, False, True, False])
    np.testing.assert_array_equal(state["skill_steps"], [3, 3, 0, 1])
    b, fake = make_collector()  # fresh envs: the in-flight episodes restart
    b.load_state_dict(state)
    b.restart_episodes(seed=1)
    out = b.step(1)
    # The pending transition completes first, bootstrapping from a skill sampled at its own
    # stored next observation; then one transition per env from its new episode's reset obs.
    ll = out.ll
    np.testing.assert_array_equal(ll["state"][0], [3, 201])
    np.testing.assert_array_equal(ll["next_state"][0], [4, 201])
    np.testing.assert_array_equal(ll["next_z"][0][:2], [4, 201])
    assert ll["next_k"][0] == 0 and not ll["terminated"][0] and not ll["truncated"][0]
    np.testing.assert_array_equal(ll["state"][1:], [[0, 100 * i] for i in range(4)])
    assert (ll["k"][1:] == 0).all() and len(ll["k"]) == 5
    # One hl_act call: 4 new skills + 1 bootstrap row.
    assert len(fake.hl_calls) == 1 and len(fake.hl_calls[0]["state"]) == 5
    # In-flight skills are closed as truncated HL transitions at the cut observation.
    hl = out.hl
    np.testing.assert_array_equal(hl["state"], [[4, 0], [4, 100], [0, 301]])
    np.testing.assert_array_equal(hl["next_state"], [[7, 0], [7, 100], [1, 301]])
    np.testing.assert_array_equal(hl["steps"], [3, 3, 1])
    np.testing.assert_array_equal(hl["reward"], [5 + 6 + 7, 5 + 6 + 7, 1])
    assert hl["truncated"].all() and not hl["terminated"].any()
    # Abandoned episodes are not counted.
    assert out.episodes_done == state["episodes"] and len(out.episodes["episode_length"]) == 0
    assert out.env_steps == state["env_steps"] + 4


def test_maze_smoke() -> None:
    import skillcritic  # noqa: F401  (registers skillcritic/Maze-v0)

    envs = SyncVectorEnv(
        [lambda: gymnasium.make("skillcritic/Maze-v0", task="spirl") for _ in range(2)],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    rng = np.random.default_rng(0)
    nz = 10
    collector = HierarchicalCollector(
        envs,
        10,
        hl_act=lambda obs: rng.normal(size=(len(obs["state"]), nz)),
        ll_act=lambda obs, z, k: rng.uniform(-1, 1, size=(len(k), 2)),
        seed=0,
    )
    outs = [collector.step(30), collector.step(30)]
    ll, hl = cat(outs, "ll"), cat(outs, "hl")
    n = len(ll["k"])
    assert n == 2 * 60 - int(collector.state_dict()["pending"].sum())
    assert ll["state"].shape == (n, 4) and ll["state"].dtype == np.float32
    assert ll["view"].shape == (n, 2, 3, 32, 32) and ll["view"].dtype == np.uint8
    assert ll["next_view"].dtype == np.uint8 and ll["next_state"].dtype == np.float32
    assert ll["z"].shape == (n, nz) and ll["z"].dtype == np.float32
    assert ll["action"].shape == (n, 2) and ll["action"].dtype == np.float32
    assert ll["reward"].dtype == np.float32 and ll["k"].dtype == np.int64
    np.testing.assert_array_equal(ll["next_k"], (ll["k"] + 1) % 10)
    assert len(hl["z"]) == 2 * 6  # 60 steps = 6 skills per env, the 6th ends at step 60
    assert (hl["steps"] == 10).all() and hl["view"].dtype == np.uint8
    assert outs[-1].env_steps == 120 and outs[-1].hl_steps == 12
    assert not any(f.dtype == np.float64 for f in (*ll.values(), *hl.values()))
    envs.close()
