"""Skill models: shapes, window alignment, loss terms against hand-computed values."""

import math

import pytest
import torch

from skillcritic.models.distributions import DiagGaussian
from skillcritic.models.skills import (
    VARIANTS,
    SkillOutput,
    SkillSpec,
    build_skill_model,
    reconstruction_nll,
    step_observations,
)

H, B = 4, 6


def batch(spec: SkillSpec, batch_size: int = B) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n = spec.n_actions
    out = {
        "states": torch.randn(batch_size, n + 1, spec.state_dim, generator=g),
        "actions": torch.rand(batch_size, n, spec.action_dim, generator=g) * 2 - 1,
    }
    if spec.image:
        out["views"] = torch.randint(0, 256, (batch_size, n + 1, 3, 32, 32), generator=g).to(
            torch.uint8
        )
    return out


def spec_for(variant: str, image: bool) -> SkillSpec:
    return SkillSpec(
        variant=variant,
        state_dim=4,
        action_dim=2,
        image=image,
        horizon=1 if variant == "flat" else H,
        hidden=32,
        prior_layers=2,
    )


@pytest.mark.parametrize("image", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_and_finite_losses(variant: str, image: bool) -> None:
    spec = spec_for(variant, image)
    model = build_skill_model(spec)
    out = model(batch(spec))
    assert out.reconstruction.shape == out.targets.shape == (B, spec.horizon, 2)
    losses = model.loss(out)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    assert model.best_of_n_error(batch(spec), 5).ndim == 0


def test_state_windows_pair_state_t_with_action_t() -> None:
    spec = spec_for("closed_loop", image=False)
    data = batch(spec)
    observations, targets = step_observations(data, spec)
    assert torch.equal(observations, data["states"][:, :H])
    assert torch.equal(targets, data["actions"][:, :H])


def test_image_windows_pair_views_t_t1_with_action_t1() -> None:
    spec = spec_for("closed_loop", image=True)
    data = batch(spec)
    assert data["actions"].shape[1] == H + 1
    observations, targets = step_observations(data, spec)
    assert observations.shape == (B, H, 6, 32, 32)
    assert torch.equal(targets, data["actions"][:, 1 : H + 1])
    views = data["views"].float() / 127.5 - 1
    for t in range(H):  # channels 0-2: view t, channels 3-5: view t+1
        assert torch.allclose(observations[:, t, :3], views[:, t])
        assert torch.allclose(observations[:, t, 3:], views[:, t + 1])


def test_reconstruction_nll_by_hand() -> None:
    targets = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    decoded = torch.tensor([[[0.0, 0.0], [0.0, 2.0]]])
    # mean over 4 elements of ½ (a − â)²: (½ + 0 + 0 + 2) / 4 = 0.625, plus log √(2π)
    assert reconstruction_nll(decoded, targets).item() == pytest.approx(
        0.625 + 0.5 * math.log(2 * math.pi)
    )


def test_loss_terms_by_hand() -> None:
    spec = SkillSpec(
        variant="open_loop", state_dim=1, action_dim=1, horizon=1, latent_dim=2, beta=0.5
    )
    model = build_skill_model(spec)
    posterior = DiagGaussian(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]]))
    prior = DiagGaussian(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.0]]))
    z = torch.tensor([[1.0, 2.0]])
    output = SkillOutput(posterior, prior, z, torch.zeros(1, 1, 1), torch.ones(1, 1, 1))
    losses = model.loss(output)
    # KL per dim vs N(0,1): dim0 = ½(1 + 1) − ½ = 0.5; dim1 = −log 2 + ½·4 − ½ = 1.5 − log 2
    kl = (0.5 + 1.5 - math.log(2.0)) / 2
    # prior NLL of z under N(0, I): ½(1 + 4) + 2·log √(2π)
    prior_nll = 2.5 + math.log(2 * math.pi)
    rec = 0.5 + 0.5 * math.log(2 * math.pi)
    assert losses["kl"].item() == pytest.approx(kl)
    assert losses["prior_nll"].item() == pytest.approx(prior_nll)
    assert losses["rec"].item() == pytest.approx(rec)
    assert losses["total"].item() == pytest.approx(rec + 0.5 * kl + prior_nll)


def test_prior_loss_does_not_reach_the_encoder() -> None:
    spec = spec_for("cond_decoder", image=False)
    model = build_skill_model(spec)
    out = model(batch(spec))
    model.loss(out)["prior_nll"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.prior.parameters())


def test_cond_decoder_uses_the_time_index() -> None:
    spec = spec_for("cond_decoder", image=False)
    model = build_skill_model(spec).eval()
    z = torch.randn(3, spec.latent_dim)
    observation = torch.randn(3, 4)
    first = model.decode_step(z, observation, 0)
    assert not torch.allclose(first, model.decode_step(z, observation, 2))
    same_obs = observation.unsqueeze(1).expand(-1, H, -1)
    assert torch.allclose(
        model.decode(z, same_obs)[:, 2], model.decode_step(z, observation, 2), atol=1e-5
    )


def test_flat_model_nll() -> None:
    spec = spec_for("flat", image=False)
    model = build_skill_model(spec)
    out = model(batch(spec))
    expected = -out.prior.log_prob(out.targets).sum(-1).mean()
    assert model.loss(out)["total"].item() == pytest.approx(expected.item())
