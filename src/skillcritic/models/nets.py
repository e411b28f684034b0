"""Network building blocks of the skill models (reference §0.1 / SPiRL §2.1).

* :func:`mlp` — the "Predictor" MLP (Xavier-normal init, optional BatchNorm hidden blocks).
* :class:`ConvEncoder` — stride-2 conv pyramid from a 2^n×2^n image to a flat feature.
* :class:`SequenceEncoder` — embedding + LSTM over a sequence, read out at the last step.
* :class:`RecurrentDecoder` — open-loop autoregressive action decoder conditioned on a latent.

All modules accept arbitrary leading batch dims where noted, and keep no hidden state between
calls (the reference's stateful LSTM cell with a fixed batch size is deliberately not reproduced).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_LEAK = 0.2


class MLP(nn.Sequential):
    """An ``nn.Sequential`` that accepts inputs of shape ``(..., in_dim)``.

    BatchNorm1d needs ``(N, C)`` input, so all leading dims are flattened into one batch dim for
    the forward pass and restored afterwards.
    """

    def __init__(self, *layers: nn.Module, in_dim: int, out_dim: int) -> None:
        """Wrap ``layers``; ``in_dim``/``out_dim`` are the feature sizes of input and output."""
        super().__init__(*layers)
        self.in_dim = in_dim
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(..., in_dim)`` to ``(..., out_dim)``."""
        lead = x.shape[:-1]
        y = super().forward(x.reshape(-1, self.in_dim))
        return y.reshape(*lead, self.out_dim)


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: int = 128,
    n_hidden_layers: int = 3,
    batch_norm: bool = True,
    layer_norm: bool = False,
) -> MLP:
    """The reference "Predictor": ``n_hidden_layers + 2`` Linear layers, LeakyReLU(0.2).

    Input Linear(in→hidden) + LeakyReLU (never batch-normalised); ``n_hidden_layers`` blocks of
    Linear(hidden→hidden) [+ BatchNorm1d] + LeakyReLU, where the Linear has no bias when BN follows
    (BN's shift makes it redundant); a head Linear(hidden→out) without activation. All Linear
    weights are Xavier-normal, all biases zero. ``layer_norm`` (not in the reference; not with
    ``batch_norm``) puts a LayerNorm after every hidden Linear, the input one included: the head
    then sees features of bounded norm, so the output stays bounded however far an input lies
    from the data (the critics' optional guard against extrapolation).
    """
    if batch_norm and layer_norm:
        raise ValueError("mlp: batch_norm and layer_norm exclude each other")

    def activation() -> list[nn.Module]:  # after each hidden Linear (and its BatchNorm)
        return [nn.LayerNorm(hidden), nn.LeakyReLU(_LEAK)] if layer_norm else [nn.LeakyReLU(_LEAK)]

    layers: list[nn.Module] = [nn.Linear(in_dim, hidden), *activation()]
    for _ in range(n_hidden_layers):
        layers.append(nn.Linear(hidden, hidden, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        layers += activation()
    layers.append(nn.Linear(hidden, out_dim))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_normal_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return MLP(*layers, in_dim=in_dim, out_dim=out_dim)


def normalised(states: Tensor, mean: Tensor | None, std: Tensor | None) -> Tensor:
    """``(states − mean) / std``; ``states`` as they are without statistics."""
    return states if mean is None or std is None else (states - mean) / std


def views_to_float(views: Tensor) -> Tensor:
    """uint8 images in [0, 255] → float32 in [-1, 1] (``x / 127.5 - 1``)."""
    return views.to(torch.float32) / 127.5 - 1.0


class ConvEncoder(nn.Module):
    """Image encoder for square inputs of resolution ``R = 2^n`` (n >= 3).

    conv k4 s2 p1 (in→ngf) + LeakyReLU; n−3 convs k4 s2 p1 doubling the channels, each with
    [BatchNorm2d] + LeakyReLU; a final k4 valid conv to ``out_dim`` (no activation). The spatial
    size halves n−2 times down to 4, and the last conv takes 4×4 to 1×1. For R=32, ngf=8:
    32→16→8→4→1 with channels in→8→16→32→out.
    """

    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        ngf: int = 8,
        resolution: int = 32,
        batch_norm: bool = True,
    ) -> None:
        """Build the pyramid for ``resolution`` (a power of two, at least 8)."""
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        n = resolution.bit_length() - 1  # resolution == 2**n
        self.in_channels = in_channels
        self.out_dim = out_dim
        self.resolution = resolution

        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ngf, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(_LEAK),
        ]
        ch = ngf
        for _ in range(n - 3):
            layers.append(nn.Conv2d(ch, 2 * ch, kernel_size=4, stride=2, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(2 * ch))
            layers.append(nn.LeakyReLU(_LEAK))
            ch *= 2
        layers.append(nn.Conv2d(ch, out_dim, kernel_size=4))  # 4×4 → 1×1, no activation
        self.net = nn.Sequential(*layers).to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        """Map float images ``(..., C, R, R)`` to features ``(..., out_dim)``."""
        expected = (self.in_channels, self.resolution, self.resolution)
        if x.dim() < 4 or tuple(x.shape[-3:]) != expected:
            raise ValueError(f"expected input (..., {expected}), got {tuple(x.shape)}")
        lead = x.shape[:-3]
        # channels-last is oneDNN's native layout on CPU (measured faster for these convs)
        x = x.reshape(-1, *expected).contiguous(memory_format=torch.channels_last)
        y = self.net(x)  # (N, out_dim, 1, 1)
        return y.reshape(*lead, self.out_dim)


def _set_forget_bias(lstm: nn.LSTM | nn.LSTMCell, value: float = 1.0) -> None:
    """Set the forget-gate slice of every LSTM bias (PyTorch gate order i, f, g, o) to ``value``.

    Both ``bias_ih`` and ``bias_hh`` get it, so the effective forget bias is ``2 * value``.
    """
    h = lstm.hidden_size
    with torch.no_grad():
        for name, param in lstm.named_parameters():
            if name.startswith("bias_"):
                param[h : 2 * h].fill_(value)


class SequenceEncoder(nn.Module):
    """Per-step Linear embedding → one ``nn.LSTM`` → Linear on the last step's output."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128) -> None:
        """LSTM with ``hidden`` units, zero initial state, forget-gate biases set to 1."""
        super().__init__()
        self.embed = nn.Linear(in_dim, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, out_dim)
        _set_forget_bias(self.lstm, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        """Encode ``(B, T, in_dim)`` into ``(B, out_dim)``."""
        seq, _ = self.lstm(self.embed(x))  # (B, T, hidden)
        return self.out(seq[:, -1])


class RecurrentDecoder(nn.Module):
    """Open-loop autoregressive decoder ``z → (x_0, ..., x_{H-1})``.

    Step t feeds ``concat(x_{t-1}, z)`` through Linear embed → LSTMCell → Linear head, and the
    head's output is ``x_t``. The first input ``x_{-1}`` and the initial state ``(h0, c0)`` are
    learned parameters initialised to zero.
    """

    def __init__(self, action_dim: int, latent_dim: int, horizon: int, hidden: int = 128) -> None:
        """Decoder producing ``horizon`` actions of size ``action_dim`` from a ``latent_dim`` z."""
        super().__init__()
        self.action_dim = action_dim
        self.latent_dim = latent_dim
        self.horizon = horizon
        self.x_init = nn.Parameter(torch.zeros(action_dim))
        self.h_init = nn.Parameter(torch.zeros(hidden))
        self.c_init = nn.Parameter(torch.zeros(hidden))
        self.embed = nn.Linear(action_dim + latent_dim, hidden)
        self.cell = nn.LSTMCell(hidden, hidden)
        self.out = nn.Linear(hidden, action_dim)
        _set_forget_bias(self.cell, 1.0)

    def forward(self, z: Tensor) -> Tensor:
        """Decode ``(B, latent_dim)`` into ``(B, horizon, action_dim)``."""
        b = z.shape[0]
        x = self.x_init.expand(b, -1)
        h = self.h_init.expand(b, -1)
        c = self.c_init.expand(b, -1)
        outputs: list[Tensor] = []
        # Inherently sequential: each step's input is the previous step's output.
        for _ in range(self.horizon):
            h, c = self.cell(self.embed(torch.cat([x, z], dim=-1)), (h, c))
            x = self.out(h)
            outputs.append(x)
        return torch.stack(outputs, dim=1)
