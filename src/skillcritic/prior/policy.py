"""A trained prior used as a policy: HL = the learned prior, LL = the skill decoder.

The reference authors judge a prior before RL by running it on the target task with no
learning: every H steps a skill z is sampled from p(z | s), and the decoder turns it into
actions. ``PriorPolicy`` does that for a batch of envs in lockstep (one network call per step
for all of them); ``run_prior_episodes`` runs whole episodes and records the paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium
import numpy as np
import torch
from torch import Tensor

from skillcritic.models.nets import views_to_float
from skillcritic.models.skills import FlatBCModel, OpenLoopSkillModel
from skillcritic.prior.module import SkillPriorModule


class PriorPolicy:
    """Acts with a trained skill prior on a batch of envs that start and step together.

    Args:
        module: the trained prior (put in eval mode here).
        deterministic: use the prior's mean skill (and the flat policy's mean action).
        generator: torch random generator for the skill samples.
    """

    def __init__(
        self,
        module: SkillPriorModule,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.module = module.eval()
        self.spec = module.spec
        self.deterministic = deterministic
        self.generator = generator
        self.step = 0
        self._z: Tensor | None = None
        self._plan: Tensor | None = None

    def reset(self) -> None:
        """Start new episodes: the next step chooses a new skill."""
        self.step = 0

    def _observation(self, states: np.ndarray, views: np.ndarray | None) -> Tensor:
        """The model's observation: the view pair (previous, current) or the (normalised) state."""
        if self.spec.image:
            assert views is not None, "this prior needs the env's views"
            pair = views_to_float(torch.as_tensor(views))  # (N, 2, C, S, S)
            return pair.flatten(1, 2)
        return self.module.normalise_states(torch.as_tensor(states, dtype=torch.float32))

    def _sample(self, mu: Tensor, sigma: Tensor) -> Tensor:
        if self.deterministic:
            return mu
        return mu + sigma * torch.randn(mu.shape, generator=self.generator)

    @torch.no_grad()
    def act(self, states: np.ndarray, views: np.ndarray | None = None) -> np.ndarray:
        """Actions (N, da) for the current states (N, ds) and view stacks (N, 2, C, S, S)."""
        observation = self._observation(states, views)
        model = self.module.model
        if isinstance(model, FlatBCModel):
            policy = model.action_distribution(observation)
            action = self._sample(policy.mu, policy.sigma)
        else:
            k = self.step % self.spec.horizon
            if k == 0:
                prior = model.prior(observation)
                self._z = self._sample(prior.mu, prior.sigma)
                if isinstance(model, OpenLoopSkillModel):
                    self._plan = model.decode(self._z, model.step_features(observation))
            assert self._z is not None
            if isinstance(model, OpenLoopSkillModel):
                assert self._plan is not None
                action = self._plan[:, k]
            else:
                action = model.decode_step(self._z, model.step_features(observation), k)
        self.step += 1
        return action.clamp(-1.0, 1.0).numpy()


@dataclass
class PriorRollouts:
    """Episodes of the prior on a task: per-episode return and success, and the paths."""

    returns: np.ndarray  # (N,)
    successes: np.ndarray  # (N,) bool
    positions: np.ndarray  # (N, T+1, 2) (row, col) along each episode

    @property
    def success_rate(self) -> float:
        return float(self.successes.mean())


def run_prior_episodes(
    policy: PriorPolicy, envs: list[gymnasium.Env], seed: int, max_steps: int | None = None
) -> PriorRollouts:
    """One episode per env, all stepped together until each is done (or ``max_steps``)."""
    observations = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    policy.reset()
    n = len(envs)
    limit = max_steps or envs[0].spec.max_episode_steps or 2000
    returns = np.zeros(n)
    successes = np.zeros(n, dtype=bool)
    done = np.zeros(n, dtype=bool)
    positions = [np.stack([o["state"][:2] for o in observations])]
    for _ in range(limit):
        states = np.stack([o["state"] for o in observations])
        views = np.stack([o["view"] for o in observations]) if "view" in observations[0] else None
        actions = policy.act(states, views)
        for i, env in enumerate(envs):
            if done[i]:
                continue
            observations[i], reward, terminated, truncated, info = env.step(actions[i])
            returns[i] += reward
            successes[i] |= bool(info.get("success", False))
            done[i] = terminated or truncated
        positions.append(np.stack([o["state"][:2] for o in observations]))
        if done.all():
            break
    return PriorRollouts(returns, successes, np.stack(positions, axis=1))
