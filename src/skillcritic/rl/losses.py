"""Pure SAC / prior-regularised SAC / Skill-Critic loss functions on tensors.

The regulariser is an argument, not a subclass (style §8.4.7): pass ``log π(ã|s)`` for entropy SAC
and ``D(s) = KL(π(·|s) ‖ p(·|s))`` for KL-to-prior SAC (reference §3.1, §3.2). Every function
checks that its per-sample inputs share one shape, so a ``(B, 1)`` critic output never broadcasts
silently against a ``(B,)`` reward into a ``(B, B)`` loss.

Temperatures are optimised through ``log α``. The reference minimises ``α·(…)`` with respect to
``log α``, whose gradient is ``α·(…)``; ours is ``(…)``. The two differ only by the positive factor
``α``, so the direction of every α step is the same (it is the form SB3 and torchrl use).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from skillcritic.models.distributions import DiagGaussian

BOUNDARY_VALUES = ("reference", "clean")


def _check_same_shape(where: str, ref_name: str, ref: Tensor, **others: Tensor) -> None:
    """Raise ValueError unless every tensor in ``others`` has exactly ``ref``'s shape."""
    for name, t in others.items():
        if t.shape != ref.shape:
            raise ValueError(
                f"{where}: expected {name} of shape {tuple(ref.shape)} (the shape of {ref_name}), "
                f"got {tuple(t.shape)}"
            )


def _scalar(where: str, name: str, x: Tensor | float) -> Tensor | float:
    """Check that ``x`` is a float or a one-element tensor; return it detached."""
    if isinstance(x, Tensor):
        if x.numel() != 1:
            raise ValueError(f"{where}: expected {name} to be a scalar, got shape {tuple(x.shape)}")
        return x.detach().reshape(())
    return float(x)


def squashed_sample(dist: DiagGaussian, scale: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """Reparameterised tanh-squashed sample ``a = scale·tanh(u)``, ``u ~ dist``.

    Returns ``(a, u, log_prob)`` with ``a`` and ``u`` of shape ``dist.shape`` and ``log_prob`` of
    shape ``dist.shape[:-1]``: the density of ``a`` summed over the last (action) dim.
    """
    if scale <= 0:
        raise ValueError(f"squashed_sample: scale must be positive, got {scale}")
    if dist.mu.dim() < 1:
        raise ValueError("squashed_sample: dist needs an event (last) dimension")
    u = dist.rsample()
    a = scale * torch.tanh(u)
    # Change of variables: log π(a) = log N(u) − log|da/du| per dim, with
    # da/du = scale·(1 − tanh²u) and log(1 − tanh²u) = 2·(log 2 − u − softplus(−2u)) (stable for
    # large |u|, where 1 − tanh²u underflows to 0).
    log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u)) + math.log(scale)
    log_prob = (dist.log_prob(u) - log_det).sum(dim=-1)
    return a, u, log_prob


def straight_through_clip(u: Tensor, scale: float = 1.0) -> Tensor:
    """``clip(u, ±scale)`` forward, identity backward.

    The critic's pull ``∂Q/∂a`` reaches a mean that has strayed outside the box, which a plain
    clip (zero gradient there) would leave wherever the KL alone holds it.
    """
    return u + (u.clamp(-scale, scale) - u).detach()


def critic_target(reward: Tensor, terminated: Tensor, next_value: Tensor, gamma: float) -> Tensor:
    """TD target ``y = r + γ·(1 − terminated)·next_value``, without gradient.

    Only ``terminated`` stops the bootstrap: a time-limit truncation still bootstraps
    (reference §6.4).
    """
    _check_same_shape(
        "critic_target", "reward", reward, terminated=terminated, next_value=next_value
    )
    with torch.no_grad():
        not_done = 1.0 - terminated.to(next_value.dtype)
        return reward.to(next_value.dtype) + gamma * not_done * next_value.detach()


def soft_next_value(next_q_min: Tensor, next_regulariser: Tensor, alpha: Tensor | float) -> Tensor:
    """Soft value ``min_i Q̄_i(s', ã') − α·reg(s')`` (reg: ``log π(ã'|s')`` or ``D(s')``)."""
    _check_same_shape(
        "soft_next_value", "next_q_min", next_q_min, next_regulariser=next_regulariser
    )
    alpha = _scalar("soft_next_value", "alpha", alpha)
    return next_q_min - alpha * next_regulariser


def critic_loss(q_values: Sequence[Tensor], target: Tensor) -> Tensor:
    """Sum over critics of ``½·mean((Q_i − y)²)``; the target is detached."""
    if len(q_values) == 0:
        raise ValueError("critic_loss: expected at least one critic output, got none")
    y = target.detach()
    total = target.new_zeros(())
    for i, q in enumerate(q_values):
        _check_same_shape("critic_loss", "target", y, **{f"q_values[{i}]": q})
        total = total + 0.5 * (q - y).pow(2).mean()
    return total


def critic_diagnostics(q_values: Sequence[Tensor], target: Tensor) -> dict[str, Tensor]:
    """Detached logging values: mean of the first critic, mean target, mean |TD error|."""
    with torch.no_grad():
        q0 = q_values[0]
        return {
            "q_mean": q0.mean(),
            "target_mean": target.mean(),
            "td_abs_mean": (q0 - target).abs().mean(),
        }


def actor_loss(q_min: Tensor, regulariser: Tensor, alpha: Tensor | float) -> Tensor:
    """Policy loss ``mean(−min_i Q_i(s, ã) + α·reg(s))`` with α detached."""
    _check_same_shape("actor_loss", "q_min", q_min, regulariser=regulariser)
    alpha = _scalar("actor_loss", "alpha", alpha)
    return (-q_min + alpha * regulariser).mean()


def entropy_temperature_loss(log_alpha: Tensor, log_prob: Tensor, target_entropy: float) -> Tensor:
    """``−mean(log α · (log π + H̄).detach())``: α grows while the entropy −log π is below H̄."""
    if log_alpha.numel() != 1:
        raise ValueError(
            f"entropy_temperature_loss: expected log_alpha to be a scalar, "
            f"got shape {tuple(log_alpha.shape)}"
        )
    # d loss / d log α = −mean(log π + H̄) < 0 when −log π < H̄, so gradient descent raises α.
    return -(log_alpha.reshape(()) * (log_prob + target_entropy).detach()).mean()


def divergence_temperature_loss(
    log_alpha: Tensor, divergence: Tensor, target_divergence: float
) -> Tensor:
    """``mean(log α · (δ − D).detach())``: α grows while the divergence D exceeds δ."""
    if log_alpha.numel() != 1:
        raise ValueError(
            f"divergence_temperature_loss: expected log_alpha to be a scalar, "
            f"got shape {tuple(log_alpha.shape)}"
        )
    # d loss / d log α = mean(δ − D) < 0 when D > δ, so gradient descent raises α.
    return (log_alpha.reshape(()) * (target_divergence - divergence).detach()).mean()


def ll_bootstrap_value(
    next_q_ll_min: Tensor,
    next_ll_divergence: Tensor,
    alpha_ll: Tensor | float,
    next_k: Tensor,
    next_q_hl_min: Tensor,
    next_hl_divergence: Tensor | None,
    alpha_hl: Tensor | float | None,
    boundary_value: str = "reference",
) -> Tensor:
    """Skill-Critic LL "value upon arrival" ``U(s')`` (reference §3.5 (B)).

    ``U = (1 − β')·[Q̄_L,min(s',z',k',ã') − α_L·D_L(s',z',k')] + β'·V_H(s')`` with
    ``β' = 1[next_k == 0]`` (the next step starts a new skill). ``V_H(s') = Q̄_H,min(s', z̃')``
    minus ``α_L·D_L(s',z',k')`` for ``boundary_value="reference"`` (the published code's penalty
    term) or minus ``α_H·D_H(s')`` for ``"clean"`` (the option-critic value). ``next_hl_divergence``
    and ``alpha_hl`` are only read in the clean mode and may be None otherwise. ``next_k`` holds
    integer time indices (not one-hots), one per sample.
    """
    where = "ll_bootstrap_value"
    if boundary_value not in BOUNDARY_VALUES:
        raise ValueError(
            f"{where}: boundary_value must be one of {BOUNDARY_VALUES}, got {boundary_value!r}"
        )
    _check_same_shape(
        where,
        "next_q_ll_min",
        next_q_ll_min,
        next_ll_divergence=next_ll_divergence,
        next_k=next_k,
        next_q_hl_min=next_q_hl_min,
    )
    alpha_ll = _scalar(where, "alpha_ll", alpha_ll)
    ll_penalty = alpha_ll * next_ll_divergence
    if boundary_value == "reference":
        hl_penalty = ll_penalty
    else:
        if next_hl_divergence is None or alpha_hl is None:
            raise ValueError(
                f"{where}: boundary_value='clean' needs next_hl_divergence and alpha_hl"
            )
        _check_same_shape(
            where, "next_q_ll_min", next_q_ll_min, next_hl_divergence=next_hl_divergence
        )
        hl_penalty = _scalar(where, "alpha_hl", alpha_hl) * next_hl_divergence
    inside = next_q_ll_min - ll_penalty
    boundary = next_q_hl_min - hl_penalty
    # torch.where instead of (1 − β)·x + β·y, so a non-finite value on the unused branch cannot leak
    # in through 0·inf = nan.
    return torch.where(next_k == 0, boundary, inside)
