"""skillcritic.rl.levels: one SAC update (order, isolation, Polyak, α direction), prior heads."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from skillcritic.models.distributions import DiagGaussian
from skillcritic.models.nets import mlp
from skillcritic.models.skills import SkillSpec
from skillcritic.prior.module import SkillPriorModule, spec_dict
from skillcritic.rl.levels import (
    CriticEnsemble,
    SACLevel,
    frozen_prior,
    make_optimizers,
    prior_policy_head,
)
from skillcritic.rl.losses import critic_loss

OBS, ACT, B = 3, 2, 8


class GaussianActor(nn.Module):
    """obs (B, 3) → DiagGaussian over 2-d pre-tanh actions."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(OBS, 2 * ACT, hidden=16, n_hidden_layers=1, batch_norm=False)

    def forward(self, obs: Tensor) -> DiagGaussian:
        return DiagGaussian.from_params(self.net(obs))


def make_level(**kwargs: object) -> SACLevel:
    torch.manual_seed(0)
    critic = CriticEnsemble(OBS + ACT, hidden=16, n_hidden_layers=1)
    return SACLevel(GaussianActor(), critic, ACT, **kwargs)  # type: ignore[arg-type]


def make_batch(b: int = B) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "obs": torch.randn(b, OBS, generator=g),
        "action": torch.rand(b, ACT, generator=g) * 2 - 1,
        "reward": torch.randn(b, generator=g),
        "next_obs": torch.randn(b, OBS, generator=g),
        "terminated": (torch.rand(b, generator=g) < 0.3).float(),
    }


def snapshot(module: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(a, p) for a, p in zip(before, module.parameters(), strict=True))


def test_twin_critic_shapes_and_min() -> None:
    critic = CriticEnsemble(5, hidden=8, n_hidden_layers=1)
    x = torch.randn(4, 5)
    q1, q2 = critic(x)
    assert q1.shape == q2.shape == (4,)
    assert torch.equal(critic.min(x), torch.minimum(q1, q2))
    assert not any(isinstance(m, nn.BatchNorm1d) for m in critic.modules())
    # the twin's parameter names are the members q1, q2 (checkpoints of twin critics load)
    assert {name.split(".")[0] for name in critic.state_dict()} == {"q1", "q2"}


def test_critic_ensemble_min_is_over_every_member() -> None:
    critic = CriticEnsemble(5, hidden=8, n_hidden_layers=1, n_critics=5)
    x = torch.randn(64, 5)
    values = critic(x)
    assert len(values) == 5 and all(q.shape == (64,) for q in values)
    expected = values[0]
    for q in values[1:]:
        expected = torch.minimum(expected, q)
    torch.testing.assert_close(critic.min(x), expected)
    # members start apart: the minimum of five lies below the minimum of the first two
    assert (critic.min(x) < torch.minimum(values[0], values[1])).any()
    # the loss trains every member
    y = torch.zeros(64)
    critic_loss(values, y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())
    with pytest.raises(ValueError, match="at least one member"):
        CriticEnsemble(5, n_critics=0)


def test_update_changes_actor_and_critic_and_moves_target_by_tau() -> None:
    level = make_level(tau=0.1)
    critic0, actor0 = snapshot(level.critic), snapshot(level.actor)
    target0 = snapshot(level.critic_target)
    assert all(not p.requires_grad for p in level.critic_target.parameters())
    stats = level.update(make_batch(), make_optimizers(level))
    assert set(stats) == {
        "critic_loss",
        "actor_loss",
        "alpha",
        "regulariser",
        "q_mean",
        "target_mean",
    }
    assert all(isinstance(v, float) for v in stats.values())
    assert changed(critic0, level.critic) and changed(actor0, level.actor)
    # θ̄ ← τ·θ + (1 − τ)·θ̄ on one parameter, by hand
    w_new = level.critic.q1[0].weight.detach()
    expected = 0.1 * w_new + 0.9 * target0[0]
    torch.testing.assert_close(level.critic_target.q1[0].weight, expected, rtol=0, atol=1e-6)
    assert not torch.equal(level.critic_target.q1[0].weight, target0[0])


def test_frozen_actor_and_alpha_stay_unchanged() -> None:
    level = make_level()
    level.train_actor = level.train_alpha = False
    actor0, critic0 = snapshot(level.actor), snapshot(level.critic)
    log_alpha0 = level.log_alpha.detach().clone()
    stats = level.update(make_batch(), make_optimizers(level))
    assert not changed(actor0, level.actor)
    assert "actor_loss" not in stats
    assert torch.equal(level.log_alpha.detach(), log_alpha0)
    assert changed(critic0, level.critic)
    assert stats["alpha"] == pytest.approx(1.0)


def test_actor_loss_sends_no_gradient_to_critic() -> None:
    level = make_level()
    level.train_critic = False
    critic0, target0 = snapshot(level.critic), snapshot(level.critic_target)
    actor0 = snapshot(level.actor)
    level.update(make_batch(), make_optimizers(level))
    assert changed(actor0, level.actor)
    assert not changed(critic0, level.critic)
    assert not changed(target0, level.critic_target)
    assert all(p.grad is None for p in level.critic.parameters())


@pytest.mark.parametrize(("delta", "rises"), [(0.0, True), (1e3, False)])
def test_alpha_follows_divergence(delta: float, rises: bool) -> None:
    torch.manual_seed(3)
    reference = GaussianActor()  # a different network: D > 0
    level = make_level(regulariser="divergence", target=delta, reference=reference)
    ref0 = snapshot(reference)
    level.train_actor = level.train_critic = False
    stats = level.update(make_batch(), make_optimizers(level))
    assert stats["regulariser"] > 0.0
    assert (float(level.alpha) > 1.0) is rises
    assert (float(level.alpha) < 1.0) is not rises
    assert not changed(ref0, reference)
    assert all(not p.requires_grad for p in reference.parameters())


def test_entropy_alpha_direction() -> None:
    # a very high target entropy is never reached: α rises
    level = make_level(target=100.0)
    level.train_actor = level.train_critic = False
    level.update(make_batch(), make_optimizers(level))
    assert float(level.alpha) > 1.0


def test_next_value_override_sets_target() -> None:
    level = make_level(gamma=0.9)
    batch = make_batch(2)
    batch["reward"] = torch.tensor([1.0, 2.0])
    batch["terminated"] = torch.tensor([0.0, 1.0])
    override = torch.tensor([10.0, 20.0])
    stats = level.update(batch, make_optimizers(level), next_value_override=override)
    # y = [1 + 0.9·10, 2] → mean 6
    assert stats["target_mean"] == pytest.approx(6.0)


def test_critic_input_and_act() -> None:
    level = make_level(action_scale=2.0)
    calls: list[tuple[int, ...]] = []

    def critic_input(obs: Tensor, action: Tensor) -> Tensor:
        calls.append(tuple(obs.shape))
        return torch.cat([obs, action], dim=-1)

    level.update(make_batch(), make_optimizers(level), critic_input)
    assert len(calls) == 3  # actor loss, next value, critic loss
    obs = make_batch()["obs"]
    a = level.act(obs)
    assert a.shape == (B, ACT) and not a.requires_grad and a.abs().max() <= 2.0
    det = level.act(obs, deterministic=True)
    torch.testing.assert_close(det, 2.0 * torch.tanh(level.actor(obs).mu.detach()))


def tiny_prior(normalise: bool = False) -> SkillPriorModule:
    torch.manual_seed(0)
    spec = SkillSpec(
        variant="cond_decoder", state_dim=4, action_dim=2, horizon=3, hidden=16, prior_layers=2
    )
    stats = {"state_mean": [1.0, -1.0, 0.5, 0.0], "state_std": [2.0, 1.0, 0.5, 3.0]}
    return SkillPriorModule(spec_dict(spec), **(stats if normalise else {})).eval()


def batch_norms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("normalise", [False, True])
def test_prior_policy_head_matches_prior(normalise: bool) -> None:
    module = tiny_prior(normalise)
    # non-trivial running stats, so eval vs train mode BN would differ
    for bn in batch_norms(module.model.prior):
        bn.running_mean.uniform_(-1, 1)  # type: ignore[operator]
        bn.running_var.uniform_(0.5, 2)  # type: ignore[operator]
    head = prior_policy_head(module)
    head.train()
    assert batch_norms(head) and all(not bn.training for bn in batch_norms(head))
    assert all(p.requires_grad for p in head.parameters())
    obs = torch.randn(5, 4)
    prior_in = (obs - module.state_mean) / module.state_std if normalise else obs
    expected = module.model.prior(prior_in)
    dist = head(obs)
    torch.testing.assert_close(dist.mu, expected.mu)
    torch.testing.assert_close(dist.log_sigma, expected.log_sigma)
    running0 = [bn.running_mean.clone() for bn in batch_norms(head)]  # type: ignore[union-attr]
    dist.mu.sum().backward()
    for bn, r0 in zip(batch_norms(head), running0, strict=True):
        assert torch.equal(bn.running_mean, r0)  # type: ignore[arg-type]


def test_prior_policy_head_is_independent_copy() -> None:
    module = tiny_prior()
    head, frozen = prior_policy_head(module), frozen_prior(module)
    source = next(module.model.prior.parameters())
    copied = next(head.parameters())
    assert source.data_ptr() != copied.data_ptr()
    src0 = source.detach().clone()
    with torch.no_grad():
        copied.add_(1.0)
    assert torch.equal(source, src0)
    with torch.no_grad():
        source.mul_(0.0)
    assert not torch.equal(copied, source)
    assert all(not p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert all(not bn.training for bn in batch_norms(frozen))


def test_divergence_zero_at_prior_initialisation() -> None:
    module = tiny_prior()
    head, frozen = prior_policy_head(module), frozen_prior(module)
    critic = CriticEnsemble(4 + 10, hidden=16, n_hidden_layers=1)
    level = SACLevel(
        head, critic, 10, regulariser="divergence", target=1.0, reference=frozen, action_scale=2.0
    )
    _, d = level.regularised_sample(torch.randn(6, 4))
    assert d.shape == (6,)
    torch.testing.assert_close(d, torch.zeros(6), atol=1e-5, rtol=0)


@pytest.mark.parametrize("normalise", [False, True])
def test_decoder_head_starts_equal_to_its_frozen_reference(normalise: bool) -> None:
    from skillcritic.models.distributions import kl_analytic
    from skillcritic.models.skills import SkillSpec
    from skillcritic.prior.module import SkillPriorModule, spec_dict
    from skillcritic.rl.levels import decoder_policy_head, frozen_decoder

    torch.manual_seed(0)
    spec = SkillSpec(
        variant="cond_decoder", state_dim=4, action_dim=2, horizon=5, hidden=16, prior_layers=1
    )
    stats = {"state_mean": [1.0, -1.0, 0.5, 0.0], "state_std": [2.0, 1.0, 0.5, 3.0]}
    module = SkillPriorModule(spec_dict(spec), **(stats if normalise else {})).eval()
    policy, reference = decoder_policy_head(module), frozen_decoder(module)
    obs, z = 3.0 * torch.randn(6, 4) + 2.0, torch.randn(6, spec.latent_dim)
    k = torch.tensor([0, 1, 2, 3, 4, 0])
    pi, prior = policy(obs, z, k), reference(obs, z, k)
    # the mean is the decoder's mean at the same time index on the states the prior was trained
    # on (normalised with its statistics, as the prior check acts); log sigma exactly -3 for both
    features = module.model.step_features(module.normalise_states(obs))
    expected = torch.stack(
        [
            module.model.decode_step(z[i : i + 1], features[i : i + 1], int(k[i]))[0]
            for i in range(6)
        ]
    )
    assert torch.allclose(pi.mu, expected, atol=1e-6)
    assert torch.allclose(pi.log_sigma, torch.full_like(pi.log_sigma, -3.0))
    assert torch.allclose(kl_analytic(pi, prior), torch.zeros(6, 2), atol=1e-6)
    assert any(p.requires_grad for p in policy.parameters())
    assert not any(p.requires_grad for p in reference.parameters())
    policy.train()
    assert all(not m.training for m in policy.modules() if isinstance(m, torch.nn.BatchNorm1d))
    with pytest.raises(ValueError, match="cond_decoder"):
        decoder_policy_head(SkillPriorModule(spec_dict(SkillSpec("closed_loop", 4, 2, horizon=5))))


def test_td_targets_are_cut_at_the_largest_possible_return() -> None:
    batch = make_batch() | {"reward": torch.full((B,), 50.0)}
    free, bounded = make_level(), make_level(max_value=7.0)
    stats_free = free.update(batch, make_optimizers(free))
    stats_bounded = bounded.update(batch, make_optimizers(bounded))
    assert stats_free["target_mean"] > 7.0  # rewards of 50 alone exceed the bound
    assert stats_bounded["target_mean"] == pytest.approx(7.0)


def test_value_bound_of_a_level() -> None:
    from skillcritic.rl.agents import AgentSpec

    spec = AgentSpec(name="spirl", state_dim=4, action_dim=2, gamma=0.99, max_reward=1.0)
    assert spec.value_bound(10) == pytest.approx(1000.0)  # HL: 10 env steps per step
    assert spec.value_bound(1) == pytest.approx(100.0)
    assert AgentSpec(name="spirl", state_dim=4, action_dim=2).value_bound(10) is None


def test_temperature_floor() -> None:
    # the target entropy -100 is always exceeded, so α falls at every update
    batch = make_batch()
    free, floored = make_level(target=-100.0), make_level(target=-100.0, min_alpha=0.5)
    for level in (free, floored):
        optimizers = make_optimizers(level, lr=0.1)
        for _ in range(30):
            level.update(batch, optimizers)
    assert float(free.alpha) < 0.1  # ~exp(-0.1 · 30) without the floor
    assert float(floored.alpha) == pytest.approx(0.5)


def test_temperature_floor_is_the_high_levels() -> None:
    from skillcritic.rl.agents import AgentSpec, build_agent

    spec = AgentSpec(name="skill_critic", state_dim=4, action_dim=2, min_alpha=0.2)
    agent = build_agent(spec, tiny_prior())
    assert agent.hl.log_min_alpha == pytest.approx(math.log(0.2))
    assert agent.ll is not None and agent.ll.log_min_alpha is None
    with pytest.raises(ValueError, match="min_alpha"):
        AgentSpec(name="spirl", state_dim=4, action_dim=2, min_alpha=0.0)


def test_low_level_temperature_floor_is_its_own() -> None:
    from skillcritic.rl.agents import AgentSpec, build_agent

    spec = AgentSpec(name="skill_critic", state_dim=4, action_dim=2, ll_min_alpha=0.1)
    agent = build_agent(spec, tiny_prior())
    assert agent.hl.log_min_alpha is None
    assert agent.ll is not None and agent.ll.log_min_alpha == pytest.approx(math.log(0.1))
    with pytest.raises(ValueError, match="ll_min_alpha"):
        AgentSpec(name="skill_critic", state_dim=4, action_dim=2, ll_min_alpha=-1.0)


def test_low_level_actor_and_high_level_temperature_step_with_their_own_learning_rates() -> None:
    from skillcritic.rl.agents import AgentSpec, build_agent

    def step_sizes(spec: AgentSpec) -> dict[str, float]:
        opts = build_agent(spec, tiny_prior()).optimizers()
        return {
            f"{level}/{name}": opt.param_groups[0]["lr"]
            for level, named in opts.items()
            for name, opt in named.items()
        }

    default = step_sizes(AgentSpec(name="skill_critic", state_dim=4, action_dim=2, lr=3e-4))
    assert set(default.values()) == {3e-4}
    steady = step_sizes(
        AgentSpec(name="skill_critic", state_dim=4, action_dim=2, lr=3e-4, ll_actor_lr=1e-4)
    )
    assert steady.pop("ll/actor") == 1e-4
    assert set(steady.values()) == {3e-4}  # HL, critics and temperatures keep lr
    quick = step_sizes(
        AgentSpec(name="skill_critic", state_dim=4, action_dim=2, lr=3e-4, alpha_lr=3e-3)
    )
    assert quick.pop("hl/alpha") == 3e-3
    assert set(quick.values()) == {3e-4}  # α_L, the policies and critics keep lr
    for name in ("ll_actor_lr", "alpha_lr"):
        with pytest.raises(ValueError, match=name):
            AgentSpec(name="skill_critic", state_dim=4, action_dim=2, **{name: 0.0})


def test_straight_through_clip_clips_forward_and_passes_the_gradient() -> None:
    from skillcritic.rl.losses import straight_through_clip

    u = torch.tensor([-2.5, -0.5, 0.0, 0.7, 1.5], requires_grad=True)
    a = straight_through_clip(u, 1.0)
    assert a.tolist() == pytest.approx([-1.0, -0.5, 0.0, 0.7, 1.0])
    (a * torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])).sum().backward()
    assert u.grad is not None and u.grad.tolist() == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0])


def test_clip_squash_acts_the_mean_and_keeps_samples_in_the_box() -> None:
    reference = GaussianActor().requires_grad_(False)
    level = make_level(regulariser="divergence", target=1.0, reference=reference, squash="clip")
    obs = 3.0 * torch.randn(64, OBS)
    mu = level.actor(obs).mu.detach()
    assert mu.abs().max() > 1.0  # some means lie outside the box
    assert torch.equal(level.act(obs, deterministic=True), mu.clamp(-1.0, 1.0))
    assert level.act(obs).abs().max() <= 1.0
    action, divergence = level.regularised_sample(obs)
    assert action.abs().max() <= 1.0 and divergence.shape == (64,)
    optimizers = make_optimizers(level, lr=1e-3)
    before = snapshot(level.actor)
    level.update(make_batch(), optimizers)
    assert changed(before, level.actor)
    with pytest.raises(ValueError, match="divergence"):
        make_level(squash="clip")
    with pytest.raises(ValueError, match="squash"):
        make_level(squash="sigmoid")


@pytest.mark.parametrize("squash", ["tanh", "clip"])
def test_skill_critic_low_level_starts_as_the_decoder_it_copies(squash: str) -> None:
    from skillcritic.rl.agents import AgentSpec, FrozenSkills, build_agent

    spec = AgentSpec(name="skill_critic", state_dim=4, action_dim=2, ll_squash=squash)
    prior = tiny_prior(normalise=True)
    agent = build_agent(spec, prior)
    obs = {"state": 3.0 * torch.randn(32, 4)}
    z, k = torch.randn(32, prior.spec.latent_dim), torch.randint(0, 3, (32,))
    decoder_action = FrozenSkills(prior)(obs, z, k)  # SPiRL-cd's low level: the clipped mean
    acted = agent.ll_act(obs, z, k, deterministic=True)
    if squash == "clip":
        assert torch.allclose(acted, decoder_action, atol=1e-6)
    else:  # the reference's quirk: tanh of the decoder mean, short of it wherever |μ| is large
        mu = agent.ll.reference({**obs, "z": z, "k": k}).mu  # type: ignore[union-attr]
        assert torch.allclose(acted, torch.tanh(mu), atol=1e-6)
    with pytest.raises(ValueError, match="ll_squash"):
        AgentSpec(name="skill_critic", state_dim=4, action_dim=2, ll_squash="relu")
