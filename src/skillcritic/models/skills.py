"""Skill models: a latent skill space over H-step action chunks and a learned prior p(z | s).

Four variants (DESIGN §5), all plain ``nn.Module``s with the same interface:

==============  ===========================  ==========================================
variant         encoder q(z | ·)             decoder
==============  ===========================  ==========================================
open_loop       LSTM over actions            autoregressive LSTM, no observation
closed_loop     LSTM over (action, e_t)      MLP(e_t, z) -> action
cond_decoder    LSTM over actions            MLP(e_t, z, onehot(t)) -> mean, log sigma
flat            --                           MLP(e_t) -> Gaussian action (behaviour cloning)
==============  ===========================  ==========================================

``e_t`` are per-step observation features: the state itself for state envs, or a conv
encoding of the view pair (t-1, t) for image envs (the maze). Every variant has its own
learned prior ``p(z | first observation)`` (MLP, 6 x 128) with its own feature network.

Window alignment. A batch holds ``n_actions`` actions and ``n_actions + 1`` states (and views).
State envs use ``n_actions = H``: step t sees state t and predicts action t. Image envs use
``n_actions = H + 1``: step t sees the views (t, t+1) and predicts action t+1 -- at RL time the
action at time t is computed from the previous and current view, the env's ``view`` stack.

Loss (reference reductions): ``rec = mean_{b,t,d} [½(a - â)² + log √(2π)]``,
``kl = mean_{b,j} KL(q || N(0, I))``, ``prior = mean_b [-Σ_j log p(stopgrad(z_q) | s_0)]``,
``total = rec + β·kl + prior``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from skillcritic.models.distributions import DiagGaussian, kl_analytic
from skillcritic.models.nets import (
    ConvEncoder,
    RecurrentDecoder,
    SequenceEncoder,
    mlp,
    views_to_float,
)

VARIANTS = ("open_loop", "closed_loop", "cond_decoder", "flat")
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class SkillSpec:
    """Sizes of a skill model; everything needed to rebuild it (stored in checkpoints).

    Args:
        variant: one of ``VARIANTS``.
        state_dim, action_dim: sizes of the env's state and action.
        image: whether observations are view pairs (``views`` in the batch) instead of states.
        view_channels, view_size: channels and pixels per side of one view (image envs).
        horizon: H, actions per skill (1 for ``flat``).
        latent_dim: size of z.
        beta: weight of KL(q || N(0, I)).
        hidden: width of the LSTMs and MLPs.
        feature_dim: size of the conv features of a view pair.
        decoder_layers: hidden layers of the MLP decoders (closed_loop, cond_decoder, flat).
        prior_layers: hidden layers of the learned prior's MLP.
    """

    variant: str
    state_dim: int
    action_dim: int
    image: bool = False
    view_channels: int = 3  # the maze views: wall, goal, agent
    view_size: int = 32
    horizon: int = 10
    latent_dim: int = 10
    beta: float = 1e-2
    hidden: int = 128
    feature_dim: int = 32
    decoder_layers: int = 3
    prior_layers: int = 6

    @property
    def n_actions(self) -> int:
        """Actions per training window (image envs need one leading frame)."""
        return self.horizon + int(self.image)


class StepFeatures(nn.Module):
    """Per-step observation features e_t: the state, or conv features of the view pair."""

    def __init__(self, spec: SkillSpec) -> None:
        super().__init__()
        self.image = spec.image
        if spec.image:
            self.conv = ConvEncoder(
                2 * spec.view_channels, spec.feature_dim, resolution=spec.view_size
            )
            self.out_dim = spec.feature_dim
        else:
            self.out_dim = spec.state_dim

    def forward(self, observations: Tensor) -> Tensor:
        """(..., *obs_shape) -> (..., out_dim)."""
        return self.conv(observations) if self.image else observations


def step_observations(batch: dict[str, Tensor], spec: SkillSpec) -> tuple[Tensor, Tensor]:
    """The H observations the decoder sees and the H target actions of a window batch.

    State envs: states 0..H-1 and actions 0..H-1. Image envs: view pairs (t, t+1) stacked on
    channels as floats in [-1, 1], for t = 0..H-1, and actions 1..H.
    """
    horizon = spec.horizon
    if spec.image:
        views = views_to_float(batch["views"][:, : horizon + 1])  # (B, H+1, C, S, S)
        pairs = torch.cat([views[:, :-1], views[:, 1:]], dim=2)  # (B, H, 2C, S, S)
        return pairs, batch["actions"][:, 1 : horizon + 1]
    return batch["states"][:, :horizon], batch["actions"][:, :horizon]


class LearnedPrior(nn.Module):
    """p(z | o): features of the first observation -> MLP -> diagonal Gaussian over z."""

    def __init__(self, spec: SkillSpec) -> None:
        super().__init__()
        self.features = StepFeatures(spec)
        self.net = mlp(self.features.out_dim, 2 * spec.latent_dim, spec.hidden, spec.prior_layers)

    def forward(self, first_observation: Tensor) -> DiagGaussian:
        return DiagGaussian.from_params(self.net(self.features(first_observation)))


@dataclass
class SkillOutput:
    """What a forward pass produces: posterior, learned prior, posterior sample, reconstruction."""

    posterior: DiagGaussian | None
    prior: DiagGaussian
    z: Tensor | None
    reconstruction: Tensor  # action means (B, H, da)
    targets: Tensor  # (B, H, da)


def reconstruction_nll(reconstruction: Tensor, targets: Tensor) -> Tensor:
    """Unit-variance Gaussian NLL, averaged over batch, time and action dims."""
    return (0.5 * (targets - reconstruction) ** 2).mean() + _HALF_LOG_2PI


class SkillModel(nn.Module):
    """Base of the three skill-space variants: encoder, decoder and learned prior."""

    def __init__(self, spec: SkillSpec) -> None:
        super().__init__()
        self.spec = spec
        self.prior = LearnedPrior(spec)

    def step_features(self, observations: Tensor) -> Tensor:
        """Features e_t of observations (..., *obs_shape) -> (..., F); computed once per batch
        and shared by encoder and decoder. The open-loop model has none (returns its input)."""
        return observations

    def encode(self, features: Tensor, actions: Tensor) -> DiagGaussian:
        """q(z | skill) from the H step features and the H target actions."""
        raise NotImplementedError

    def decode(self, z: Tensor, features: Tensor) -> Tensor:
        """Action means (B, H, da) of skill z along the step features (B, H, F)."""
        raise NotImplementedError

    def decode_step(self, z: Tensor, feature: Tensor, step: int) -> Tensor:
        """The action mean (B, da) at step ``step`` of skill z, given the current feature (B, F)
        (closed-loop execution; the open-loop model plans instead, see ``decode``)."""
        raise NotImplementedError

    def forward(self, batch: dict[str, Tensor]) -> SkillOutput:
        observations, targets = step_observations(batch, self.spec)
        features = self.step_features(observations)
        posterior = self.encode(features, targets)
        z = posterior.rsample()
        return SkillOutput(
            posterior=posterior,
            prior=self.prior(observations[:, 0]),
            z=z,
            reconstruction=self.decode(z, features),
            targets=targets,
        )

    def loss(self, output: SkillOutput) -> dict[str, Tensor]:
        """The loss terms and their weighted total (see the module docstring)."""
        assert output.posterior is not None and output.z is not None
        rec = reconstruction_nll(output.reconstruction, output.targets)
        kl = kl_analytic(output.posterior, DiagGaussian.standard(output.posterior.mu)).mean()
        prior_nll = -output.prior.log_prob(output.z.detach()).sum(-1).mean()
        return {
            "rec": rec,
            "kl": kl,
            "prior_nll": prior_nll,
            "total": rec + self.spec.beta * kl + prior_nll,
        }

    @torch.no_grad()
    def best_of_n_error(self, batch: dict[str, Tensor], n_samples: int) -> Tensor:
        """Mean over the batch of the lowest action MSE among n skills drawn from the learned
        prior and decoded along the window's observations (the reference's top-of-N metric)."""
        observations, targets = step_observations(batch, self.spec)
        prior = self.prior(observations[:, 0])
        z = prior.rsample_n(n_samples)  # (n, B, nz)
        features = self.step_features(observations)  # once, shared by the n samples
        repeated = features.unsqueeze(0).expand(n_samples, *features.shape)
        decoded = self.decode(z.flatten(0, 1), repeated.flatten(0, 1))
        errors = ((decoded.unflatten(0, (n_samples, -1)) - targets) ** 2).mean(dim=(-1, -2))
        return errors.min(dim=0).values.mean()


class OpenLoopSkillModel(SkillModel):
    """SPiRL: LSTM encoder over actions, autoregressive LSTM decoder (no observation)."""

    def __init__(self, spec: SkillSpec) -> None:
        super().__init__(spec)
        self.encoder = SequenceEncoder(spec.action_dim, 2 * spec.latent_dim, spec.hidden)
        self.decoder = RecurrentDecoder(spec.action_dim, spec.latent_dim, spec.horizon, spec.hidden)

    def step_features(self, observations: Tensor) -> Tensor:
        obs_dims = 3 if self.spec.image else 1  # the decoder sees no observation: empty features
        return observations.new_zeros((*observations.shape[: observations.dim() - obs_dims], 0))

    def encode(self, features: Tensor, actions: Tensor) -> DiagGaussian:
        return DiagGaussian.from_params(self.encoder(actions))

    def decode(self, z: Tensor, features: Tensor) -> Tensor:
        return self.decoder(z)


class ClosedLoopSkillModel(SkillModel):
    """SPiRL-cl: LSTM encoder over (action, e_t), MLP decoder â_t = f(e_t, z)."""

    def __init__(self, spec: SkillSpec) -> None:
        super().__init__(spec)
        self.features = StepFeatures(spec)
        feature_dim = self.features.out_dim
        self.encoder = SequenceEncoder(
            spec.action_dim + feature_dim, 2 * spec.latent_dim, spec.hidden
        )
        self.decoder = mlp(
            feature_dim + spec.latent_dim, spec.action_dim, spec.hidden, spec.decoder_layers
        )

    def step_features(self, observations: Tensor) -> Tensor:
        return self.features(observations)

    def encode(self, features: Tensor, actions: Tensor) -> DiagGaussian:
        return DiagGaussian.from_params(self.encoder(torch.cat([actions, features], -1)))

    def decode(self, z: Tensor, features: Tensor) -> Tensor:
        steps = features.shape[1]
        return self.decoder(torch.cat([features, z.unsqueeze(1).expand(-1, steps, -1)], -1))

    def decode_step(self, z: Tensor, feature: Tensor, step: int) -> Tensor:
        return self.decoder(torch.cat([feature, z], -1))


class CondDecoderSkillModel(SkillModel):
    """Skill-Critic's model: LSTM encoder over actions, decoder MLP(e_t, z, onehot(t)) with a
    mean head (trained) and a log-sigma head (untrained here; its value at RL time is set
    explicitly, as in the reference)."""

    def __init__(self, spec: SkillSpec) -> None:
        super().__init__(spec)
        self.features = StepFeatures(spec)
        self.encoder = SequenceEncoder(spec.action_dim, 2 * spec.latent_dim, spec.hidden)
        in_dim = self.features.out_dim + spec.latent_dim + spec.horizon
        self.decoder = mlp(in_dim, 2 * spec.action_dim, spec.hidden, spec.decoder_layers)
        self.register_buffer("time_onehot", torch.eye(spec.horizon), persistent=False)

    def step_features(self, observations: Tensor) -> Tensor:
        return self.features(observations)

    def encode(self, features: Tensor, actions: Tensor) -> DiagGaussian:
        return DiagGaussian.from_params(self.encoder(actions))

    def action_distribution(self, z: Tensor, features: Tensor, first_step: int = 0) -> DiagGaussian:
        """π_dec(a_t | e_t, z, t) for t = first_step, first_step + 1, ... along the features."""
        batch, steps = features.shape[:2]
        time = self.time_onehot[first_step : first_step + steps].expand(batch, -1, -1)
        inputs = torch.cat([features, z.unsqueeze(1).expand(-1, steps, -1), time], -1)
        return DiagGaussian.from_params(self.decoder(inputs))

    def decode(self, z: Tensor, features: Tensor) -> Tensor:
        return self.action_distribution(z, features).mu

    def decode_step(self, z: Tensor, feature: Tensor, step: int) -> Tensor:
        return self.action_distribution(z, feature.unsqueeze(1), step).mu[:, 0]


class FlatBCModel(nn.Module):
    """Behaviour cloning: π(a | e) = MLP(e) -> diagonal Gaussian, trained by its NLL."""

    def __init__(self, spec: SkillSpec) -> None:
        super().__init__()
        self.spec = spec
        self.features = StepFeatures(spec)
        self.policy = mlp(
            self.features.out_dim, 2 * spec.action_dim, spec.hidden, spec.decoder_layers
        )

    def action_distribution(self, observations: Tensor) -> DiagGaussian:
        return DiagGaussian.from_params(self.policy(self.features(observations)))

    def forward(self, batch: dict[str, Tensor]) -> SkillOutput:
        observations, targets = step_observations(batch, self.spec)
        policy = self.action_distribution(observations)
        return SkillOutput(None, policy, None, policy.mu, targets)

    def loss(self, output: SkillOutput) -> dict[str, Tensor]:
        """NLL of the demonstrated actions, summed over action dims, averaged over the rest."""
        nll = -output.prior.log_prob(output.targets).sum(-1).mean()
        return {
            "nll": nll,
            "rec": reconstruction_nll(output.reconstruction, output.targets),
            "total": nll,
        }

    @torch.no_grad()
    def best_of_n_error(self, batch: dict[str, Tensor], n_samples: int) -> Tensor:
        """Lowest action MSE among n actions sampled from the policy."""
        observations, targets = step_observations(batch, self.spec)
        samples = self.action_distribution(observations).rsample_n(n_samples)
        return ((samples - targets) ** 2).mean(dim=(-1, -2)).min(dim=0).values.mean()


MODELS: dict[str, type[nn.Module]] = {
    "open_loop": OpenLoopSkillModel,
    "closed_loop": ClosedLoopSkillModel,
    "cond_decoder": CondDecoderSkillModel,
    "flat": FlatBCModel,
}


def build_skill_model(spec: SkillSpec) -> SkillModel | FlatBCModel:
    """The model of ``spec.variant``."""
    if spec.variant not in MODELS:
        raise ValueError(f"unknown prior variant {spec.variant!r}; use one of {VARIANTS}")
    return MODELS[spec.variant](spec)
