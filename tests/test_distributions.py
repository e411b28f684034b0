"""skillcritic.models.distributions: DiagGaussian, analytic and Monte-Carlo KL."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from skillcritic.models.distributions import (
    LOG_SIGMA_MAX,
    LOG_SIGMA_MIN,
    DiagGaussian,
    kl_analytic,
    kl_monte_carlo,
)


def _rand_gauss(*shape: int, seed: int = 0) -> DiagGaussian:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(*shape, generator=g, dtype=torch.float64)
    log_sigma = 0.5 * torch.randn(*shape, generator=g, dtype=torch.float64)
    return DiagGaussian(mu, log_sigma)


# --- construction ---------------------------------------------------------------------------


def test_from_params_splits_mu_then_log_sigma() -> None:
    params = torch.tensor([[1.0, 2.0, 3.0, -0.5, 0.0, 0.5]])
    d = DiagGaussian.from_params(params)
    assert torch.equal(d.mu, torch.tensor([[1.0, 2.0, 3.0]]))
    assert torch.equal(d.log_sigma, torch.tensor([[-0.5, 0.0, 0.5]]))
    assert d.shape == torch.Size([1, 3])
    with pytest.raises(ValueError):
        DiagGaussian.from_params(torch.zeros(2, 5))


def test_log_sigma_is_clamped() -> None:
    d = DiagGaussian(torch.zeros(3), torch.tensor([5.0, -20.0, 0.3]))
    assert d.log_sigma.tolist() == pytest.approx([LOG_SIGMA_MAX, LOG_SIGMA_MIN, 0.3])
    assert d.log_sigma[0].item() == 2.0
    assert d.sigma[0].item() == pytest.approx(math.exp(2.0))


def test_standard_matches_shape_dtype_device() -> None:
    like = torch.randn(4, 2, 3, dtype=torch.float64)
    d = DiagGaussian.standard(like)
    assert d.shape == like.shape
    assert d.mu.dtype == torch.float64 and d.mu.device == like.device
    assert torch.all(d.mu == 0) and torch.all(d.sigma == 1)


def test_getitem_and_detach() -> None:
    mu = torch.randn(5, 4, requires_grad=True)
    d = DiagGaussian(mu, torch.zeros(5, 4))
    sub = d[1:3]
    assert isinstance(sub, DiagGaussian) and sub.shape == torch.Size([2, 4])
    assert torch.equal(sub.mu, mu[1:3])
    assert d[2].shape == torch.Size([4])
    det = d.detach()
    assert not det.mu.requires_grad and torch.equal(det.mu, mu.detach())


# --- densities ------------------------------------------------------------------------------


def test_log_prob_and_entropy_match_torch_normal() -> None:
    d = _rand_gauss(6, 3)
    x = torch.randn(6, 3, dtype=torch.float64)
    ref = Normal(d.mu, d.sigma)
    lp = d.log_prob(x)
    assert lp.shape == (6, 3)  # per dimension, not summed
    torch.testing.assert_close(lp, ref.log_prob(x))
    torch.testing.assert_close(d.entropy(), ref.entropy())


def test_samples_have_right_shape_and_moments() -> None:
    torch.manual_seed(0)
    d = DiagGaussian(torch.tensor([1.0, -2.0]), torch.tensor([0.0, math.log(0.5)]))
    assert d.rsample().shape == (2,)
    assert not d.sample().requires_grad
    xs = d.rsample_n(50000)
    assert xs.shape == (50000, 2)
    torch.testing.assert_close(xs.mean(0), d.mu, atol=0.02, rtol=0)
    torch.testing.assert_close(xs.std(0), d.sigma, atol=0.02, rtol=0)


# --- KL -------------------------------------------------------------------------------------


def test_kl_analytic_hand_computed_2d() -> None:
    # dim 0: q=N(1, 1), p=N(0, 1)   → 0 − 0 + (1 + 1)/2 − 1/2            = 0.5
    # dim 1: q=N(0, 1), p=N(0, e²)  → 1 − 0 + (1 + 0)/(2e²) − 1/2        = 0.5 + 1/(2e²)
    q = DiagGaussian(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    p = DiagGaussian(torch.tensor([0.0, 0.0]), torch.tensor([0.0, 1.0]))
    kl = kl_analytic(q, p)
    assert kl.shape == (2,)
    assert kl.tolist() == pytest.approx([0.5, 0.5 + 0.5 * math.exp(-2.0)], rel=1e-6)


def test_kl_analytic_matches_torch_and_properties() -> None:
    q, p = _rand_gauss(7, 5, seed=1), _rand_gauss(7, 5, seed=2)
    kl = kl_analytic(q, p)
    torch.testing.assert_close(kl, kl_divergence(Normal(q.mu, q.sigma), Normal(p.mu, p.sigma)))
    assert torch.all(kl >= 0)
    torch.testing.assert_close(kl_analytic(p, p), torch.zeros_like(kl))


def test_kl_monte_carlo_close_to_analytic() -> None:
    torch.manual_seed(0)
    q, p = _rand_gauss(4, 3, seed=3), _rand_gauss(4, 3, seed=4)
    mc = kl_monte_carlo(q, p, n_samples=20000)
    assert mc.shape == (4,)
    exact = kl_analytic(q, p).sum(-1)
    torch.testing.assert_close(mc, exact, rtol=0.03, atol=0.02)
    # Same distribution: every sample gives exactly zero.
    torch.testing.assert_close(kl_monte_carlo(q, q), torch.zeros(4, dtype=torch.float64))


def test_kl_monte_carlo_clamped() -> None:
    q = DiagGaussian(torch.full((2, 3), 50.0), torch.zeros(2, 3))
    p = DiagGaussian.standard(q.mu)
    assert torch.all(kl_monte_carlo(q, p) == 100.0)
    assert torch.all(kl_monte_carlo(p, q, clamp=7.0) == 7.0)


def test_kl_monte_carlo_clamps_the_value_not_the_pull_back() -> None:
    # q is 50 σ from p on every dim: the KL (3·50²/2 = 3750 nats) is reported as 100, but its
    # gradient still pulls μ_q back to p, with the unclamped estimate's magnitude: for each
    # sample x = μ_q + ε, ∂/∂μ_q [log q(x) − log p(x)] = x − μ_p = 50 + ε (σ = 1).
    torch.manual_seed(0)
    mu = torch.full((2, 3), 50.0, dtype=torch.float64, requires_grad=True)
    q = DiagGaussian(mu, torch.zeros(2, 3, dtype=torch.float64))
    kl = kl_monte_carlo(q, DiagGaussian.standard(q.mu.detach()))
    assert torch.all(kl == 100.0)
    kl.sum().backward()
    torch.testing.assert_close(mu.grad, torch.full_like(mu, 50.0), rtol=0.03, atol=0.0)


def test_gradients_flow_through_rsample_and_mc_kl() -> None:
    mu = torch.zeros(3, 2, requires_grad=True)
    log_sigma = torch.full((3, 2), -0.5, requires_grad=True)
    q = DiagGaussian(mu, log_sigma)
    q.rsample().pow(2).sum().backward()
    assert mu.grad is not None and log_sigma.grad is not None
    assert torch.all(log_sigma.grad != 0)

    mu.grad, log_sigma.grad = None, None
    p = DiagGaussian(torch.ones(3, 2), torch.full((3, 2), 0.3))
    kl_monte_carlo(DiagGaussian(mu, log_sigma), p).sum().backward()
    assert mu.grad is not None and torch.all(mu.grad != 0)
    assert log_sigma.grad is not None and torch.all(log_sigma.grad != 0)
