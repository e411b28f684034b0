"""Experience: the collector, the two replay buffers and the training schedule in env steps.

:class:`Experience` steps the vector env with the agent (one batched policy call per env step),
stores the rows in the replay buffers (the HL buffer for every agent, the LL buffer for
Skill-Critic), and decides when updates happen: none during the warm-up, then
``updates_per_hl_step`` updates (each one HL + one LL step) per new HL transition. Its
:meth:`batches` generator is what the Lightning IterableDataset yields, one "epoch" of env steps
at a time. Everything it holds is checkpointed by :meth:`state_dict` (tensors and python values
only, so checkpoints load with ``weights_only=True``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterableDataset

from skillcritic.rl.agents import LowLevelActor, SkillAgent
from skillcritic.rl.collector import CollectorOutput, HierarchicalCollector
from skillcritic.rl.levels import REFERENCE_KEY, SACLevel
from skillcritic.rl.replay import ReplayBuffer

HL_FIELDS = ("z", "reward", "terminated", "truncated")
LL_FIELDS = ("z", "k", "action", "reward", "next_z", "next_k", "terminated", "truncated")


@dataclass(frozen=True)
class Schedule:
    """When things happen, in env steps (summed over the vector envs).

    Args:
        total_env_steps: stop after this many env steps.
        epoch_env_steps: env steps per Lightning epoch (evaluation + checkpoint at each end).
        warmup_env_steps: env steps collected before the first update.
        updates_per_hl_step: updates (1 HL + 1 LL each) per new HL transition after warm-up.
        batch_size: rows per replay batch (each level).
        warm_start_env_steps: Skill-Critic: env steps after the warm-up in the warm-start stage.
        hl_capacity, ll_capacity: replay buffer sizes (rows).
    """

    total_env_steps: int
    epoch_env_steps: int
    warmup_env_steps: int
    updates_per_hl_step: float = 1.0
    batch_size: int = 256
    warm_start_env_steps: int = 0
    hl_capacity: int = 100_000
    ll_capacity: int = 200_000

    def __post_init__(self) -> None:
        for name in ("total_env_steps", "epoch_env_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("hl_capacity", "ll_capacity"):
            if getattr(self, name) < self.batch_size:
                raise ValueError(f"{name}={getattr(self, name)} is smaller than one batch")
        if self.warmup_env_steps < 0 or self.warm_start_env_steps < 0:
            raise ValueError("warm-up and warm-start lengths must be >= 0")
        if self.updates_per_hl_step <= 0:
            raise ValueError(f"updates_per_hl_step must be > 0, got {self.updates_per_hl_step}")

    def stage(self, env_steps: int) -> str:
        """Skill-Critic's stage at ``env_steps``."""
        end = self.warmup_env_steps + self.warm_start_env_steps
        return "warm_start" if env_steps < end else "hybrid"


def make_vector_env(make: Any, num_envs: int) -> gymnasium.vector.SyncVectorEnv:
    """``num_envs`` copies of ``make()`` in one SAME_STEP-autoreset vector env (the collector's)."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    return gymnasium.vector.SyncVectorEnv(
        [make] * num_envs, autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP
    )


def to_tensors(obs: Mapping[str, np.ndarray], device: torch.device) -> dict[str, Tensor]:
    """Numpy observation dict → tensors on ``device`` (no copy on CPU)."""
    return {key: torch.as_tensor(value, device=device) for key, value in obs.items()}


class Experience:
    """Collector + replay + counters of one RL run (see the module docstring)."""

    def __init__(
        self,
        agent: SkillAgent,
        envs: gymnasium.vector.VectorEnv,
        schedule: Schedule,
        seed: int,
    ) -> None:
        self.agent = agent
        self.schedule = schedule
        self.seed = seed
        self.device = torch.device("cpu")
        self.rng = np.random.default_rng(seed)
        self.obs_keys = ("state", "view") if agent.uses_views else ("state",)
        self._ll_actor = LowLevelActor(agent)
        self.collector = HierarchicalCollector(
            envs, agent.horizon, self._hl_act, self._ll_act, seed
        )
        self.hl_buffer: ReplayBuffer | None = None
        self.ll_buffer: ReplayBuffer | None = None
        self.updates_due = 0.0
        self.finished_episodes: list[tuple[float, float]] = []  # (return, success) to log
        self.action_space = envs.single_action_space
        self.action_space.seed(seed)

    # ------------------------------------------------------------------ acting

    @property
    def env_steps(self) -> int:
        return self.collector.env_steps

    @property
    def in_warmup(self) -> bool:
        return self.env_steps < self.schedule.warmup_env_steps

    def _hl_act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        n = len(obs["state"])
        if self.in_warmup and self.agent.random_warmup:
            return np.stack([self.action_space.sample() for _ in range(n)])
        z = self.agent.hl_act(to_tensors({k: obs[k] for k in self.obs_keys}, self.device))
        return z.cpu().numpy()

    def _ll_act(self, obs: dict[str, np.ndarray], z: np.ndarray, k: np.ndarray) -> np.ndarray:
        if self.agent.flat:
            return z
        tensors = to_tensors({key: obs[key] for key in self.obs_keys}, self.device)
        z_t = torch.as_tensor(z, device=self.device)
        k_t = torch.as_tensor(k, device=self.device)
        return self._ll_actor(tensors, z_t, k_t).cpu().numpy()

    # ------------------------------------------------------------------ storing

    def _fields(self, names: tuple[str, ...]) -> list[str]:
        obs = [*self.obs_keys, *(f"next_{key}" for key in self.obs_keys)]
        return [*obs, *names]

    def _with_reference(
        self, level: SACLevel, rows: dict[str, np.ndarray], extra: tuple[str, ...] = ()
    ) -> dict[str, np.ndarray]:
        """``rows`` plus the level's frozen reference at obs and next obs (``ref``,
        ``next_ref``: [μ, log σ]) where the level has one: computed once here, for a few rows,
        instead of twice per update for a whole batch."""
        if level.reference is None:
            return rows
        keys = [*self.obs_keys, *extra]
        out = dict(rows)
        for prefix in ("", "next_"):
            if len(rows["reward"]):
                obs = to_tensors({key: rows[f"{prefix}{key}"] for key in keys}, self.device)
                params = level.reference_params(obs).cpu().numpy()
            else:  # no rows this call: the field still needs its width
                params = np.zeros((0, 2 * level.action_dim), np.float32)
            out[f"{prefix}{REFERENCE_KEY}"] = params
        return out

    def _store(self, out: CollectorOutput) -> None:
        hl = {name: out.hl[name] for name in self._fields(HL_FIELDS)}
        hl = self._with_reference(self.agent.hl, hl)
        if self.hl_buffer is None:
            self.hl_buffer = ReplayBuffer(_spec(hl), self.schedule.hl_capacity)
        self.hl_buffer.add(hl)
        if self.agent.ll is not None:
            ll = {name: out.ll[name] for name in self._fields(LL_FIELDS)}
            ll = self._with_reference(self.agent.ll, ll, extra=("z", "k"))
            if self.ll_buffer is None:
                self.ll_buffer = ReplayBuffer(_spec(ll), self.schedule.ll_capacity)
            self.ll_buffer.add(ll)
        returns, successes = out.episodes["episode_return"], out.episodes["episode_success"]
        self.finished_episodes += list(zip(returns.tolist(), successes.tolist(), strict=True))

    # ------------------------------------------------------------------ the stream

    def batches(self) -> Iterator[dict[str, dict[str, Tensor]]]:
        """Collect up to the end of the current epoch, yielding replay batches when due."""
        epoch = self.schedule.epoch_env_steps
        end = min(self.schedule.total_env_steps, (self.env_steps // epoch + 1) * epoch)
        while self.env_steps < end:
            if self.agent.ll is not None:
                self.agent.set_stage(self.schedule.stage(self.env_steps))
            warming_up = self.in_warmup
            # H steps per env, fewer at the end of the epoch (so epochs end on the step count).
            per_env = -(-(end - self.env_steps) // self.collector.num_envs)
            out = self.collector.step(min(self.agent.horizon, per_env))
            self._store(out)
            if warming_up:
                continue
            self.updates_due += len(out.hl["reward"]) * self.schedule.updates_per_hl_step
            while self.updates_due >= 1.0:
                self.updates_due -= 1.0
                yield self.sample()

    def sample(self) -> dict[str, dict[str, Tensor]]:
        """One batch per level (uniform, with replacement)."""
        assert self.hl_buffer is not None
        size = self.schedule.batch_size
        batch = {"hl": self.hl_buffer.sample(size, self.rng)}
        if self.ll_buffer is not None:
            batch["ll"] = self.ll_buffer.sample(size, self.rng)
        return batch

    def pop_episodes(self) -> list[tuple[float, float]]:
        """Training episodes finished since the last call: (return, success)."""
        done, self.finished_episodes = self.finished_episodes, []
        return done

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self, with_buffers: bool = True) -> dict[str, Any]:
        """Counters, collector state, RNG state and (optionally) the replay buffers."""
        state: dict[str, Any] = {
            "schedule": asdict(self.schedule),
            "updates_due": self.updates_due,
            "rng": self.rng.bit_generator.state,
            "action_rng": self.action_space.np_random.bit_generator.state,
            "collector": _numpy_to_tensors(self.collector.state_dict()),
            "buffers": {},
        }
        if with_buffers:
            for name, buffer in (("hl", self.hl_buffer), ("ll", self.ll_buffer)):
                if buffer is not None:
                    spec = {k: (list(s), str(d)) for k, (s, d) in buffer.fields.items()}
                    state["buffers"][name] = {"spec": spec, "state": buffer.state_dict()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; the envs restart their episodes (their physics state is
        not in the checkpoint): in-flight skills are closed as truncated HL transitions."""
        self.updates_due = float(state["updates_due"])
        self.rng.bit_generator.state = state["rng"]
        self.action_space.np_random.bit_generator.state = state["action_rng"]
        self.collector.load_state_dict(_tensors_to_numpy(state["collector"]))
        self.collector.restart_episodes(seed=self.seed + self.collector.env_steps)
        buffers = state["buffers"]
        for name, capacity in (
            ("hl", self.schedule.hl_capacity),
            ("ll", self.schedule.ll_capacity),
        ):
            if name in buffers:
                spec = {k: (tuple(s), np.dtype(d)) for k, (s, d) in buffers[name]["spec"].items()}
                buffer = ReplayBuffer(spec, capacity)
                buffer.load_state_dict(buffers[name]["state"])
                setattr(self, f"{name}_buffer", buffer)


class ExperienceStream(IterableDataset):
    """The Lightning data source: each iteration is one epoch of :meth:`Experience.batches`."""

    def __init__(self, experience: Experience) -> None:
        super().__init__()
        self.experience = experience

    def __iter__(self) -> Iterator[dict[str, dict[str, Tensor]]]:
        return self.experience.batches()


def _spec(rows: Mapping[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    return {name: (tuple(arr.shape[1:]), arr.dtype) for name, arr in rows.items()}


def _numpy_to_tensors(tree: Any) -> Any:
    """Numpy arrays → tensors in nested dicts (so the state loads with weights_only=True)."""
    if isinstance(tree, Mapping):
        return {key: _numpy_to_tensors(value) for key, value in tree.items()}
    if isinstance(tree, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(tree))
    return tree


def _tensors_to_numpy(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {key: _tensors_to_numpy(value) for key, value in tree.items()}
    if isinstance(tree, Tensor):
        return tree.numpy()
    return tree
