"""skillcritic.rl.losses and skillcritic.rl.targets: hand-computed values, directions, isolation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import (
    AffineTransform,
    Independent,
    Normal,
    TanhTransform,
    TransformedDistribution,
)

from skillcritic.models.distributions import DiagGaussian
from skillcritic.rl.losses import (
    actor_loss,
    critic_diagnostics,
    critic_loss,
    critic_target,
    divergence_temperature_loss,
    entropy_temperature_loss,
    ll_bootstrap_value,
    soft_next_value,
    squashed_sample,
)
from skillcritic.rl.targets import polyak_update


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# --- squashed_sample ------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_squashed_sample_matches_torch_tanh_transform(scale: float) -> None:
    torch.manual_seed(0)
    mu = torch.randn(5, 3, dtype=torch.float64) * 0.5
    log_sigma = torch.randn(5, 3, dtype=torch.float64) * 0.3 - 0.5
    a, u, log_prob = squashed_sample(DiagGaussian(mu, log_sigma), scale=scale)
    assert a.shape == u.shape == (5, 3) and log_prob.shape == (5,)
    assert torch.allclose(a, scale * torch.tanh(u))
    ref = TransformedDistribution(
        Independent(Normal(mu, log_sigma.exp()), 1),
        [TanhTransform(), AffineTransform(0.0, scale)],
    )
    # TransformedDistribution inverts a (atanh), then applies the same change of variables.
    assert torch.allclose(log_prob, ref.log_prob(a), atol=1e-4)


def test_squashed_sample_one_dim_by_hand() -> None:
    # μ = 0.5, σ = e^-1, scale 2, u = μ + σ·ε with ε the seeded draw:
    # log π(a) = log N(u; μ, σ) − log|da/du| = (−½ε² + 1 − ½ log 2π) − log(2·(1 − tanh²u))
    dist = DiagGaussian(torch.full((1, 1), 0.5), torch.full((1, 1), -1.0))
    torch.manual_seed(0)
    eps = torch.randn(1, 1).item()
    torch.manual_seed(0)
    a, u, log_prob = squashed_sample(dist, scale=2.0)
    u_hand = 0.5 + math.exp(-1.0) * eps
    expected = (
        -0.5 * eps**2
        + 1.0
        - 0.5 * math.log(2 * math.pi)
        - math.log(2.0 * (1 - math.tanh(u_hand) ** 2))
    )
    assert u.item() == pytest.approx(u_hand, abs=1e-6)
    assert a.item() == pytest.approx(2 * math.tanh(u_hand), abs=1e-6)
    assert log_prob.item() == pytest.approx(expected, abs=1e-5)


def test_squashed_sample_is_stable_and_reparameterised() -> None:
    # At u ≈ ±20, 1 − tanh²u underflows to 0 in float32; the softplus form stays finite:
    # −log(1 − tanh²u) = 2|u| − 2 log 2 + O(e^{−2|u|}) per dim, log N(u) = −½ε² + 3 − ½ log 2π.
    mu = torch.tensor([[20.0, -20.0]], requires_grad=True)
    log_sigma = torch.full((1, 2), -3.0, requires_grad=True)
    torch.manual_seed(0)
    eps = torch.randn(1, 2)
    torch.manual_seed(0)
    _, u, log_prob = squashed_sample(DiagGaussian(mu, log_sigma))
    assert torch.isfinite(log_prob).all()
    per_dim = -0.5 * eps**2 + 3 - 0.5 * math.log(2 * math.pi) + 2 * u.abs() - 2 * math.log(2)
    assert log_prob.item() == pytest.approx(per_dim.sum().item(), abs=1e-3)
    log_prob.sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(log_sigma.grad).all()


def test_squashed_sample_rejects_bad_scale() -> None:
    with pytest.raises(ValueError, match="scale"):
        squashed_sample(DiagGaussian(torch.zeros(1, 2), torch.zeros(1, 2)), scale=0.0)


# --- critic target and soft value -----------------------------------------------------------


def test_critic_target_by_hand() -> None:
    # γ = 0.5: y = [1 + 0.5·10, 2 + 0 (terminated), 3 + 0.5·(−5)] = [6, 2, 0.5]
    y = critic_target(t(1, 2, 3), torch.tensor([False, True, False]), t(10, 10, -5), gamma=0.5)
    assert torch.allclose(y, t(6, 2, 0.5))


def test_critic_target_bootstraps_through_truncation_not_termination() -> None:
    # Row 0 ends by time limit (truncated, not terminated), row 1 terminates.
    batch = {
        "reward": t(1, 1),
        "terminated": torch.tensor([False, True]),
        "truncated": torch.tensor([True, False]),
    }
    y = critic_target(batch["reward"], batch["terminated"], t(4, 4), gamma=0.5)
    # row 0: 1 + 0.5·4 = 3 (bootstrapped); row 1: 1 (no bootstrap)
    assert torch.allclose(y, t(3, 1))


def test_critic_target_has_no_grad_and_checks_shapes() -> None:
    next_value = t(1, 2).requires_grad_()
    y = critic_target(t(0, 0), t(0, 0), next_value, gamma=0.9)
    assert not y.requires_grad
    with pytest.raises(ValueError, match=r"\(2, 1\).*\(2,\)|\(2,\).*\(2, 1\)"):
        critic_target(t(0, 0), t(0, 0), next_value.reshape(2, 1), gamma=0.9)


def test_soft_next_value_by_hand() -> None:
    # α = 2: [1 − 2·0.5, 2 − 2·(−1)] = [0, 4]
    v = soft_next_value(t(1, 2), t(0.5, -1), torch.tensor(2.0))
    assert torch.allclose(v, t(0, 4))
    with pytest.raises(ValueError, match="next_regulariser"):
        soft_next_value(t(1, 2), t(1, 2, 3), 1.0)
    with pytest.raises(ValueError, match="alpha"):
        soft_next_value(t(1, 2), t(1, 2), t(1, 2))


# --- critic and actor losses ----------------------------------------------------------------


def test_critic_loss_by_hand() -> None:
    # y = [1, 1]; Q1 = [1, 2] → ½·mean(0, 1) = 0.25; Q2 = [0, 4] → ½·mean(1, 9) = 2.5; sum 2.75
    loss = critic_loss([t(1, 2), t(0, 4)], t(1, 1))
    assert loss.item() == pytest.approx(2.75)
    diag = critic_diagnostics([t(1, 2), t(0, 4)], t(1, 1))
    assert diag["q_mean"].item() == pytest.approx(1.5)
    assert diag["td_abs_mean"].item() == pytest.approx(0.5)


def test_critic_loss_gives_no_gradient_to_target() -> None:
    q = t(1, 2).requires_grad_()
    target_source = t(0.5, 0.5).requires_grad_()
    target = target_source * 2  # a target that is part of a graph
    critic_loss([q], target).backward()
    assert target_source.grad is None
    # d/dQ ½·mean((Q − y)²) = (Q − y)/B = [0, 1]/2
    assert torch.allclose(q.grad, t(0, 0.5))


def test_critic_loss_checks_shapes() -> None:
    with pytest.raises(ValueError, match=r"q_values\[1\].*\(2,\).*\(2, 1\)"):
        critic_loss([t(1, 2), t(1, 2).reshape(2, 1)], t(1, 1))
    with pytest.raises(ValueError):
        critic_loss([], t(1, 1))


def test_actor_loss_by_hand() -> None:
    # α = 0.5: mean(−1 + 0.5·2, −3 + 0.5·0) = mean(0, −3) = −1.5
    assert actor_loss(t(1, 3), t(2, 0), 0.5).item() == pytest.approx(-1.5)


def test_actor_loss_gives_no_gradient_to_alpha() -> None:
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    q_min = t(1, 3).requires_grad_()
    reg = t(2, 0).requires_grad_()
    actor_loss(q_min, reg, log_alpha.exp()).backward()
    assert log_alpha.grad is None
    assert torch.allclose(q_min.grad, t(-0.5, -0.5))  # −1/B
    assert torch.allclose(reg.grad, t(0.25, 0.25))  # α/B
    with pytest.raises(ValueError, match="regulariser"):
        actor_loss(t(1, 3), t(2, 0, 1), 0.5)


# --- temperatures ---------------------------------------------------------------------------


def test_entropy_temperature_loss_by_hand() -> None:
    # log α = 0.5, H̄ = −2, log π = [1, −3]: log π + H̄ = [−1, −5], mean −3
    # loss = −0.5·(−3) = 1.5, d loss / d log α = −(−3) = 3
    log_alpha = torch.tensor(0.5, requires_grad=True)
    loss = entropy_temperature_loss(log_alpha, t(1, -3).requires_grad_(), target_entropy=-2.0)
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(3.0)


def test_divergence_temperature_loss_by_hand() -> None:
    # log α = 0.5, δ = 1, D = [2, 4]: δ − D = [−1, −3], mean −2
    # loss = 0.5·(−2) = −1, d loss / d log α = −2
    log_alpha = torch.tensor(0.5, requires_grad=True)
    divergence = t(2, 4).requires_grad_()
    loss = divergence_temperature_loss(log_alpha, divergence, target_divergence=1.0)
    assert loss.item() == pytest.approx(-1.0)
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(-2.0)
    assert divergence.grad is None


def _alpha_after_one_adam_step(loss_fn, *args: object) -> float:
    log_alpha = nn.Parameter(torch.tensor(0.0))
    opt = torch.optim.Adam([log_alpha], lr=0.1)
    loss_fn(log_alpha, *args).backward()
    opt.step()
    return log_alpha.exp().item()


@pytest.mark.parametrize(
    ("log_prob", "should_grow"),
    [
        (t(1.0, 2.0), True),  # entropy −log π ≈ −1.5 < H̄ = −1: too little entropy, α grows
        (t(-3.0, -2.0), False),  # entropy ≈ 2.5 > H̄ = −1: α shrinks
    ],
)
def test_entropy_temperature_moves_alpha_the_right_way(
    log_prob: torch.Tensor, should_grow: bool
) -> None:
    alpha = _alpha_after_one_adam_step(entropy_temperature_loss, log_prob, -1.0)
    assert (alpha > 1.0) == should_grow and alpha != 1.0


@pytest.mark.parametrize(
    ("divergence", "should_grow"),
    [
        (t(3.0, 5.0), True),  # D > δ = 2: α grows
        (t(0.5, 1.0), False),  # D < δ: α shrinks
    ],
)
def test_divergence_temperature_moves_alpha_the_right_way(
    divergence: torch.Tensor, should_grow: bool
) -> None:
    alpha = _alpha_after_one_adam_step(divergence_temperature_loss, divergence, 2.0)
    assert (alpha > 1.0) == should_grow and alpha != 1.0


def test_temperature_losses_need_scalar_log_alpha() -> None:
    with pytest.raises(ValueError, match="log_alpha"):
        entropy_temperature_loss(t(0, 0), t(1, 1), -1.0)
    with pytest.raises(ValueError, match="log_alpha"):
        divergence_temperature_loss(t(0, 0), t(1, 1), 1.0)


# --- Skill-Critic LL bootstrap --------------------------------------------------------------

# next_k = [0, 3, 0]: rows 0 and 2 start a new skill at s', row 1 is inside a skill.
LL_BATCH = {
    "next_q_ll_min": t(5, 6, 7),
    "next_ll_divergence": t(1, 2, 3),
    "alpha_ll": torch.tensor(0.5),
    "next_k": torch.tensor([0, 3, 0]),
    "next_q_hl_min": t(10, 20, 30),
    "next_hl_divergence": t(4, 4, 8),
    "alpha_hl": torch.tensor(0.25),
}


def test_ll_bootstrap_value_reference_mode() -> None:
    # inside (row 1): Q_L − α_L·D_L = 6 − 0.5·2 = 5
    # boundary, reference: Q_H − α_L·D_L: row 0: 10 − 0.5·1 = 9.5, row 2: 30 − 0.5·3 = 28.5
    u = ll_bootstrap_value(**LL_BATCH, boundary_value="reference")
    assert torch.allclose(u, t(9.5, 5, 28.5))
    # reference mode does not need the HL divergence
    args = {**LL_BATCH, "next_hl_divergence": None, "alpha_hl": None}
    assert torch.allclose(ll_bootstrap_value(**args), t(9.5, 5, 28.5))


def test_ll_bootstrap_value_clean_mode() -> None:
    # boundary, clean: Q_H − α_H·D_H: row 0: 10 − 0.25·4 = 9, row 2: 30 − 0.25·8 = 28
    u = ll_bootstrap_value(**LL_BATCH, boundary_value="clean")
    assert torch.allclose(u, t(9, 5, 28))


def test_ll_bootstrap_value_ignores_nonfinite_unused_branch() -> None:
    args = {**LL_BATCH, "next_q_ll_min": t(float("inf"), 6, float("nan"))}
    assert torch.allclose(ll_bootstrap_value(**args), t(9.5, 5, 28.5))


def test_ll_bootstrap_value_errors() -> None:
    with pytest.raises(ValueError, match="boundary_value"):
        ll_bootstrap_value(**LL_BATCH, boundary_value="option")
    with pytest.raises(ValueError, match="next_hl_divergence"):
        ll_bootstrap_value(**{**LL_BATCH, "next_hl_divergence": None}, boundary_value="clean")
    with pytest.raises(ValueError, match=r"next_k.*\(3,\).*\(3, 10\)"):
        ll_bootstrap_value(**{**LL_BATCH, "next_k": torch.zeros(3, 10)})


# --- polyak_update --------------------------------------------------------------------------


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    net[1].running_mean.normal_()
    net[1].num_batches_tracked.fill_(seed + 1)
    return net


def _tensors(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0])
def test_polyak_update(tau: float) -> None:
    source, target = _net(0), _net(1)
    before_s, before_t = _tensors(source), _tensors(target)
    polyak_update(source, target, tau)
    after_t = target.state_dict()
    for name, old in before_t.items():
        if name.endswith("num_batches_tracked"):
            assert torch.equal(after_t[name], old)  # non-floating buffers are left alone
        else:
            expected = tau * before_s[name] + (1 - tau) * old
            if tau in (0.0, 1.0):
                assert torch.equal(after_t[name], expected)
            else:
                assert torch.allclose(after_t[name], expected)
    for name, old in before_s.items():
        assert torch.equal(source.state_dict()[name], old)
    assert all(p.grad is None for p in target.parameters())


def test_polyak_update_rejects_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        polyak_update(nn.Linear(3, 4), nn.Linear(3, 5), 0.5)
    with pytest.raises(ValueError, match="names"):
        polyak_update(nn.Linear(3, 4), nn.Linear(3, 4, bias=False), 0.5)
    with pytest.raises(ValueError, match="tau"):
        polyak_update(nn.Linear(3, 4), nn.Linear(3, 4), 1.5)
