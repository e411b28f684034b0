"""The eight agents of DESIGN §6 as one two-level structure.

Every agent is a :class:`SkillAgent`: a high level that picks ``z`` every ``H`` env steps and a
low level that turns ``(o, z, k)`` into actions. Flat agents are the case ``H = 1`` whose "skill"
is the action itself (the low level passes it through), so one collector, one replay layout and
one update loop serve all of them:

==============  =====  ===========================================  ==============================
agent           H      high level (SAC, regulariser)                low level
==============  =====  ===========================================  ==============================
sac             1      state MLP policy, entropy                    identity
bc_sac          1      flat BC policy copy, entropy                 identity
flat_prior      1      flat BC policy copy, KL to frozen BC         identity
no_prior        prior  state MLP policy over z, entropy             frozen open-loop decoder
spirl           prior  prior copy, KL to frozen prior               frozen open-loop decoder
spirl_cl        prior  prior copy, KL to frozen prior               frozen closed-loop decoder
spirl_cd        prior  prior copy, KL to frozen prior               frozen cond. decoder (mean)
skill_critic    prior  prior copy, KL to frozen prior               SAC: decoder copy, KL to the
                                                                    frozen decoder with σ_â
==============  =====  ===========================================  ==============================

Observations are dicts of tensors (``state`` float32 and, for image envs, ``view`` uint8). The
networks copied from an image prior see the view pair; everything learned from scratch (critics,
state policies) sees the state (reference §6.10).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from skillcritic.models.distributions import DiagGaussian
from skillcritic.models.nets import mlp, normalised, views_to_float
from skillcritic.models.skills import FlatBCModel, OpenLoopSkillModel
from skillcritic.prior.module import SkillPriorModule
from skillcritic.rl.levels import (
    REFERENCE_KEY,
    SQUASHES,
    CriticEnsemble,
    DecoderHead,
    EvalBatchNorm,
    PriorHead,
    SACLevel,
    decoder_policy_head,
    frozen_decoder,
    frozen_prior,
    make_optimizers,
    prior_policy_head,
    prior_state_statistics,
)
from skillcritic.rl.losses import BOUNDARY_VALUES, ll_bootstrap_value

Obs = Mapping[str, Tensor]

# The prior variant each agent needs (None: no prior).
AGENT_PRIORS: dict[str, str | None] = {
    "sac": None,
    "bc_sac": "flat",
    "flat_prior": "flat",
    "no_prior": "open_loop",
    "spirl": "open_loop",
    "spirl_cl": "closed_loop",
    "spirl_cd": "cond_decoder",
    "skill_critic": "cond_decoder",
}
AGENTS = tuple(AGENT_PRIORS)
STAGES = ("warm_start", "hybrid")


@dataclass(frozen=True)
class AgentSpec:
    """Hyperparameters of an agent (reference §3.4 defaults); saved in RL checkpoints."""

    name: str
    state_dim: int
    action_dim: int
    gamma: float = 0.99
    tau: float = 0.005
    lr: float = 3e-4
    init_alpha: float = 1.0
    min_alpha: float | None = None  # floor of the HL (flat: the only) temperature; None: none
    alpha_lr: float | None = None  # Adam step of that temperature; None: lr
    kl_samples: int = 10
    target_divergence: float = 1.0  # δ_H (δ of flat_prior)
    target_entropy: float | None = None  # H̄ of entropy agents; None: −|action|
    skill_scale: float = 2.0  # z = skill_scale·tanh(u)
    action_scale: float = 1.0  # flat and LL actions = action_scale·tanh(u): the env's box
    policy_hidden: int = 256  # policies learned from scratch (sac, no_prior)
    policy_layers: int = 2
    critic_hidden: int = 256  # HL / flat critic
    critic_layers: int = 2
    critic_layer_norm: bool = False  # LayerNorm in every critic's hidden layers (not the reference)
    n_critics: int = 2  # members of every critic ensemble; min over all (> 2: not the reference)
    ll_target_divergence: float = 80.0  # δ_L (skill_critic)
    ll_log_sigma: float = -3.0  # log σ_â of the LL action prior and π_L's initial log σ
    ll_min_alpha: float | None = None  # floor of α_L (skill_critic); None: none
    ll_actor_lr: float | None = None  # Adam step of π_L (skill_critic); None: lr
    ll_squash: str = "tanh"  # LL actions: tanh(u) (the reference) | clip(u): the decoder's own
    ll_critic_hidden: int = 64
    ll_critic_layers: int = 3
    boundary_value: str = "reference"
    max_reward: float | None = None  # per env step: bounds the TD targets (None: unbounded)
    # Per-dimension state statistics that critics and from-scratch policies normalise with
    # (envs with env.normalize_states; None: raw states). Prior copies use the prior's own.
    state_mean: tuple[float, ...] | None = None
    state_std: tuple[float, ...] | None = None

    def value_bound(self, horizon: int) -> float | None:
        """The largest value of a level whose steps span ``horizon`` env steps (each rewarded
        at most ``max_reward``): ``horizon·max_reward / (1 − γ)``; None when unbounded."""
        if self.max_reward is None or self.gamma >= 1.0:
            return None
        return horizon * self.max_reward / (1.0 - self.gamma)

    def __post_init__(self) -> None:
        if self.name not in AGENTS:
            raise ValueError(f"unknown agent {self.name!r}; use one of {AGENTS}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"agent.gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"agent.tau must be in (0, 1], got {self.tau}")
        for name in ("lr", "init_alpha", "skill_scale", "action_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"agent.{name} must be a positive number, got {value}")
        if self.target_divergence < 0 or self.ll_target_divergence < 0:
            raise ValueError(
                f"target divergences must be >= 0, got δ_H={self.target_divergence}, "
                f"δ_L={self.ll_target_divergence}"
            )
        if self.ll_squash not in SQUASHES:
            raise ValueError(f"agent.ll_squash must be one of {SQUASHES}, got {self.ll_squash!r}")
        for name in ("min_alpha", "alpha_lr", "ll_min_alpha", "ll_actor_lr"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"agent.{name} must be a positive number or null, got {value}")
        if self.n_critics < 1:
            raise ValueError(f"agent.n_critics must be >= 1, got {self.n_critics}")
        if self.kl_samples < 1:
            raise ValueError(f"agent.kl_samples must be >= 1, got {self.kl_samples}")
        stats = (self.state_mean, self.state_std)
        if (stats[0] is None) != (stats[1] is None):
            raise ValueError("agent.state_mean and agent.state_std go together")
        if stats[0] is not None and not len(stats[0]) == len(stats[1]) == self.state_dim:
            raise ValueError(f"state statistics need {self.state_dim} values each")
        if stats[1] is not None and min(stats[1]) <= 0:
            raise ValueError("agent.state_std must be positive")
        if self.boundary_value not in BOUNDARY_VALUES:
            raise ValueError(
                f"agent.boundary_value must be one of {BOUNDARY_VALUES}, got "
                f"{self.boundary_value!r}"
            )


# ---------------------------------------------------------------------- observation heads


def view_pairs(obs: Obs) -> Tensor:
    """The env's uint8 view stack (N, 2, C, S, S) as the models' float pair (N, 2C, S, S).

    Update batches carry it ready as ``obs["pairs"]`` (converted once, read by every network).
    """
    if "pairs" in obs:
        return obs["pairs"]
    return views_to_float(obs["view"]).flatten(1, 2)


def with_view_pairs(obs: Obs) -> dict[str, Tensor]:
    """``obs`` plus its float view pairs (``pairs``) where it has views."""
    return {**obs, "pairs": view_pairs(obs)} if "view" in obs else dict(obs)


class StateNormaliser(nn.Module):
    """``(state − mean) / std`` with fixed statistics; the identity without them."""

    def __init__(self, mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> None:
        super().__init__()
        # Not persistent: the statistics live in the AgentSpec (the checkpoint's hparams).
        for name, values in (("mean", mean), ("std", std)):
            tensor = None if values is None else torch.tensor(values)
            self.register_buffer(name, tensor, persistent=False)

    def forward(self, state: Tensor) -> Tensor:
        return normalised(state, self.mean, self.std)


class ObsHead(nn.Module):
    """Feeds a policy-like head from an observation dict: the view pair or the (optionally
    normalised) state."""

    def __init__(
        self, head: nn.Module, image: bool, normalise: StateNormaliser | None = None
    ) -> None:
        super().__init__()
        self.head = head
        self.image = image
        self.normalise = normalise or StateNormaliser(None, None)

    def forward(self, obs: Obs) -> DiagGaussian:
        return self.head(view_pairs(obs) if self.image else self.normalise(obs["state"]))


class GaussianMLP(nn.Module):
    """A policy learned from scratch: MLP → DiagGaussian (reference §3.1, no normalisation)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = mlp(in_dim, 2 * out_dim, hidden, layers, batch_norm=False)

    def forward(self, x: Tensor) -> DiagGaussian:
        return DiagGaussian.from_params(self.net(x))


class _FlatPolicy(nn.Module):
    """``FlatBCModel`` as a module whose forward is its action distribution."""

    def __init__(self, model: FlatBCModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, obs: Tensor) -> DiagGaussian:
        return self.model.action_distribution(obs)


def _flat_policy_head(prior: SkillPriorModule) -> PriorHead:
    """A trainable copy of the flat BC policy (BN in eval; state normalisation if trained so)."""
    return prior_policy_head(prior, _FlatPolicy(prior.model))


class LowLevelHead(nn.Module):
    """π_L / the action prior over an LL observation dict (``state``/``view``, ``z``, ``k``)."""

    def __init__(self, head: DecoderHead, image: bool) -> None:
        super().__init__()
        self.head = head
        self.image = image

    def forward(self, obs: Obs) -> DiagGaussian:
        features = view_pairs(obs) if self.image else obs["state"]
        return self.head(features, obs["z"], obs["k"])


class FrozenSkills(EvalBatchNorm):
    """The frozen decoder of a SPiRL-family agent: action means for ``(o, z, k)``.

    Open-loop priors decode a whole H-step plan from z (cached by :class:`LowLevelActor`);
    closed-loop and conditioned decoders act on the current observation. Actions are the decoder
    means clipped to the action box, as the prior check runs them (no tanh: the decoders were fit
    to raw actions in [-1, 1]).
    """

    def __init__(self, prior: SkillPriorModule) -> None:
        model = copy.deepcopy(prior.model)
        super().__init__(model)
        self.requires_grad_(False).eval()
        self.image = prior.spec.image
        self.open_loop = isinstance(model, OpenLoopSkillModel)
        self.conditioned = hasattr(model, "action_distribution")
        mean, std = prior_state_statistics(prior)
        self.register_buffer("state_mean", mean)
        self.register_buffer("state_std", std)

    def plan(self, z: Tensor) -> Tensor:
        """The open-loop plan (N, H, da) of skills z (N, nz)."""
        return self.net.decoder(z).clamp(-1.0, 1.0)

    def forward(self, obs: Obs, z: Tensor, k: Tensor) -> Tensor:
        """Action means (N, da) for observations, skills and indices k (N,) (open-loop: step k
        of the plan, decoded here; :class:`LowLevelActor` caches plans instead)."""
        if self.open_loop:
            return self.plan(z)[torch.arange(z.shape[0], device=z.device), k]
        if self.image:
            features = self.net.step_features(view_pairs(obs))
        else:
            state = normalised(obs["state"], self.state_mean, self.state_std)
            features = self.net.step_features(state)
        if self.conditioned:
            inputs = torch.cat([features, z, self.net.time_onehot[k]], dim=-1)
            mean = self.net.decoder(inputs)[..., : self.net.spec.action_dim]
            return mean.clamp(-1.0, 1.0)
        return self.net.decoder(torch.cat([features, z], dim=-1)).clamp(-1.0, 1.0)


# ---------------------------------------------------------------------- the agent


class SkillAgent(nn.Module):
    """High level (always a :class:`SACLevel`) + low level (frozen skills, a SACLevel, or none).

    Attributes:
        horizon: H (1 for flat agents).
        hl: the high-level SAC level; its "action" is z (or the env action when H = 1).
        ll: Skill-Critic's low-level SAC level, else None.
        skills: the frozen decoder of SPiRL-family agents, else None.
        hl_image, ll_image: whether the HL / LL policy reads the view pair.
        random_warmup: warm-up acts uniformly at random (flat SAC) instead of from the policy.
    """

    def __init__(
        self,
        spec: AgentSpec,
        horizon: int,
        nz: int,
        hl: SACLevel,
        *,
        ll: SACLevel | None = None,
        skills: FrozenSkills | None = None,
        hl_image: bool = False,
        ll_image: bool = False,
        random_warmup: bool = False,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.horizon = horizon
        self.nz = nz
        self.hl = hl
        self.ll = ll
        self.skills = skills
        self.hl_image = hl_image
        self.ll_image = ll_image
        self.random_warmup = random_warmup
        self.normalise = StateNormaliser(spec.state_mean, spec.state_std)
        self.stage = "hybrid"
        self.ll_deterministic = False

    @property
    def uses_views(self) -> bool:
        """Whether any policy reads the views (else the replay does not store them)."""
        skills_see = self.skills is not None and self.skills.image and not self.skills.open_loop
        return self.hl_image or self.ll_image or skills_see

    @property
    def flat(self) -> bool:
        """H = 1 and the HL action is the env action."""
        return self.horizon == 1 and self.skills is None and self.ll is None

    def set_stage(self, stage: str) -> None:
        """Skill-Critic's stage (reference §3.6): ``warm_start`` trains the HL and both critics
        while π_L acts with its mean and α_L stays frozen; ``hybrid`` trains everything."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; use one of {STAGES}")
        self.stage = stage
        if self.ll is not None:
            learning = stage == "hybrid"
            self.ll.train_actor = self.ll.train_alpha = learning
            self.ll_deterministic = not learning

    # ------------------------------------------------------------------ acting

    @torch.no_grad()
    def hl_act(self, obs: Obs, deterministic: bool = False) -> Tensor:
        """Skills (or flat actions) for a batch of observations."""
        return self.hl.act(obs, deterministic)

    @torch.no_grad()
    def ll_act(self, obs: Obs, z: Tensor, k: Tensor, deterministic: bool = False) -> Tensor:
        """Env actions for observations, active skills and indices (closed-loop levels)."""
        if self.ll is not None:
            ll_obs = {**obs, "z": z, "k": k}
            return self.ll.act(ll_obs, deterministic or self.ll_deterministic)
        if self.skills is not None:
            return self.skills(obs, z, k)
        return z  # flat: the HL picked the action

    # ------------------------------------------------------------------ learning

    def optimizers(self) -> dict[str, dict[str, torch.optim.Optimizer]]:
        """Adam optimisers per level: ``{"hl": {...}, "ll": {...}}``."""
        out = {"hl": make_optimizers(self.hl, self.spec.lr, alpha_lr=self.spec.alpha_lr)}
        if self.ll is not None:
            out["ll"] = make_optimizers(self.ll, self.spec.lr, self.spec.ll_actor_lr)
        return out

    def hl_critic_input(self, obs: Obs, action: Tensor) -> Tensor:
        return torch.cat([self.normalise(obs["state"]), action], dim=-1)

    def ll_critic_input(self, obs: Obs, action: Tensor) -> Tensor:
        onehot = nn.functional.one_hot(obs["k"], self.horizon).to(action.dtype)
        return torch.cat([self.normalise(obs["state"]), obs["z"], onehot, action], dim=-1)

    def update(
        self,
        hl_batch: Mapping[str, Tensor],
        ll_batch: Mapping[str, Tensor] | None,
        optimizers: Mapping[str, Mapping[str, torch.optim.Optimizer]],
    ) -> dict[str, float]:
        """One HL update and (Skill-Critic) one LL update, in that order (reference §3.5)."""
        metrics = {
            f"hl/{k}": v
            for k, v in self.hl.update(
                _level_batch(hl_batch, "z"), optimizers["hl"], self.hl_critic_input
            ).items()
        }
        if self.ll is not None and ll_batch is not None:
            batch = _level_batch(ll_batch, "action", extra=("z", "k"))
            next_value = self._ll_next_value(batch)
            ll_metrics = self.ll.update(
                batch, optimizers["ll"], self.ll_critic_input, next_value_override=next_value
            )
            metrics |= {f"ll/{k}": v for k, v in ll_metrics.items()}
        return metrics

    @torch.no_grad()
    def _ll_next_value(self, batch: Mapping[str, Any]) -> Tensor:
        """``U(s')``: the LL soft value inside a skill, the HL value where the next step starts a
        new skill (reference §3.5 (B)); the HL terms are computed on the boundary rows only."""
        assert self.ll is not None
        next_obs = batch["next_obs"]
        next_action, next_div = self.ll.regularised_sample(next_obs)
        next_q = self.ll.critic_target.min(self.ll_critic_input(next_obs, next_action))
        next_k = next_obs["k"]
        q_hl = torch.zeros_like(next_q)
        div_hl = torch.zeros_like(next_q)
        rows = torch.nonzero(next_k == 0).squeeze(-1)
        if rows.numel():
            hl_obs = {
                key: next_obs[key][rows] for key in ("state", "view", "pairs") if key in next_obs
            }
            z, d_h = self.hl.regularised_sample(hl_obs)
            q_hl[rows] = self.hl.critic_target.min(self.hl_critic_input(hl_obs, z))
            div_hl[rows] = d_h
        return ll_bootstrap_value(
            next_q,
            next_div,
            self.ll.alpha,
            next_k,
            q_hl,
            div_hl,
            self.hl.alpha,
            self.spec.boundary_value,
        )


def _level_batch(
    rows: Mapping[str, Tensor], action: str, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Replay rows → the ``obs / action / reward / next_obs / terminated`` batch of a level."""
    keys = [key for key in ("state", "view", REFERENCE_KEY) if key in rows] + list(extra)
    return {
        "obs": with_view_pairs({key: rows[key] for key in keys}),
        "action": rows[action],
        "reward": rows["reward"],
        "next_obs": with_view_pairs({key: rows[f"next_{key}"] for key in keys}),
        "terminated": rows["terminated"],
    }


# ---------------------------------------------------------------------- building


def check_prior_fits(spec: AgentSpec, prior: SkillPriorModule | None, horizon: int | None) -> None:
    """Raise ValueError where the prior's variant, dims or horizon do not fit the agent/env."""
    needed = AGENT_PRIORS[spec.name]
    if needed is None:
        return
    if prior is None:
        raise ValueError(f"agent {spec.name} needs a {needed} prior")
    got = prior.spec
    if got.variant != needed:
        raise ValueError(
            f"agent {spec.name} needs a {needed} prior, the checkpoint holds a {got.variant} prior"
        )
    if (got.state_dim, got.action_dim) != (spec.state_dim, spec.action_dim):
        raise ValueError(
            f"the prior was trained on states of {got.state_dim} and actions of "
            f"{got.action_dim} dims; this env has {spec.state_dim} and {spec.action_dim}"
        )
    if horizon is not None and needed != "flat" and horizon != got.horizon:
        raise ValueError(
            f"agent.horizon={horizon} does not match the prior's H={got.horizon}; leave "
            "agent.horizon=null to use the prior's"
        )


def build_agent(
    spec: AgentSpec, prior: SkillPriorModule | None, horizon: int | None = None
) -> SkillAgent:
    """The agent ``spec.name`` over ``prior`` (None for ``sac``); see the module table."""
    check_prior_fits(spec, prior, horizon)
    name, ds, da = spec.name, spec.state_dim, spec.action_dim
    common = dict(
        gamma=spec.gamma,
        tau=spec.tau,
        init_alpha=spec.init_alpha,
        min_alpha=spec.min_alpha,
        kl_samples=spec.kl_samples,
    )
    flat = dict(common, action_scale=spec.action_scale, max_value=spec.value_bound(1))

    def critic(action_dim: int) -> CriticEnsemble:
        return CriticEnsemble(
            ds + action_dim,
            spec.critic_hidden,
            spec.critic_layers,
            spec.critic_layer_norm,
            spec.n_critics,
        )

    def scratch_policy(out_dim: int) -> ObsHead:  # a state policy learned from scratch
        head = GaussianMLP(ds, out_dim, spec.policy_hidden, spec.policy_layers)
        return ObsHead(
            head, image=False, normalise=StateNormaliser(spec.state_mean, spec.state_std)
        )

    if name == "sac":
        actor = scratch_policy(da)
        hl = SACLevel(actor, critic(da), da, target=spec.target_entropy, **flat)
        return SkillAgent(spec, 1, da, hl, random_warmup=True)

    assert prior is not None
    image = prior.spec.image
    if name in ("bc_sac", "flat_prior"):
        actor = ObsHead(_flat_policy_head(prior), image)
        if name == "bc_sac":
            hl = SACLevel(actor, critic(da), da, target=spec.target_entropy, **flat)
        else:
            reference = ObsHead(_flat_policy_head(prior).requires_grad_(False).eval(), image)
            hl = SACLevel(
                actor,
                critic(da),
                da,
                regulariser="divergence",
                target=spec.target_divergence,
                reference=reference,
                **flat,
            )
        return SkillAgent(spec, 1, da, hl, hl_image=image)

    h, nz = prior.spec.horizon, prior.spec.latent_dim
    common["max_value"] = spec.value_bound(h)  # an HL step spans H env steps
    if name == "no_prior":
        actor = scratch_policy(nz)
        hl = SACLevel(
            actor,
            critic(nz),
            nz,
            target=spec.target_entropy,
            action_scale=spec.skill_scale,
            **common,
        )
        return SkillAgent(spec, h, nz, hl, skills=FrozenSkills(prior))

    hl = SACLevel(
        ObsHead(prior_policy_head(prior), image),
        critic(nz),
        nz,
        regulariser="divergence",
        target=spec.target_divergence,
        reference=ObsHead(frozen_prior(prior), image),
        action_scale=spec.skill_scale,
        **common,
    )
    if name != "skill_critic":
        return SkillAgent(spec, h, nz, hl, skills=FrozenSkills(prior), hl_image=image)

    ll = SACLevel(
        LowLevelHead(decoder_policy_head(prior, spec.ll_log_sigma), image),
        CriticEnsemble(
            ds + nz + h + da,
            spec.ll_critic_hidden,
            spec.ll_critic_layers,
            spec.critic_layer_norm,
            spec.n_critics,
        ),
        da,
        regulariser="divergence",
        target=spec.ll_target_divergence,
        reference=LowLevelHead(frozen_decoder(prior, spec.ll_log_sigma), image),
        **(flat | {"min_alpha": spec.ll_min_alpha, "squash": spec.ll_squash}),
    )
    return SkillAgent(spec, h, nz, hl, ll=ll, hl_image=image, ll_image=image)


class LowLevelActor:
    """Per-rollout low-level acting state: the open-loop plans of the active skills.

    One instance per collector or evaluation loop (plans belong to that loop's envs). A plan is
    (re)decoded exactly for the rows that start a skill (k == 0), which happens at every skill
    choice, so it is always the plan of the active z.
    """

    def __init__(self, agent: SkillAgent) -> None:
        self.agent = agent
        self._plans: Tensor | None = None

    @torch.no_grad()
    def __call__(self, obs: Obs, z: Tensor, k: Tensor, deterministic: bool = False) -> Tensor:
        skills = self.agent.skills
        if skills is None or not skills.open_loop:
            return self.agent.ll_act(obs, z, k, deterministic)
        if self._plans is None or self._plans.shape[0] != z.shape[0]:
            self._plans = z.new_zeros((z.shape[0], self.agent.horizon, self.agent.spec.action_dim))
            rows = torch.arange(z.shape[0], device=z.device)
        else:
            rows = torch.nonzero(k == 0).squeeze(-1)
        if rows.numel():
            self._plans[rows] = skills.plan(z[rows])
        return self._plans[torch.arange(z.shape[0], device=z.device), k]
