"""Soft (Polyak) update of target networks."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _paired(
    kind: str, source: dict[str, Tensor], target: dict[str, Tensor]
) -> list[tuple[Tensor, Tensor]]:
    """Pair tensors by name; raise ValueError if names or shapes differ."""
    if source.keys() != target.keys():
        missing = sorted(source.keys() - target.keys())
        extra = sorted(target.keys() - source.keys())
        raise ValueError(
            f"polyak_update: {kind} names differ (missing in target: {missing}, "
            f"only in target: {extra})"
        )
    pairs = []
    for name, s in source.items():
        t = target[name]
        if s.shape != t.shape:
            raise ValueError(
                f"polyak_update: {kind} {name!r}: expected target shape {tuple(s.shape)}, "
                f"got {tuple(t.shape)}"
            )
        pairs.append((s, t))
    return pairs


def polyak_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """In place, ``θ_target ← τ·θ_source + (1 − τ)·θ_target`` for parameters and float buffers.

    ``tau = 1`` copies exactly, ``tau = 0`` leaves the target unchanged. Non-floating buffers (e.g.
    BatchNorm's ``num_batches_tracked``) are not touched.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"polyak_update: tau must be in [0, 1], got {tau}")
    pairs = _paired("parameter", dict(source.named_parameters()), dict(target.named_parameters()))
    src_buffers = {n: b for n, b in source.named_buffers() if b.is_floating_point()}
    tgt_buffers = {n: b for n, b in target.named_buffers() if b.is_floating_point()}
    pairs += _paired("floating buffer", src_buffers, tgt_buffers)
    if tau == 0.0:
        return
    with torch.no_grad():
        for s, t in pairs:
            if tau == 1.0:
                t.copy_(s)
            else:
                t.lerp_(s.to(t.dtype), tau)  # t + τ·(s − t)
