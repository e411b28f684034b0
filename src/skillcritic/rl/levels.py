"""One "SAC level": actor, critics, targets and temperature, with one update step.

The same :class:`SACLevel` serves flat SAC (entropy regulariser), the SPiRL HL and both
Skill-Critic levels (divergence to a frozen reference, reference §3.1, §3.2, §3.5). The loss
arithmetic lives in :mod:`skillcritic.rl.losses`; this module wires networks and optimisers in the
reference order (§3.1): α step → actor loss → critic target and loss → actor step → critic step →
soft target update.

:func:`prior_policy_head` and :func:`frozen_prior` turn a trained skill prior into the SPiRL HL
policy (trainable copy) and its reference for ``D_H`` (frozen copy), BatchNorm kept in eval mode
(reference §3.6.4).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from skillcritic.models.distributions import DiagGaussian, kl_monte_carlo
from skillcritic.models.nets import mlp, normalised
from skillcritic.rl.losses import (
    actor_loss,
    critic_diagnostics,
    critic_loss,
    critic_target,
    divergence_temperature_loss,
    entropy_temperature_loss,
    soft_next_value,
    squashed_sample,
    straight_through_clip,
)
from skillcritic.rl.targets import polyak_update

Observation = Tensor | Mapping[str, Tensor]
CriticInput = Callable[[Any, Tensor], Tensor]
REGULARISERS = ("entropy", "divergence")
SQUASHES = ("tanh", "clip")  # how a level maps its Gaussian sample u to an action
REFERENCE_KEY = "ref"  # observation key of cached reference parameters [μ, log σ]


class CriticEnsemble(nn.Module):
    """``n_critics`` independent MLP critics ``Q_1 … Q_n`` over one concatenated input (no
    BatchNorm); the reference's twin critic is ``n_critics=2``.

    Targets and the actor use the minimum over all members. With more than two (SAC-N, An et al.
    2021; not the reference) the minimum is pessimistic where the members disagree, which can
    be far from the replay's data, where differently initialised critics may extrapolate
    differently (on maze ``spirl`` ten of them agreed there: docs/results.md).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = 256,
        n_hidden_layers: int = 2,
        layer_norm: bool = False,
        n_critics: int = 2,
    ) -> None:
        """Each member is ``mlp(in_dim, 1, hidden, n_hidden_layers, batch_norm=False,
        layer_norm=layer_norm)``, registered as ``q1 … qn``."""
        super().__init__()
        if n_critics < 1:
            raise ValueError(f"a critic ensemble needs at least one member, got {n_critics}")
        for i in range(1, n_critics + 1):
            member = mlp(
                in_dim, 1, hidden, n_hidden_layers, batch_norm=False, layer_norm=layer_norm
            )
            self.add_module(f"q{i}", member)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """``(..., in_dim)`` → ``(q1, …, qn)``, each of shape ``(...)``."""
        return tuple(member(x).squeeze(-1) for member in self.children())

    def min(self, x: Tensor) -> Tensor:
        """``min_i Q_i`` elementwise, shape ``(...)``."""
        return torch.stack(self(x)).amin(dim=0)


def _default_critic_input(obs: Tensor, action: Tensor) -> Tensor:
    """``concat(obs, action)`` along the last dim."""
    return torch.cat([obs, action], dim=-1)


class SACLevel(nn.Module):
    """Actor + critic ensemble (+ targets) + temperature of one SAC level.

    Args:
        actor: maps an observation to a :class:`DiagGaussian` over pre-tanh actions.
        critic: the critic ensemble; its target is a frozen deep copy.
        action_dim: size of the action (sets the default target entropy ``−action_dim``).
        regulariser: ``"entropy"`` (``log π``) or ``"divergence"`` (``D = KL_MC(π ‖ reference)``).
        target: target entropy H̄ (default ``−action_dim``) or target divergence δ (required).
        reference: the frozen prior (observation → DiagGaussian) for ``"divergence"``.
        gamma, tau: discount and Polyak rate.
        action_scale: actions are ``action_scale·tanh(u)`` (``squash="tanh"``).
        squash: ``"tanh"`` (SAC's squashed Gaussian) or ``"clip"``: actions ``clip(u, ±scale)``
            with a straight-through gradient, so a policy whose mean was fit to raw actions (a
            decoder copy) acts that mean. Needs ``regulariser="divergence"``: D is a KL between
            the Gaussians over u, so it needs no density of the clipped action.
        init_alpha: initial temperature α₀.
        min_alpha: floor of the temperature (None: none). It keeps the KL to the prior (or the
            entropy) from being switched off while D stays below δ before any reward arrives.
        kl_samples: Monte-Carlo samples for D.
        max_value: upper bound of the TD target (the largest return possible), or None.

    The flags ``train_actor``, ``train_critic`` and ``train_alpha`` (attributes, all True by
    default) switch the three steps of :meth:`update` on and off; the soft target update runs only
    with the critic step.
    """

    def __init__(
        self,
        actor: nn.Module,
        critic: CriticEnsemble,
        action_dim: int,
        *,
        regulariser: str = "entropy",
        target: float | None = None,
        reference: nn.Module | None = None,
        gamma: float = 0.99,
        tau: float = 0.005,
        action_scale: float = 1.0,
        squash: str = "tanh",
        init_alpha: float = 1.0,
        min_alpha: float | None = None,
        kl_samples: int = 10,
        max_value: float | None = None,
    ) -> None:
        super().__init__()
        if regulariser not in REGULARISERS:
            raise ValueError(f"regulariser must be one of {REGULARISERS}, got {regulariser!r}")
        if regulariser == "divergence" and (reference is None or target is None):
            raise ValueError("regulariser='divergence' needs a reference and a target divergence")
        if squash not in SQUASHES:
            raise ValueError(f"squash must be one of {SQUASHES}, got {squash!r}")
        if squash == "clip" and regulariser != "divergence":
            raise ValueError("squash='clip' needs regulariser='divergence' (no entropy of a clip)")
        if init_alpha <= 0:
            raise ValueError(f"init_alpha must be positive, got {init_alpha}")
        self.actor = actor
        self.critic = critic
        self.critic_target = copy.deepcopy(critic).requires_grad_(False)
        self.reference = reference.requires_grad_(False).eval() if reference is not None else None
        self.log_alpha = nn.Parameter(torch.tensor(float(init_alpha)).log())
        self.action_dim = action_dim
        self.regulariser = regulariser
        self.target = float(target) if target is not None else -float(action_dim)
        self.gamma, self.tau = gamma, tau
        self.action_scale = action_scale
        self.squash = squash
        self.kl_samples = kl_samples
        self.max_value = max_value
        self.log_min_alpha = None if min_alpha is None else math.log(min_alpha)
        self.train_actor = self.train_critic = self.train_alpha = True

    def train(self, mode: bool = True) -> SACLevel:
        """Set the mode; the target critic and the reference always stay in eval mode."""
        super().train(mode)
        self.critic_target.eval()
        if self.reference is not None:
            self.reference.eval()
        return self

    @property
    def alpha(self) -> Tensor:
        """The temperature ``exp(log α)``, detached."""
        return self.log_alpha.detach().exp()

    @torch.no_grad()
    def act(self, obs: Observation, deterministic: bool = False) -> Tensor:
        """An action ``scale·tanh(u)`` (or ``clip(u, ±scale)``): ``u ~ π(obs)``, or ``u = μ``
        when deterministic."""
        dist: DiagGaussian = self.actor(obs)
        if self.squash == "clip":
            u = dist.mu if deterministic else dist.sample()
            return u.clamp(-self.action_scale, self.action_scale)
        if deterministic:
            return self.action_scale * torch.tanh(dist.mu)
        return squashed_sample(dist, self.action_scale)[0]

    @torch.no_grad()
    def reference_params(self, obs: Observation) -> Tensor:
        """The frozen reference's ``[μ, log σ]`` (B, 2·action_dim) at ``obs``: what replay rows
        cache as ``obs[REFERENCE_KEY]``, so updates need not run the frozen network again."""
        assert self.reference is not None
        prior: DiagGaussian = self.reference(obs)
        return torch.cat([prior.mu, prior.log_sigma], dim=-1)

    def regularised_sample(self, obs: Observation) -> tuple[Tensor, Tensor]:
        """A reparameterised squashed action and its regulariser (``log π`` or ``D``), (B,).

        The reference distribution comes from ``obs[REFERENCE_KEY]`` where the batch caches it
        (see :meth:`reference_params`), else from the frozen reference network.
        """
        dist: DiagGaussian = self.actor(obs)
        if self.squash == "clip":
            u = dist.rsample()
            action = straight_through_clip(u, self.action_scale)
        else:
            action, _, log_prob = squashed_sample(dist, self.action_scale)
            if self.regulariser == "entropy":
                return action, log_prob
        if isinstance(obs, Mapping) and REFERENCE_KEY in obs:
            prior = DiagGaussian.from_params(obs[REFERENCE_KEY])
        else:
            assert self.reference is not None
            with torch.no_grad():
                prior = self.reference(obs)
        return action, kl_monte_carlo(dist, prior.detach(), self.kl_samples)

    def update(
        self,
        batch: Mapping[str, Any],
        optimizers: Mapping[str, torch.optim.Optimizer],
        critic_input: CriticInput = _default_critic_input,
        *,
        next_value_override: Tensor | None = None,
    ) -> dict[str, float]:
        """One SAC update on ``batch`` (``obs, action, reward, next_obs, terminated``).

        ``critic_input(obs, action)`` builds the critic's input. ``next_value_override`` (B,)
        replaces the soft next value ``min Q̄(s', ã') − α·reg(s')`` in the TD target.
        Returns logging floats (``actor_loss`` only when the actor learned).
        """
        obs, next_obs = batch["obs"], batch["next_obs"]

        # 1. temperature step (on a sample of the current policy; none while both are frozen)
        sampled = self.train_actor or self.train_alpha
        if sampled:
            with torch.set_grad_enabled(self.train_actor):
                action_pi, reg = self.regularised_sample(obs)
        if self.train_alpha:
            if self.regulariser == "entropy":
                alpha_loss = entropy_temperature_loss(self.log_alpha, reg, self.target)
            else:
                alpha_loss = divergence_temperature_loss(self.log_alpha, reg, self.target)
            optimizers["alpha"].zero_grad(set_to_none=True)
            alpha_loss.backward()
            optimizers["alpha"].step()
            if self.log_min_alpha is not None:
                with torch.no_grad():
                    self.log_alpha.clamp_(min=self.log_min_alpha)
        alpha = self.alpha

        # 2. actor loss (critic parameters get no gradient from it, see step 4)
        pi_loss = None
        actor_params = [p for p in self.actor.parameters() if p.requires_grad]
        if self.train_actor and actor_params:
            q_pi = self.critic.min(critic_input(obs, action_pi))
            pi_loss = actor_loss(q_pi, reg, alpha)

        # 3. critic target and loss
        with torch.no_grad():
            if next_value_override is None:
                next_action, next_reg = self.regularised_sample(next_obs)
                next_q = self.critic_target.min(critic_input(next_obs, next_action))
                next_value = soft_next_value(next_q, next_reg, alpha)
            else:
                next_value = next_value_override
            y = critic_target(batch["reward"], batch["terminated"], next_value, self.gamma)
            if self.max_value is not None:  # no return can exceed it: cut overestimation off
                y = y.clamp(max=self.max_value)
        q_values = self.critic(critic_input(obs, batch["action"]))
        q_loss = critic_loss(q_values, y)

        # 4. actor step: backward only into the actor's parameters
        if pi_loss is not None:
            optimizers["actor"].zero_grad(set_to_none=True)
            pi_loss.backward(inputs=actor_params)
            optimizers["actor"].step()

        # 5. critic step and 6. soft target update
        if self.train_critic:
            optimizers["critic"].zero_grad(set_to_none=True)
            q_loss.backward()
            optimizers["critic"].step()
            polyak_update(self.critic, self.critic_target, self.tau)

        diagnostics = critic_diagnostics(q_values, y)
        stats = {
            "critic_loss": float(q_loss.detach()),
            "alpha": float(alpha),
            "q_mean": float(diagnostics["q_mean"]),
            "target_mean": float(diagnostics["target_mean"]),
        }
        if sampled:
            stats["regulariser"] = float(reg.detach().mean())
        if pi_loss is not None:  # only when the actor learned in this update
            stats["actor_loss"] = float(pi_loss.detach())
        return stats


def make_optimizers(
    level: SACLevel,
    lr: float = 3e-4,
    actor_lr: float | None = None,
    alpha_lr: float | None = None,
) -> dict[str, torch.optim.Optimizer]:
    """Adam optimisers ``{"actor", "critic", "alpha"}`` for a level (frozen params left out);
    the actor and the temperature step with ``actor_lr`` and ``alpha_lr`` when given, else
    with ``lr``.

    Fused Adam: one kernel per step instead of a handful of small ops per parameter tensor.
    """
    actor_params = [p for p in level.actor.parameters() if p.requires_grad]
    optimizers: dict[str, torch.optim.Optimizer] = {
        "critic": torch.optim.Adam(level.critic.parameters(), lr=lr, fused=True),
        "alpha": torch.optim.Adam([level.log_alpha], lr=alpha_lr or lr, fused=True),
    }
    if actor_params:
        optimizers["actor"] = torch.optim.Adam(actor_params, lr=actor_lr or lr, fused=True)
    return optimizers


class EvalBatchNorm(nn.Module):
    """Wraps a module so that its BatchNorm layers stay in eval mode (running stats frozen)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.train(True)

    def train(self, mode: bool = True) -> EvalBatchNorm:
        """Set the mode of everything but the BatchNorm layers, which stay in eval mode."""
        super().train(mode)
        for module in self.net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Delegate to the wrapped module."""
        return self.net(*args, **kwargs)


def prior_state_statistics(prior_module: Any) -> tuple[Tensor | None, Tensor | None]:
    """Copies of the (mean, std) a state prior normalises its states with, which copies of its
    networks must use too; ``(None, None)`` for image priors and priors on raw states."""
    if prior_module.spec.image or prior_module.state_mean is None:
        return None, None
    return prior_module.state_mean.detach().clone(), prior_module.state_std.detach().clone()


class PriorHead(EvalBatchNorm):
    """A copy of a trained prior ``p(z | s)``: observation → DiagGaussian over z.

    State priors trained on normalised states normalise the input with the prior's statistics
    (copied as buffers); image priors take float view pairs as the prior does.
    """

    def __init__(
        self, net: nn.Module, state_mean: Tensor | None = None, state_std: Tensor | None = None
    ) -> None:
        super().__init__(net)
        self.register_buffer("state_mean", state_mean)
        self.register_buffer("state_std", state_std)

    def forward(self, obs: Tensor) -> DiagGaussian:
        """The prior's Gaussian over z for ``obs`` (``(..., *obs_shape)``)."""
        return self.net(normalised(obs, self.state_mean, self.state_std))


def prior_policy_head(prior_module: Any, net: nn.Module | None = None) -> PriorHead:
    """A trainable deep copy of ``net`` (default ``prior_module.model.prior``: the SPiRL HL
    policy), BN in eval, with the prior's state normalisation if it was trained with one."""
    net = prior_module.model.prior if net is None else net
    head = PriorHead(copy.deepcopy(net), *prior_state_statistics(prior_module))
    return head.requires_grad_(True)


def frozen_prior(prior_module: Any) -> PriorHead:
    """A frozen deep copy of the prior (the reference for ``D_H``), in eval mode."""
    return prior_policy_head(prior_module).requires_grad_(False).eval()


class DecoderHead(EvalBatchNorm):
    """π_L(a | o, z, k) from a trained ``cond_decoder`` prior (Skill-Critic's low level).

    The mean is the copied decoder's mean head on ``[e(o), z, onehot(k)]`` (e = the copied
    observation features, e.g. the view-pair conv; states normalised with the prior's statistics
    where it was trained with them). The log σ is either a linear head on the same
    input initialised to output exactly ``log_sigma`` (zero weights, bias ``log_sigma``; the
    trainable policy) or the constant ``log_sigma`` (the frozen action prior with σ_â). At
    initialisation the policy therefore equals its reference and D_L = 0. The decoder's own,
    never-trained log σ head is not used (the reference's quirk, fixed on purpose).
    """

    def __init__(
        self, prior_module: Any, log_sigma: float = -3.0, learn_sigma: bool = True
    ) -> None:
        model = copy.deepcopy(prior_module.model)
        if not hasattr(model, "action_distribution") or not hasattr(model, "time_onehot"):
            raise ValueError(
                f"the low-level policy needs a cond_decoder prior, got {prior_module.spec.variant}"
            )
        super().__init__(nn.ModuleDict({"features": model.features, "decoder": model.decoder}))
        self.register_buffer("time_onehot", model.time_onehot.clone())
        mean, std = prior_state_statistics(prior_module)
        self.register_buffer("state_mean", mean)
        self.register_buffer("state_std", std)
        self.action_dim = prior_module.spec.action_dim
        self.log_sigma = log_sigma
        self.log_sigma_head: nn.Linear | None = None
        if learn_sigma:
            in_dim = model.decoder[0].in_features
            self.log_sigma_head = nn.Linear(in_dim, self.action_dim)
            nn.init.zeros_(self.log_sigma_head.weight)
            nn.init.constant_(self.log_sigma_head.bias, log_sigma)

    def forward(self, obs: Tensor, z: Tensor, k: Tensor) -> DiagGaussian:
        """The Gaussian over pre-tanh actions for observations ``(N, *obs_shape)``, skills
        ``(N, nz)`` and time indices ``k`` ``(N,)`` (int)."""
        features = self.net["features"](normalised(obs, self.state_mean, self.state_std))
        inputs = torch.cat([features, z, self.time_onehot[k]], dim=-1)
        mu = self.net["decoder"](inputs)[..., : self.action_dim]
        if self.log_sigma_head is None:
            return DiagGaussian(mu, torch.full_like(mu, self.log_sigma))
        return DiagGaussian(mu, self.log_sigma_head(inputs))


def decoder_policy_head(prior_module: Any, log_sigma: float = -3.0) -> DecoderHead:
    """The trainable Skill-Critic LL policy, initialised from the cond_decoder decoder."""
    return DecoderHead(prior_module, log_sigma, learn_sigma=True).requires_grad_(True)


def frozen_decoder(prior_module: Any, log_sigma: float = -3.0) -> DecoderHead:
    """The frozen LL action prior: decoder mean with the fixed log σ_â (the reference of D_L)."""
    return DecoderHead(prior_module, log_sigma, learn_sigma=False).requires_grad_(False).eval()
