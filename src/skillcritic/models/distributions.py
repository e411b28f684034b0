"""Diagonal Gaussians and the two KL estimators used by the skill models and the RL agents.

Conventions (reference §0.1): ``log σ`` is clamped to ``[LOG_SIGMA_MIN, LOG_SIGMA_MAX]`` whenever a
Gaussian is built, a head of size ``2d`` is split as ``[μ (d), log σ (d)]``, and ``log_prob``,
``entropy`` and :func:`kl_analytic` are *per dimension* (callers sum over the last axis when they
want the multivariate value). :func:`kl_monte_carlo` is already summed over dimensions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_SIGMA_MIN, LOG_SIGMA_MAX = -10.0, 2.0

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class DiagGaussian:
    """A diagonal Gaussian over the last dimension of ``mu`` (all leading dims are batch dims)."""

    def __init__(self, mu: Tensor, log_sigma: Tensor) -> None:
        """Build from mean and log standard deviation (same shape); log σ is clamped."""
        if mu.shape != log_sigma.shape:
            raise ValueError(f"mu {tuple(mu.shape)} and log_sigma {tuple(log_sigma.shape)} differ")
        self.mu = mu
        self.log_sigma = log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)

    @classmethod
    def from_params(cls, params: Tensor) -> DiagGaussian:
        """Split a network head of size ``2d`` along the last dim as ``[mu, log_sigma]``."""
        if params.shape[-1] % 2 != 0:
            raise ValueError(f"last dim of params must be even, got {params.shape[-1]}")
        mu, log_sigma = params.chunk(2, dim=-1)
        return cls(mu, log_sigma)

    @classmethod
    def standard(cls, shape_like: Tensor) -> DiagGaussian:
        """The unit Gaussian N(0, I) with ``shape_like``'s shape, device and dtype."""
        return cls(torch.zeros_like(shape_like), torch.zeros_like(shape_like))

    @property
    def sigma(self) -> Tensor:
        """Standard deviation ``exp(log_sigma)``."""
        return self.log_sigma.exp()

    @property
    def shape(self) -> torch.Size:
        """Shape of ``mu`` (batch dims + event dim)."""
        return self.mu.shape

    def rsample(self) -> Tensor:
        """One reparameterised sample ``mu + sigma * eps``; differentiable in mu and log_sigma."""
        return self.mu + self.sigma * torch.randn_like(self.mu)

    def sample(self) -> Tensor:
        """One sample without gradient."""
        with torch.no_grad():
            return self.rsample()

    def rsample_n(self, n: int) -> Tensor:
        """``n`` reparameterised samples stacked in a new leading dim: ``(n, *shape)``."""
        eps = torch.randn((n, *self.mu.shape), device=self.mu.device, dtype=self.mu.dtype)
        return self.mu + self.sigma * eps

    def log_prob(self, x: Tensor) -> Tensor:
        """Per-dimension log density of ``x`` (not summed over the last dim)."""
        return -0.5 * ((x - self.mu) / self.sigma) ** 2 - self.log_sigma - _HALF_LOG_2PI

    def entropy(self) -> Tensor:
        """Per-dimension differential entropy ``1/2 + 1/2 log(2π) + log σ``."""
        return 0.5 + _HALF_LOG_2PI + self.log_sigma

    def detach(self) -> DiagGaussian:
        """A copy whose parameters are cut from the autograd graph."""
        return DiagGaussian(self.mu.detach(), self.log_sigma.detach())

    def __getitem__(self, index: object) -> DiagGaussian:
        """Index the batch dims, e.g. ``dist[0]`` or ``dist[:, 3]``; the event dim is kept."""
        return DiagGaussian(self.mu[index], self.log_sigma[index])

    def __repr__(self) -> str:
        return f"DiagGaussian(shape={tuple(self.shape)})"


def kl_analytic(q: DiagGaussian, p: DiagGaussian) -> Tensor:
    """Closed-form KL(q || p) per dimension (sum over the last dim for the full KL)."""
    # log σ_p − log σ_q + (σ_q² + (μ_q − μ_p)²) / (2 σ_p²) − 1/2, with σ² = exp(2 log σ).
    var_ratio_num = (2.0 * q.log_sigma).exp() + (q.mu - p.mu) ** 2
    return p.log_sigma - q.log_sigma + var_ratio_num / (2.0 * (2.0 * p.log_sigma).exp()) - 0.5


def kl_monte_carlo(
    q: DiagGaussian, p: DiagGaussian, n_samples: int = 10, clamp: float = 100.0
) -> Tensor:
    """Monte-Carlo KL(q || p) over the batch shape ``mu.shape[:-1]``, its value clamped to
    ±``clamp``.

    Averages ``sum_dims(log q(x) − log p(x))`` over ``n_samples`` reparameterised draws x ~ q, so
    gradients reach q's parameters both through the samples and through ``log q``. Only the
    value is clamped (it bounds the TD targets and the temperature step, as in the reference);
    the gradient stays the unclamped estimate's. The reference clamps both, which cuts the KL's
    pull back to the prior exactly for the rows that strayed more than ``clamp`` nats, so they
    can stray without limit: with σ_â = e⁻⁴ a pre-tanh shift of 0.26 is 100 nats, and Skill-
    Critic's racing low level drove its pedal into tanh saturation that way (docs/results.md).
    """
    x = q.rsample_n(n_samples)  # (n, *batch, d)
    kl = (q.log_prob(x) - p.log_prob(x)).sum(dim=-1).mean(dim=0)  # (*batch,)
    return kl + (kl.clamp(-clamp, clamp) - kl).detach()  # clamped value, unclamped gradient
