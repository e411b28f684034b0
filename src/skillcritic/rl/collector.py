"""Hierarchical experience collection: fixed-horizon skills over a gymnasium vector env.

:class:`HierarchicalCollector` steps a ``SyncVectorEnv`` (autoreset mode ``SAME_STEP``) with a
high-level policy that picks a skill ``z`` every ``H`` env steps and a low-level policy that acts
with ``(obs, z, k)``, and turns the stream into replay rows for both levels.

The semantics are the clean ones of DESIGN.md §6, not the reference sampler's
(``reference-skill-critic.md`` §2.3, §6.1–§6.4):

* an LL transition stores the index ``k`` its action was TAKEN with and ``next_k = (k + 1) mod H``,
  so a critic's boundary switch ``1[next_k == 0]`` fires exactly on the transition whose next step
  starts a new skill; ``next_z`` is the skill active at the next step (the new one at a boundary);
* no LL transition is dropped: a boundary transition waits for the next skill choice, across
  ``step()`` calls if needed;
* an HL transition starts at the observation where ``z`` was chosen, sums the rewards of all the
  steps the skill ran (the last step of an episode included) and ends at the observation where the
  next skill is chosen, or at the final observation of the episode;
* ``terminated`` and ``truncated`` are kept apart, so a time-limit truncation can be bootstrapped:
  at the end of an episode the transition's next observation is the FINAL one (not the reset one),
  and when the episode ends on a skill boundary a bootstrap skill is sampled at that final
  observation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

ObsDict = dict[str, np.ndarray]
HighLevelAct = Callable[[ObsDict], np.ndarray]
LowLevelAct = Callable[[ObsDict, np.ndarray, np.ndarray], np.ndarray]
FieldSpec = tuple[tuple[int, ...], np.dtype]

# Names the collector itself uses in its rows; observation keys may not take them.
_RESERVED = frozenset(
    {"z", "k", "action", "reward", "terminated", "truncated", "steps", "next_z", "next_k"}
)
_STATE_VERSION = 1


@dataclass
class CollectorOutput:
    """What one :meth:`HierarchicalCollector.step` call produced.

    Every dict maps a field name to an array whose leading dimension is the number of rows, in the
    order the rows were completed (several envs completing at the same env step: by env index).

    Attributes:
        ll: LL transitions: the observation fields (e.g. ``state``, ``view``), ``z`` (float32),
            ``k`` (int64, the index the action was taken with), ``action``, ``reward`` (float32),
            ``next_<field>`` for every observation field, ``next_z``, ``next_k`` (int64),
            ``terminated``, ``truncated`` (bool).
        hl: HL transitions: the observation fields (where ``z`` was chosen), ``z``, ``reward``
            (float32, the sum over the skill's steps), ``next_<field>``, ``terminated``,
            ``truncated`` and ``steps`` (int64, env steps the skill ran, 1..H).
        episodes: episodes that ended during the call: ``episode_return`` (float64),
            ``episode_length`` (int64) and ``episode_success`` (float32: ``info["success"]`` of
            the final step as 0/1, NaN where the env does not report it).
        env_steps: env steps taken so far, summed over the envs (cumulative, not per call).
        hl_steps: skills chosen to act so far (cumulative; bootstrap samples at final
            observations are not counted).
        episodes_done: episodes ended so far (cumulative).
    """

    ll: dict[str, np.ndarray]
    hl: dict[str, np.ndarray]
    episodes: dict[str, np.ndarray]
    env_steps: int
    hl_steps: int
    episodes_done: int


class HierarchicalCollector:
    """Steps a vector env with fixed-horizon skills and emits LL / HL transitions.

    Every env ``i`` has its own skill counter ``k_i``: a skill is chosen when ``k_i == 0`` (at
    the first step, after ``H`` steps of the previous skill, and at the first step of every new
    episode of that env only) and ``k_i`` advances by one per env step. Envs need not be in
    lockstep; episodes may terminate early.

    Per env step there is exactly one batched ``ll_act`` call (all envs) and at most one batched
    ``hl_act`` call (only the rows that need a skill: envs with ``k == 0`` at their current
    observation, plus the final observations of episodes that ended on a skill boundary, whose
    last LL transition needs a bootstrap ``next_z``).

    The vector env is reset (with ``seed``) by the first :meth:`step` call, not by the
    constructor, so a collector can be built and :meth:`load_state_dict`-ed onto envs that are
    already in the saved state.

    Args:
        envs: a gymnasium vector env built with ``autoreset_mode=AutoresetMode.SAME_STEP`` (the
            step that ends an episode returns the reset observation and puts the final one in
            ``infos["final_obs"]``, mask ``infos["_final_obs"]``, and the final step's info in
            ``infos["final_info"]``) and a ``Dict`` observation space.
        horizon: the skill length ``H`` (>= 1).
        hl_act: ``hl_act(obs) -> z``: skills ``(n, nz)`` for a dict of ``n`` stacked observations.
            Called on subsets of the envs. ``z`` is stored (and passed to ``ll_act``) as float32.
        ll_act: ``ll_act(obs, z, k) -> actions``: actions ``(N, *action_shape)`` for all ``N``
            envs given their observations, active skills ``(N, nz)`` and skill indices ``k``
            (int64 ``(N,)``). Floating actions are cast to float32 before they are executed and
            stored, so the stored action is exactly the executed one.
        seed: seed of the first ``envs.reset``.
    """

    def __init__(
        self,
        envs: gymnasium.vector.VectorEnv,
        horizon: int,
        hl_act: HighLevelAct,
        ll_act: LowLevelAct,
        seed: int,
    ) -> None:
        if int(horizon) < 1:
            raise ValueError(f"HierarchicalCollector: horizon must be >= 1, got {horizon}")
        mode = envs.metadata.get("autoreset_mode", getattr(envs, "autoreset_mode", None))
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                "HierarchicalCollector: the vector env must use "
                f"autoreset_mode=AutoresetMode.SAME_STEP, got {mode!r}"
            )
        obs_space = envs.single_observation_space
        if not isinstance(obs_space, spaces.Dict):
            raise TypeError(
                f"HierarchicalCollector: needs a Dict observation space, got {type(obs_space)}"
            )
        self._obs_spec: dict[str, FieldSpec] = {}
        for key, space in obs_space.spaces.items():
            if not isinstance(space, spaces.Box):
                raise TypeError(f"HierarchicalCollector: observation {key!r} must be a Box")
            if key in _RESERVED or key.startswith("next_") or key.startswith("episode_"):
                raise ValueError(f"HierarchicalCollector: observation key {key!r} is reserved")
            self._obs_spec[key] = (tuple(space.shape), np.dtype(space.dtype))
        act_space = envs.single_action_space
        if not isinstance(act_space, spaces.Box):
            raise TypeError("HierarchicalCollector: needs a Box action space")
        self._action_shape = tuple(act_space.shape)
        act_dtype = np.dtype(act_space.dtype)
        self._action_dtype = np.dtype(np.float32) if act_dtype.kind == "f" else act_dtype

        self.envs = envs
        self.horizon = int(horizon)
        self.hl_act = hl_act
        self.ll_act = ll_act
        self.seed = int(seed)
        self.num_envs = int(envs.num_envs)

        n = self.num_envs
        self._started = False  # envs reset by the first step() (or state loaded)
        self._obs: ObsDict = self._zeros_obs()  # current observation of every env
        self._z = np.zeros((n, 0), np.float32)  # active skill; width nz known after hl_act
        self._k = np.zeros(n, np.int64)  # index the NEXT action will be taken with
        self._skill_obs: ObsDict = self._zeros_obs()  # observation where the active z was chosen
        self._skill_reward = np.zeros(n, np.float64)  # reward summed over the active skill
        self._skill_steps = np.zeros(n, np.int64)  # env steps the active skill has run
        self._ep_return = np.zeros(n, np.float64)
        self._ep_length = np.zeros(n, np.int64)
        # At most one LL transition per env waits for its next_z: the one of the env's last step
        # if that step ended a skill (next_k == 0). `_pending_boot` marks those whose episode
        # ended there: their next_z is sampled at their own (final) next observation instead of
        # being the skill the env picks next.
        self._pending = np.zeros(n, bool)
        self._pending_boot = np.zeros(n, bool)
        self._pending_rows = self._zeros_rows(self._ll_spec(), n)
        # HL transitions closed by restart_episodes(), emitted by the next step().
        self._carry_hl: dict[str, np.ndarray] | None = None
        self._env_steps = 0
        self._hl_steps = 0
        self._episodes = 0

    # ------------------------------------------------------------------ counters and specs

    @property
    def env_steps(self) -> int:
        """Env steps taken so far, summed over the envs."""
        return self._env_steps

    @property
    def hl_steps(self) -> int:
        """Skills chosen to act so far (bootstrap samples at final observations excluded)."""
        return self._hl_steps

    @property
    def episodes(self) -> int:
        """Episodes ended so far."""
        return self._episodes

    @property
    def nz(self) -> int:
        """Skill dimension (0 until the first ``hl_act`` call)."""
        return int(self._z.shape[1])

    def _zeros_obs(self, n: int | None = None) -> ObsDict:
        n = self.num_envs if n is None else n
        return {key: np.zeros((n, *shape), dt) for key, (shape, dt) in self._obs_spec.items()}

    @staticmethod
    def _zeros_rows(spec: Mapping[str, FieldSpec], n: int) -> dict[str, np.ndarray]:
        return {name: np.zeros((n, *shape), dt) for name, (shape, dt) in spec.items()}

    def _ll_spec(self) -> dict[str, FieldSpec]:
        """Per-row shape and dtype of every LL field."""
        z = ((self.nz,), np.dtype(np.float32))
        spec: dict[str, FieldSpec] = dict(self._obs_spec)
        spec |= {
            "z": z,
            "k": ((), np.dtype(np.int64)),
            "action": (self._action_shape, self._action_dtype),
            "reward": ((), np.dtype(np.float32)),
        }
        spec |= {f"next_{key}": s for key, s in self._obs_spec.items()}
        spec |= {
            "next_z": z,
            "next_k": ((), np.dtype(np.int64)),
            "terminated": ((), np.dtype(bool)),
            "truncated": ((), np.dtype(bool)),
        }
        return spec

    def _hl_spec(self) -> dict[str, FieldSpec]:
        """Per-row shape and dtype of every HL field."""
        spec: dict[str, FieldSpec] = dict(self._obs_spec)
        spec |= {"z": ((self.nz,), np.dtype(np.float32)), "reward": ((), np.dtype(np.float32))}
        spec |= {f"next_{key}": s for key, s in self._obs_spec.items()}
        spec |= {
            "terminated": ((), np.dtype(bool)),
            "truncated": ((), np.dtype(bool)),
            "steps": ((), np.dtype(np.int64)),
        }
        return spec

    @staticmethod
    def _episode_spec() -> dict[str, FieldSpec]:
        return {
            "episode_return": ((), np.dtype(np.float64)),
            "episode_length": ((), np.dtype(np.int64)),
            "episode_success": ((), np.dtype(np.float32)),
        }

    def _set_nz(self, nz: int) -> None:
        """Size the skill arrays at the first ``hl_act`` output; refuse a later change."""
        if nz == self.nz:
            return
        if self.nz != 0:
            raise ValueError(f"HierarchicalCollector: hl_act returned nz={nz}, before {self.nz}")
        n = self.num_envs
        self._z = np.zeros((n, nz), np.float32)
        self._pending_rows["z"] = np.zeros((n, nz), np.float32)
        self._pending_rows["next_z"] = np.zeros((n, nz), np.float32)

    # ------------------------------------------------------------------ policy calls

    def _call_hl(self, obs: ObsDict, n: int) -> np.ndarray:
        z = np.asarray(self.hl_act(obs))
        if z.ndim != 2 or z.shape[0] != n:
            raise ValueError(f"HierarchicalCollector: hl_act must return ({n}, nz), got {z.shape}")
        self._set_nz(z.shape[1])
        return z.astype(np.float32)

    def _call_ll(self) -> np.ndarray:
        # Copies, so a policy that keeps its inputs never sees them change afterwards.
        actions = np.asarray(self.ll_act(dict(self._obs), self._z.copy(), self._k.copy()))
        expected = (self.num_envs, *self._action_shape)
        if actions.shape != expected:
            raise ValueError(
                f"HierarchicalCollector: ll_act must return {expected}, got {actions.shape}"
            )
        return actions.astype(self._action_dtype)

    # ------------------------------------------------------------------ collection

    def _reset_all(self, seed: int | None) -> None:
        """Reset every env: fresh episodes, each starting a new skill at its next step."""
        obs, _ = self.envs.reset(seed=seed)
        self._obs = {key: np.array(obs[key], copy=True) for key in self._obs_spec}
        self._k[:] = 0
        self._skill_reward[:] = 0.0
        self._skill_steps[:] = 0
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        self._started = True

    def step(self, n_steps: int) -> CollectorOutput:
        """Advance every env by ``n_steps`` env steps; return the rows completed meanwhile.

        LL transitions of boundary steps (``next_k == 0``) complete when the next skill is
        chosen, at the env's next step: those of the last step of this call are returned by the
        next call. Over consecutive calls every env step yields exactly one LL transition, and
        ``step(a)`` then ``step(b)`` returns the same rows, in the same order, as ``step(a + b)``.
        """
        if int(n_steps) < 0:
            raise ValueError(f"HierarchicalCollector.step: n_steps must be >= 0, got {n_steps}")
        if not self._started:
            self._reset_all(self.seed)
        ll: list[dict[str, np.ndarray]] = []
        hl: list[dict[str, np.ndarray]] = []
        eps: list[dict[str, np.ndarray]] = []
        if self._carry_hl is not None:
            hl.append(self._carry_hl)
            self._carry_hl = None
        for _ in range(int(n_steps)):
            self._env_step(ll, hl, eps)
        return CollectorOutput(
            ll=_concat(ll, self._ll_spec()),
            hl=_concat(hl, self._hl_spec()),
            episodes=_concat(eps, self._episode_spec()),
            env_steps=self._env_steps,
            hl_steps=self._hl_steps,
            episodes_done=self._episodes,
        )

    def _env_step(
        self,
        ll_out: list[dict[str, np.ndarray]],
        hl_out: list[dict[str, np.ndarray]],
        ep_out: list[dict[str, np.ndarray]],
    ) -> None:
        """One env step of every env: choose skills, act, record transitions."""
        h = self.horizon
        keys = list(self._obs_spec)

        # 1) Skill choice: ONE hl_act call for (a) envs starting a skill at their current
        #    observation and (b) the final observations of pending boundary transitions whose
        #    episode ended (their bootstrap next_z). Rows of (a) first, then (b).
        new_idx = np.flatnonzero(self._k == 0)
        boot_idx = np.flatnonzero(self._pending & self._pending_boot)
        n_new = new_idx.size
        if n_new or boot_idx.size:
            rows = {
                key: np.concatenate(
                    [self._obs[key][new_idx], self._pending_rows[f"next_{key}"][boot_idx]]
                )
                for key in keys
            }
            z = self._call_hl(rows, n_new + boot_idx.size)
            self._z[new_idx] = z[:n_new]
            for key in keys:
                self._skill_obs[key][new_idx] = self._obs[key][new_idx]
            self._skill_reward[new_idx] = 0.0
            self._skill_steps[new_idx] = 0
            self._hl_steps += n_new
            self._pending_rows["next_z"][boot_idx] = z[n_new:]
        # A pending transition whose episode goes on ended at the env's current observation, where
        # (k == 0) the skill just chosen becomes active: that skill is its next_z.
        cont_idx = np.flatnonzero(self._pending & ~self._pending_boot)
        self._pending_rows["next_z"][cont_idx] = self._z[cont_idx]
        pend_idx = np.flatnonzero(self._pending)
        if pend_idx.size:
            ll_out.append({name: arr[pend_idx] for name, arr in self._pending_rows.items()})
        self._pending[:] = False
        self._pending_boot[:] = False

        # 2) Act. SAME_STEP autoreset: for an env whose episode ended, `next_obs` already holds
        #    the reset observation; the final one is in infos["final_obs"].
        k = self._k.copy()
        actions = self._call_ll()
        next_obs, reward, terminated, truncated, infos = self.envs.step(actions)
        reward = np.asarray(reward, np.float64)
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool)
        done = terminated | truncated
        done_idx = np.flatnonzero(done)
        # The transitions' next observation: the final observation where an episode ended.
        trans_next = {key: np.array(next_obs[key], copy=True) for key in keys}
        if done_idx.size:
            final_obs, final_mask = infos.get("final_obs"), infos.get("_final_obs")
            for i in done_idx:
                if final_obs is None or final_mask is None or not final_mask[i]:
                    raise RuntimeError(
                        f"HierarchicalCollector: env {i} ended an episode without "
                        "infos['final_obs'] (is the vector env in SAME_STEP autoreset mode?)"
                    )
                for key in keys:
                    trans_next[key][i] = final_obs[i][key]
        next_k = (k + 1) % h
        boundary = next_k == 0

        # 3) LL rows. Inside a skill the next skill is the same z (also when the episode ends
        #    mid-skill: a truncated transition bootstraps with the skill it was running). On a
        #    boundary next_z is not known yet: the row waits in the pending slot of its env.
        rows = {key: self._obs[key] for key in keys}
        rows |= {"z": self._z, "k": k, "action": actions, "reward": reward.astype(np.float32)}
        rows |= {f"next_{key}": trans_next[key] for key in keys}
        rows |= {
            "next_z": self._z,
            "next_k": next_k,
            "terminated": terminated,
            "truncated": truncated,
        }
        complete_idx = np.flatnonzero(~boundary)
        if complete_idx.size:
            ll_out.append({name: arr[complete_idx] for name, arr in rows.items()})
        b_idx = np.flatnonzero(boundary)
        for name, arr in rows.items():
            self._pending_rows[name][b_idx] = arr[b_idx]
        self._pending[b_idx] = True
        self._pending_boot[b_idx] = done[b_idx]

        # 4) HL rows: a skill ends after H steps or with its episode; its reward includes this
        #    (last) step's reward and its next observation is where the next skill is chosen (or
        #    the final observation).
        self._skill_reward += reward
        self._skill_steps += 1
        end_idx = np.flatnonzero(boundary | done)
        if end_idx.size:
            hl_rows = {key: self._skill_obs[key][end_idx] for key in keys}
            hl_rows |= {
                "z": self._z[end_idx],
                "reward": self._skill_reward[end_idx].astype(np.float32),
            }
            hl_rows |= {f"next_{key}": trans_next[key][end_idx] for key in keys}
            hl_rows |= {
                "terminated": terminated[end_idx],
                "truncated": truncated[end_idx],
                "steps": self._skill_steps[end_idx].copy(),
            }
            hl_out.append(hl_rows)
            self._skill_reward[end_idx] = 0.0
            self._skill_steps[end_idx] = 0

        # 5) Episode statistics.
        self._ep_return += reward
        self._ep_length += 1
        if done_idx.size:
            ep_out.append(
                {
                    "episode_return": self._ep_return[done_idx].copy(),
                    "episode_length": self._ep_length[done_idx].copy(),
                    "episode_success": _final_success(infos, done_idx),
                }
            )
            self._ep_return[done_idx] = 0.0
            self._ep_length[done_idx] = 0
            self._episodes += done_idx.size

        # 6) Advance: a new episode starts a new skill (k = 0) for that env only.
        self._obs = {key: np.array(next_obs[key], copy=True) for key in keys}
        self._k = np.where(done, 0, next_k).astype(np.int64)
        self._env_steps += self.num_envs

    def restart_episodes(self, seed: int | None = None) -> None:
        """Reset the vector env (``envs.reset(seed=seed)``) and start fresh episodes in all envs.

        Use after :meth:`load_state_dict` when the envs could not be restored to the saved state
        (their RNG / physics state is not part of the collector state). The in-flight episodes
        are abandoned, not counted and yield no episode statistics; nothing already collected is
        lost:

        * each in-flight skill that ran at least one step is closed as an HL transition with
          ``truncated=True``, ending at the observation where it was cut; it is returned by the
          next :meth:`step` call;
        * a pending boundary LL transition gets its ``next_z`` from ``hl_act`` at its own stored
          next observation (as at an episode end); its flags stay as the env reported them.
        """
        if self._started:
            cut = np.flatnonzero(self._skill_steps > 0)
            if cut.size:
                keys = list(self._obs_spec)
                rows = {key: self._skill_obs[key][cut] for key in keys}
                rows |= {"z": self._z[cut], "reward": self._skill_reward[cut].astype(np.float32)}
                rows |= {f"next_{key}": self._obs[key][cut] for key in keys}
                rows |= {
                    "terminated": np.zeros(cut.size, bool),
                    "truncated": np.ones(cut.size, bool),
                    "steps": self._skill_steps[cut].copy(),
                }
                carried = [] if self._carry_hl is None else [self._carry_hl]
                self._carry_hl = _concat([*carried, rows], self._hl_spec())
            self._pending_boot |= self._pending
        self._reset_all(seed)

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue collecting exactly where this collector is.

        Nested dicts of numpy arrays (copies) and python scalars: current observations, active
        skills, skill indices, the observations / partial reward sums / step counts of the active
        skills, episode accumulators, pending LL transitions, HL rows waiting to be emitted, and
        the counters.

        NOT included: the vector env's own state (its RNG, physics, time-limit counters). Resuming
        exactly therefore needs envs in the very same state (e.g. a deterministic env re-created
        and stepped identically). Otherwise the caller re-seeds the envs with
        :meth:`restart_episodes` after :meth:`load_state_dict` and accepts that the in-flight
        episodes restart.
        """
        return {
            "version": _STATE_VERSION,
            "num_envs": self.num_envs,
            "horizon": self.horizon,
            "started": self._started,
            "obs": _copy(self._obs),
            "z": self._z.copy(),
            "k": self._k.copy(),
            "skill_obs": _copy(self._skill_obs),
            "skill_reward": self._skill_reward.copy(),
            "skill_steps": self._skill_steps.copy(),
            "episode_return": self._ep_return.copy(),
            "episode_length": self._ep_length.copy(),
            "pending": self._pending.copy(),
            "pending_boot": self._pending_boot.copy(),
            "pending_rows": _copy(self._pending_rows),
            "carry_hl": {} if self._carry_hl is None else _copy(self._carry_hl),
            "env_steps": self._env_steps,
            "hl_steps": self._hl_steps,
            "episodes": self._episodes,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (same number of envs, horizon and observation space).

        The envs are not touched: either they are already in the saved state, or call
        :meth:`restart_episodes` next (see :meth:`state_dict`).
        """
        if int(state["version"]) != _STATE_VERSION:
            raise ValueError(f"HierarchicalCollector: unknown state version {state['version']}")
        for name, mine in (("num_envs", self.num_envs), ("horizon", self.horizon)):
            if int(state[name]) != mine:
                raise ValueError(
                    f"HierarchicalCollector.load_state_dict: {name} is {mine}, state has "
                    f"{state[name]}"
                )
        n = self.num_envs
        z = np.asarray(state["z"], np.float32)
        if z.ndim != 2 or z.shape[0] != n:
            raise ValueError(f"HierarchicalCollector.load_state_dict: bad z shape {z.shape}")
        nz = z.shape[1]
        self._z = np.zeros((n, 0), np.float32)
        self._pending_rows = self._zeros_rows(self._ll_spec(), n)
        self._set_nz(nz)
        obs_spec = {key: ((n, *shape), dt) for key, (shape, dt) in self._obs_spec.items()}
        ll_spec = {name: ((n, *shape), dt) for name, (shape, dt) in self._ll_spec().items()}
        self._obs = _checked(state["obs"], obs_spec, "obs")
        self._skill_obs = _checked(state["skill_obs"], obs_spec, "skill_obs")
        self._pending_rows = _checked(state["pending_rows"], ll_spec, "pending_rows")
        self._z = z.copy()
        self._k = _array(state["k"], (n,), np.int64, "k")
        self._skill_reward = _array(state["skill_reward"], (n,), np.float64, "skill_reward")
        self._skill_steps = _array(state["skill_steps"], (n,), np.int64, "skill_steps")
        self._ep_return = _array(state["episode_return"], (n,), np.float64, "episode_return")
        self._ep_length = _array(state["episode_length"], (n,), np.int64, "episode_length")
        self._pending = _array(state["pending"], (n,), bool, "pending")
        self._pending_boot = _array(state["pending_boot"], (n,), bool, "pending_boot")
        carry = state["carry_hl"]
        if carry:
            rows = len(next(iter(carry.values())))
            hl_spec = {name: ((rows, *s), dt) for name, (s, dt) in self._hl_spec().items()}
            self._carry_hl = _checked(carry, hl_spec, "carry_hl")
        else:
            self._carry_hl = None
        self._started = bool(state["started"])
        self._env_steps = int(state["env_steps"])
        self._hl_steps = int(state["hl_steps"])
        self._episodes = int(state["episodes"])


# ---------------------------------------------------------------------- helpers


def _final_success(infos: Mapping[str, Any], idx: np.ndarray) -> np.ndarray:
    """``info["success"]`` of the final step of the envs ``idx`` (SAME_STEP: in
    ``infos["final_info"]``, since ``infos`` itself holds the reset info there); NaN if absent."""
    out = np.full(idx.size, np.nan, np.float32)
    final = infos.get("final_info")
    if isinstance(final, Mapping) and "success" in final:
        values = np.asarray(final["success"])
        mask = np.asarray(final.get("_success", np.ones(values.shape[0], bool)))
        for j, i in enumerate(idx):
            if mask[i]:
                out[j] = float(bool(values[i]))
    return out


def _concat(
    chunks: list[dict[str, np.ndarray]], spec: Mapping[str, FieldSpec]
) -> dict[str, np.ndarray]:
    """Stack row chunks field by field; zero rows (with the right shapes) if there are none."""
    if not chunks:
        return {name: np.zeros((0, *shape), dt) for name, (shape, dt) in spec.items()}
    return {
        name: np.concatenate([c[name] for c in chunks]).astype(dt, copy=False)
        for name, (_, dt) in spec.items()
    }


def _copy(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.array(arr, copy=True) for name, arr in arrays.items()}


def _array(value: Any, shape: tuple[int, ...], dtype: Any, name: str) -> np.ndarray:
    arr = np.array(value, dtype=dtype, copy=True)
    if arr.shape != shape:
        raise ValueError(
            f"HierarchicalCollector.load_state_dict: {name!r}: expected shape {shape}, "
            f"got {arr.shape}"
        )
    return arr


def _checked(
    arrays: Mapping[str, Any], spec: Mapping[str, FieldSpec], what: str
) -> dict[str, np.ndarray]:
    if set(arrays) != set(spec):
        raise ValueError(
            f"HierarchicalCollector.load_state_dict: {what}: expected fields {sorted(spec)}, "
            f"got {sorted(arrays)}"
        )
    return {name: _array(arrays[name], s, dt, f"{what}/{name}") for name, (s, dt) in spec.items()}
