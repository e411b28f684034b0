"""skillcritic.models.nets: MLP, ConvEncoder, SequenceEncoder, RecurrentDecoder, views_to_float."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skillcritic.models.nets import (
    ConvEncoder,
    RecurrentDecoder,
    SequenceEncoder,
    mlp,
    views_to_float,
)

# --- mlp ------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_norm", [True, False])
def test_mlp_structure_and_init(batch_norm: bool) -> None:
    torch.manual_seed(0)
    net = mlp(7, 3, hidden=64, n_hidden_layers=4, batch_norm=batch_norm)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(linears) == 4 + 2
    assert len(bns) == (4 if batch_norm else 0)
    acts = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 5 and all(a.negative_slope == 0.2 for a in acts)
    assert isinstance(list(net.children())[-1], nn.Linear)  # head: no activation
    # Input and head Linears always have bias; hidden ones only without BN.
    assert linears[0].bias is not None and linears[-1].bias is not None
    for lin in linears[1:-1]:
        assert (lin.bias is None) == batch_norm
    for lin in linears:
        if lin.bias is not None:
            assert torch.all(lin.bias == 0)
        fan_in, fan_out = lin.weight.shape[1], lin.weight.shape[0]
        xavier_std = (2.0 / (fan_in + fan_out)) ** 0.5
        assert lin.weight.std().item() == pytest.approx(xavier_std, rel=0.25)


def test_mlp_layer_norm_bounds_the_output_far_from_the_data() -> None:
    torch.manual_seed(0)
    net = mlp(4, 1, hidden=32, n_hidden_layers=2, batch_norm=False, layer_norm=True)
    kinds = [type(m) for m in net.children()]
    # Linear → LayerNorm → LeakyReLU for the input and each hidden layer, then the head.
    assert kinds == [nn.Linear, nn.LayerNorm, nn.LeakyReLU] * 3 + [nn.Linear]
    plain = mlp(4, 1, hidden=32, n_hidden_layers=2, batch_norm=False)
    head = list(net.children())[-1]
    # The head sees LeakyReLU(LayerNorm(·)) with unit gain: a vector of norm <= sqrt(hidden).
    bound = head.weight.norm().item() * 32**0.5 + head.bias.abs().item()
    x = torch.randn(64, 4)
    for scale in (1.0, 1e3, 1e6):
        assert net(scale * x).abs().max().item() <= bound
    # Without it the output grows with the input's distance (piecewise linear).
    assert plain(1e6 * x).abs().max().item() > 1e4 * plain(x).abs().max().item()
    with pytest.raises(ValueError, match="exclude each other"):
        mlp(4, 1, batch_norm=True, layer_norm=True)


def test_mlp_leading_dims() -> None:
    net = mlp(5, 2, hidden=16, n_hidden_layers=2)
    assert net(torch.randn(8, 5)).shape == (8, 2)
    assert net(torch.randn(4, 3, 5)).shape == (4, 3, 2)
    net.eval()
    assert net(torch.randn(2, 3, 4, 5)).shape == (2, 3, 4, 2)
    # Flattening leading dims must not mix rows: (A, B, in) equals the flat run.
    x = torch.randn(3, 4, 5)
    torch.testing.assert_close(net(x), net(x.reshape(12, 5)).reshape(3, 4, 2))


# --- images ---------------------------------------------------------------------------------


def test_views_to_float() -> None:
    v = torch.tensor([0, 255, 127], dtype=torch.uint8)
    out = views_to_float(v)
    assert out.dtype == torch.float32
    assert out[0].item() == -1.0 and out[1].item() == 1.0
    assert -0.01 < out[2].item() < 0.0


@pytest.mark.parametrize(
    ("resolution", "spatial", "channels"),
    [(32, [16, 8, 4, 1], [8, 16, 32, 10]), (64, [32, 16, 8, 4, 1], [8, 16, 32, 64, 10])],
)
def test_conv_encoder_pyramid(resolution: int, spatial: list[int], channels: list[int]) -> None:
    enc = ConvEncoder(6, 10, ngf=8, resolution=resolution)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == channels
    assert convs[0].in_channels == 6
    # BN on every conv except the first and the head.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in enc.modules()) == len(convs) - 2
    sizes: list[int] = []
    hooks = [c.register_forward_hook(lambda _m, _i, o: sizes.append(o.shape[-1])) for c in convs]
    out = enc(torch.randn(2, 6, resolution, resolution))
    for h in hooks:
        h.remove()
    assert sizes == spatial
    assert out.shape == (2, 10)


def test_conv_encoder_leading_dims_and_checks() -> None:
    enc = ConvEncoder(3, 4, resolution=32, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in enc.modules())
    x = torch.randn(2, 5, 3, 32, 32)
    out = enc(x)
    assert out.shape == (2, 5, 4)
    torch.testing.assert_close(out[1, 2], enc(x[1, 2:3])[0])
    with pytest.raises(ValueError):
        enc(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError):
        ConvEncoder(3, 4, resolution=48)


# --- sequence encoder -----------------------------------------------------------------------


def _forget_slice(t: torch.Tensor, hidden: int) -> torch.Tensor:
    return t[hidden : 2 * hidden]


def test_sequence_encoder_shape_forget_bias_and_manual_run() -> None:
    torch.manual_seed(0)
    enc = SequenceEncoder(4, 6, hidden=16)
    assert torch.all(_forget_slice(enc.lstm.bias_ih_l0, 16) == 1)
    assert torch.all(_forget_slice(enc.lstm.bias_hh_l0, 16) == 1)
    x = torch.randn(3, 9, 4)
    out = enc(x)
    assert out.shape == (3, 6)

    # Manual run with the same weights through an LSTMCell: zero state, last step read out.
    cell = nn.LSTMCell(16, 16)
    cell.weight_ih.data.copy_(enc.lstm.weight_ih_l0)
    cell.weight_hh.data.copy_(enc.lstm.weight_hh_l0)
    cell.bias_ih.data.copy_(enc.lstm.bias_ih_l0)
    cell.bias_hh.data.copy_(enc.lstm.bias_hh_l0)
    h = c = torch.zeros(3, 16)
    for t in range(9):
        h, c = cell(enc.embed(x[:, t]), (h, c))
    torch.testing.assert_close(out, enc.out(h))

    # Earlier steps still matter through the recurrence.
    x2 = x.clone()
    x2[:, 0] += 1.0
    assert not torch.allclose(enc(x2), out)


# --- recurrent decoder ----------------------------------------------------------------------


def test_recurrent_decoder_autoregressive() -> None:
    torch.manual_seed(0)
    dec = RecurrentDecoder(action_dim=2, latent_dim=5, horizon=7, hidden=16)
    assert torch.all(_forget_slice(dec.cell.bias_ih, 16) == 1)
    assert torch.all(_forget_slice(dec.cell.bias_hh, 16) == 1)
    for p in (dec.x_init, dec.h_init, dec.c_init):
        assert torch.all(p == 0)
    with torch.no_grad():  # non-trivial learned start so the test sees it
        dec.x_init.normal_()
        dec.h_init.normal_()
        dec.c_init.normal_()
    z = torch.randn(3, 5)
    out = dec(z)
    assert out.shape == (3, 7, 2)

    # Manual autoregression: each step's input is the previous step's output.
    x, h, c = dec.x_init.expand(3, 2), dec.h_init.expand(3, 16), dec.c_init.expand(3, 16)
    for t in range(7):
        h, c = dec.cell(dec.embed(torch.cat([x, z], -1)), (h, c))
        x = dec.out(h)
        torch.testing.assert_close(out[:, t], x)

    # Depends on z and on the learned initial state.
    assert not torch.allclose(dec(z + 0.5), out)
    with torch.no_grad():
        dec.h_init.add_(0.5)
    assert not torch.allclose(dec(z)[:, 0], out[:, 0])


def test_recurrent_decoder_gradients_reach_initial_params() -> None:
    dec = RecurrentDecoder(action_dim=3, latent_dim=4, horizon=5, hidden=8)
    z = torch.randn(2, 4, requires_grad=True)
    dec(z).pow(2).sum().backward()
    for p in (dec.x_init, dec.h_init, dec.c_init):
        assert p.grad is not None and torch.any(p.grad != 0)
    assert z.grad is not None and torch.any(z.grad != 0)


# --- batch of one in eval mode --------------------------------------------------------------


def test_batch_of_one_eval() -> None:
    modules = [
        mlp(5, 2),
        ConvEncoder(6, 8),
        SequenceEncoder(3, 4),
        RecurrentDecoder(2, 4, horizon=3),
    ]
    for m in modules:
        m.eval()
    with torch.no_grad():
        assert modules[0](torch.randn(1, 5)).shape == (1, 2)
        assert modules[0](torch.randn(5)).shape == (2,)
        assert modules[1](views_to_float(torch.zeros(1, 6, 32, 32, dtype=torch.uint8))).shape == (
            1,
            8,
        )
        assert modules[2](torch.randn(1, 6, 3)).shape == (1, 4)
        assert modules[3](torch.randn(1, 4)).shape == (1, 3, 2)
