"""skillcritic.rl.agents: the eight agents built over small untrained image priors.

Structure and action bounds of every agent, the prior checks, the frozen low levels acting as the
prior does (``PriorPolicy``), the initial divergences, Skill-Critic's stages, which parameters an
update may touch, the LL bootstrap value ``U(s')`` and seeded reproducibility.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from skillcritic.models.nets import views_to_float
from skillcritic.models.skills import SkillSpec
from skillcritic.prior.module import SkillPriorModule, spec_dict
from skillcritic.prior.policy import PriorPolicy
from skillcritic.rl.agents import (
    AGENT_PRIORS,
    AGENTS,
    AgentSpec,
    LowLevelActor,
    SkillAgent,
    build_agent,
    check_prior_fits,
)
from skillcritic.rl.losses import ll_bootstrap_value

H = 4  # skill horizon of the small priors
NZ = 10  # SkillSpec's default latent_dim
DS, DA = 4, 2  # the maze's state and action dims
FLAT = ("sac", "bc_sac", "flat_prior")
SPIRL_FAMILY = ("spirl", "spirl_cl", "spirl_cd")
PRIOR_COPIES = (*SPIRL_FAMILY, "skill_critic")  # HL = trainable copy of the learned prior


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ---------------------------------------------------------------------- helpers


def small_prior(variant: str, horizon: int = H) -> SkillPriorModule:
    """An untrained image prior with non-trivial BatchNorm running statistics."""
    spec = SkillSpec(
        variant=variant,
        state_dim=DS,
        action_dim=DA,
        image=True,
        horizon=1 if variant == "flat" else horizon,
        hidden=32,
        prior_layers=2,
    )
    module = SkillPriorModule(spec_dict(spec))
    for bn in module.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            bn.running_mean.uniform_(-0.5, 0.5)  # type: ignore[operator]
            bn.running_var.uniform_(0.5, 2.0)  # type: ignore[operator]
    return module.eval()


def small_spec(name: str, **kwargs: Any) -> AgentSpec:
    sizes: dict[str, Any] = dict(
        policy_hidden=32,
        critic_hidden=32,
        ll_critic_hidden=32,
        ll_critic_layers=2,
        kl_samples=4,
    )
    return AgentSpec(name, DS, DA, **(sizes | kwargs))


def make_agent(name: str, **kwargs: Any) -> tuple[SkillAgent, SkillPriorModule | None]:
    variant = AGENT_PRIORS[name]
    prior = None if variant is None else small_prior(variant)
    return build_agent(small_spec(name, **kwargs), prior), prior


def make_obs(n: int, seed: int = 1) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "state": torch.randn(n, DS, generator=g) * 5,
        "view": torch.randint(0, 256, (n, 2, 3, 32, 32), generator=g, dtype=torch.uint8),
    }


def view_pair(obs: dict[str, Tensor]) -> Tensor:
    return views_to_float(obs["view"]).flatten(1, 2)


def replay_rows(agent: SkillAgent, b: int = 16, seed: int = 2) -> dict[str, dict[str, Tensor]]:
    """HL (and for Skill-Critic LL) replay batches shaped as Experience.sample() yields them."""
    g = torch.Generator().manual_seed(seed)
    obs, next_obs = make_obs(b, seed), make_obs(b, seed + 100)
    keys = ("state", "view") if agent.uses_views else ("state",)
    rows = {key: obs[key] for key in keys} | {f"next_{key}": next_obs[key] for key in keys}
    flags = {
        "reward": torch.randn(b, generator=g),
        "terminated": torch.rand(b, generator=g) < 0.2,
        "truncated": torch.zeros(b, dtype=torch.bool),
    }
    scale = 1.0 if agent.flat else agent.spec.skill_scale
    z = scale * torch.tanh(torch.randn(b, agent.nz, generator=g))
    batches = {"hl": rows | flags | {"z": z}}
    if agent.ll is not None:
        k = torch.randint(0, agent.horizon, (b,), generator=g)
        next_k = (k + 1) % agent.horizon
        next_z = torch.where((next_k == 0)[:, None], torch.randn(b, agent.nz, generator=g), z)
        batches["ll"] = (
            rows
            | flags
            | {
                "z": z,
                "k": k,
                "action": torch.rand(b, DA, generator=g) * 2 - 1,
                "next_z": next_z,
                "next_k": next_k,
            }
        )
    return batches


def state_snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def changed_keys(before: dict[str, Tensor], module: nn.Module) -> set[str]:
    after = module.state_dict()
    return {key for key, value in before.items() if not torch.equal(value, after[key])}


def params_changed(before: dict[str, Tensor], module: nn.Module) -> bool:
    return bool(changed_keys(before, module))


# ---------------------------------------------------------------------- structure and acting


@pytest.mark.parametrize("name", AGENTS)
def test_build_agent_structure(name: str) -> None:
    agent, prior = make_agent(name)
    flat = name in FLAT
    assert agent.horizon == (1 if flat else H)
    assert agent.nz == (DA if flat else NZ)
    assert agent.flat is flat
    assert (agent.ll is not None) is (name == "skill_critic")
    assert (agent.skills is not None) is (name in (*SPIRL_FAMILY, "no_prior"))
    assert agent.random_warmup is (name == "sac")
    assert agent.hl.action_scale == (1.0 if flat else agent.spec.skill_scale)
    entropy = name in ("sac", "bc_sac", "no_prior")
    assert agent.hl.regulariser == ("entropy" if entropy else "divergence")
    assert (agent.hl.reference is None) is entropy
    if name != "no_prior":  # see test_no_prior_does_not_store_views
        assert agent.uses_views is (name not in ("sac", "no_prior"))
    if prior is not None and not flat:
        # naming the prior's own horizon is accepted
        assert build_agent(small_spec(name), prior, horizon=H).horizon == H
    assert agent.stage == "hybrid" and not agent.ll_deterministic


@pytest.mark.parametrize("name", ["spirl", "skill_critic"])
def test_critic_layer_norm_reaches_every_critic(name: str) -> None:
    agent, _ = make_agent(name, critic_layer_norm=True)
    levels = [agent.hl] + ([agent.ll] if agent.ll is not None else [])
    for level in levels:
        for critic in (level.critic, level.critic_target):
            for q in (critic.q1, critic.q2):  # one LayerNorm per hidden Linear
                linears = sum(isinstance(m, nn.Linear) for m in q.modules())
                assert sum(isinstance(m, nn.LayerNorm) for m in q.modules()) == linears - 1
    plain, _ = make_agent(name)
    assert not any(isinstance(m, nn.LayerNorm) for m in plain.hl.critic.modules())


@pytest.mark.parametrize("name", ["sac", "skill_critic"])
def test_n_critics_reaches_every_critic(name: str) -> None:
    agent, _ = make_agent(name, n_critics=5)
    levels = [agent.hl] + ([agent.ll] if agent.ll is not None else [])
    for level in levels:
        for critic in (level.critic, level.critic_target):
            assert [child for child, _ in critic.named_children()] == [f"q{i}" for i in range(1, 6)]
    with pytest.raises(ValueError, match="n_critics must be >= 1"):
        small_spec(name, n_critics=0)


def test_no_prior_does_not_store_views() -> None:
    agent, _ = make_agent("no_prior")
    assert not agent.hl_image and not agent.ll_image
    assert agent.uses_views is False


@pytest.mark.parametrize("name", AGENTS)
def test_hl_and_ll_actions_have_shapes_and_bounds(name: str) -> None:
    variant = AGENT_PRIORS[name]
    prior = None if variant is None else small_prior(variant)
    if prior is not None and variant != "flat":
        # push the untrained decoders far outside the action box: the clamp / tanh must hold
        with torch.no_grad():
            for p in prior.model.decoder.parameters():
                p.mul_(30.0)
    agent = build_agent(small_spec(name, skill_scale=1.5), prior)
    n = 6
    obs = make_obs(n)
    for deterministic in (False, True):
        z = agent.hl_act(obs, deterministic)
        assert z.shape == (n, agent.nz) and z.dtype == torch.float32
        assert torch.isfinite(z).all() and not z.requires_grad
        bound = 1.0 if agent.flat else 1.5
        assert z.abs().max() <= bound
    assert z.abs().max() > 0
    actor = LowLevelActor(agent)
    for k in range(agent.horizon):
        k_t = torch.full((n,), k, dtype=torch.long)
        action = actor(obs, z, k_t)
        assert action.shape == (n, DA) and torch.isfinite(action).all()
        assert action.abs().max() <= 1.0
        if agent.skills is None or not agent.skills.open_loop:
            direct = agent.ll_act(obs, z, k_t)
            assert direct.shape == (n, DA) and direct.abs().max() <= 1.0
    if agent.flat:
        assert torch.equal(agent.ll_act(obs, z, torch.zeros(n, dtype=torch.long)), z)


@pytest.mark.parametrize("name", ["spirl", "no_prior"])
def test_ll_act_on_open_loop_agent_returns_actions_or_refuses(name: str) -> None:
    agent, _ = make_agent(name)
    obs = make_obs(3)
    z = agent.hl_act(obs)
    try:
        action = agent.ll_act(obs, z, torch.zeros(3, dtype=torch.long))
    except (ValueError, TypeError, RuntimeError):
        return
    assert action.shape == (3, DA)


# ---------------------------------------------------------------------- refusals


def test_prior_checks_refuse_mismatches() -> None:
    closed = small_prior("closed_loop")
    with pytest.raises(ValueError, match=r"needs a open_loop prior.*closed_loop"):
        build_agent(small_spec("spirl"), closed)
    with pytest.raises(ValueError, match=r"needs a cond_decoder prior.*closed_loop"):
        build_agent(small_spec("skill_critic"), closed)
    with pytest.raises(ValueError, match="needs a flat prior"):
        check_prior_fits(small_spec("bc_sac"), closed, None)
    with pytest.raises(ValueError, match="needs a closed_loop prior"):
        build_agent(small_spec("spirl_cl"), None)
    with pytest.raises(ValueError, match=r"states of 4 and actions of 2 dims.*5 and 2"):
        build_agent(AgentSpec("spirl_cl", 5, DA), closed)
    with pytest.raises(ValueError, match=r"states of 4 and actions of 2 dims.*4 and 3"):
        check_prior_fits(AgentSpec("spirl_cl", DS, 3), closed, None)
    with pytest.raises(ValueError, match=r"agent.horizon=5 does not match the prior's H=4"):
        build_agent(small_spec("spirl_cl"), closed, horizon=H + 1)
    check_prior_fits(small_spec("spirl_cl"), closed, H)  # fits
    check_prior_fits(small_spec("sac"), None, None)  # sac needs no prior


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_divergence": -0.1}, "target divergences must be >= 0"),
        ({"ll_target_divergence": -1.0}, "target divergences must be >= 0"),
        ({"gamma": 0.0}, "gamma must be in"),
        ({"gamma": 1.01}, "gamma must be in"),
        ({"gamma": -0.5}, "gamma must be in"),
        ({"tau": 0.0}, "tau must be in"),
        ({"kl_samples": 0}, "kl_samples"),
        ({"lr": 0.0}, "positive"),
        ({"init_alpha": -1.0}, "positive"),
        ({"skill_scale": 0.0}, "skill_scale must be a positive number"),
        ({"skill_scale": float("inf")}, "skill_scale must be a positive number"),
        ({"boundary_value": "published"}, "boundary_value must be one of"),
        ({"name": "ppo"}, "unknown agent 'ppo'"),
    ],
)
def test_agent_spec_refuses(kwargs: dict[str, Any], match: str) -> None:
    fields = {"name": "skill_critic", "state_dim": DS, "action_dim": DA} | kwargs
    with pytest.raises(ValueError, match=match):
        AgentSpec(**fields)


def test_agent_spec_accepts_edges() -> None:
    AgentSpec("sac", DS, DA, gamma=1.0, target_divergence=0.0, ll_target_divergence=0.0)
    AgentSpec("skill_critic", DS, DA, boundary_value="clean")


def test_set_stage_refuses_unknown_stage() -> None:
    agent, _ = make_agent("skill_critic")
    with pytest.raises(ValueError, match="unknown stage"):
        agent.set_stage("fine_tune")


# ---------------------------------------------------------------------- frozen low levels


@pytest.mark.parametrize("name", ["spirl_cl", "spirl_cd"])
def test_closed_loop_frozen_ll_acts_as_the_prior_policy(name: str) -> None:
    prior = small_prior(AGENT_PRIORS[name])  # type: ignore[arg-type]
    agent = build_agent(small_spec(name), prior).train()  # training mode must not matter
    policy = PriorPolicy(prior, deterministic=True)
    policy.reset()
    n = 3
    first = make_obs(n, seed=10)
    with torch.no_grad():
        z = prior.model.prior(view_pair(first)).mu  # the skill PriorPolicy picks
    for k in range(H):
        obs = first if k == 0 else make_obs(n, seed=10 + k)  # the decoders read each new view
        expected = policy.act(obs["state"].numpy(), obs["view"].numpy())
        got = agent.ll_act(obs, z, torch.full((n,), k, dtype=torch.long))
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
        assert torch.equal(LowLevelActor(agent)(obs, z, torch.full((n,), k)), got)


def test_open_loop_frozen_ll_acts_as_the_prior_policy() -> None:
    prior = small_prior("open_loop")
    agent = build_agent(small_spec("spirl"), prior).train()
    assert agent.skills is not None and agent.skills.open_loop
    policy = PriorPolicy(prior, deterministic=True)
    policy.reset()
    actor = LowLevelActor(agent)
    n = 3
    first = make_obs(n, seed=20)
    with torch.no_grad():
        z = prior.model.prior(view_pair(first)).mu
    for k in range(H):
        obs = first if k == 0 else make_obs(n, seed=20 + k)
        expected = policy.act(obs["state"].numpy(), obs["view"].numpy())
        got = actor(obs, z, torch.full((n,), k, dtype=torch.long))
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_open_loop_plans_are_kept_while_another_env_restarts() -> None:
    prior = small_prior("open_loop")
    agent = build_agent(small_spec("spirl"), prior)
    actor = LowLevelActor(agent)
    obs = make_obs(2)
    g = torch.Generator().manual_seed(5)
    z0, z1, garbage = (torch.randn(2, NZ, generator=g) for _ in range(3))

    def plan(z: Tensor) -> Tensor:
        with torch.no_grad():
            return prior.model.decoder(z).clamp(-1.0, 1.0)

    # both envs start a skill
    got = actor(obs, z0, torch.tensor([0, 0]))
    torch.testing.assert_close(got, plan(z0)[:, 0])
    torch.testing.assert_close(actor(obs, z0, torch.tensor([1, 1])), plan(z0)[:, 1])
    # env 1 restarts (k = 0, new skill z1); env 0 goes on with its plan whatever z it is handed
    z = torch.stack([garbage[0], z1[1]])
    got = actor(obs, z, torch.tensor([2, 0]))
    torch.testing.assert_close(got[0], plan(z0)[0, 2])
    torch.testing.assert_close(got[1], plan(z1)[1, 0])
    assert not torch.allclose(got[0], plan(garbage)[0, 2])
    got = actor(obs, z, torch.tensor([3, 1]))
    torch.testing.assert_close(got[0], plan(z0)[0, 3])
    torch.testing.assert_close(got[1], plan(z1)[1, 1])
    # env 0 starts its next skill: re-decoded from the z it is handed now
    got = actor(obs, z, torch.tensor([0, 2]))
    torch.testing.assert_close(got[0], plan(garbage)[0, 0])
    torch.testing.assert_close(got[1], plan(z1)[1, 2])


# ---------------------------------------------------------------------- initial divergences


@pytest.mark.parametrize("name", [*PRIOR_COPIES, "flat_prior"])
def test_hl_starts_at_its_prior(name: str) -> None:
    agent, prior = make_agent(name)
    assert prior is not None
    agent.train()
    obs = make_obs(8)
    _, d_h = agent.hl.regularised_sample(obs)
    assert d_h.shape == (8,)
    torch.testing.assert_close(d_h, torch.zeros(8), atol=1e-5, rtol=0)
    with torch.no_grad():
        if name == "flat_prior":
            expected = prior.model.action_distribution(view_pair(obs))
        else:
            expected = prior.model.prior(view_pair(obs))
        dist = agent.hl.actor(obs)
    torch.testing.assert_close(dist.mu, expected.mu)
    torch.testing.assert_close(dist.log_sigma, expected.log_sigma)
    scale = agent.hl.action_scale
    torch.testing.assert_close(
        agent.hl_act(obs, deterministic=True), scale * torch.tanh(expected.mu)
    )


def test_skill_critic_ll_starts_at_its_reference() -> None:
    agent, prior = make_agent("skill_critic")
    assert agent.ll is not None and prior is not None
    agent.train()
    obs = make_obs(8)
    z = torch.randn(8, NZ)
    k = torch.arange(8) % H
    ll_obs = {**obs, "z": z, "k": k}
    _, d_l = agent.ll.regularised_sample(ll_obs)
    assert d_l.shape == (8,)
    assert torch.equal(d_l, torch.zeros(8))
    with torch.no_grad():
        dist = agent.ll.actor(ll_obs)
        features = prior.model.step_features(view_pair(obs))
        expected = torch.cat(
            [
                prior.model.decode_step(z[i : i + 1], features[i : i + 1], int(k[i]))
                for i in range(8)
            ]
        )
    torch.testing.assert_close(dist.mu, expected)
    assert torch.equal(dist.log_sigma, torch.full_like(dist.log_sigma, agent.spec.ll_log_sigma))


# ---------------------------------------------------------------------- updates


def test_skill_critic_warm_start_then_hybrid() -> None:
    agent, _ = make_agent("skill_critic")
    assert agent.ll is not None
    batches = replay_rows(agent)
    optimizers = agent.optimizers()

    agent.set_stage("warm_start")
    assert agent.stage == "warm_start" and agent.ll_deterministic
    assert not agent.ll.train_actor and not agent.ll.train_alpha and agent.ll.train_critic
    ll_actor, ll_critic = state_snapshot(agent.ll.actor), state_snapshot(agent.ll.critic)
    hl_actor, hl_critic = state_snapshot(agent.hl.actor), state_snapshot(agent.hl.critic)
    ll_alpha, hl_alpha = agent.ll.log_alpha.detach().clone(), agent.hl.log_alpha.detach().clone()
    metrics = agent.update(batches["hl"], batches["ll"], optimizers)
    assert not params_changed(ll_actor, agent.ll.actor)
    assert torch.equal(agent.ll.log_alpha.detach(), ll_alpha)
    assert params_changed(ll_critic, agent.ll.critic)
    assert params_changed(hl_actor, agent.hl.actor) and params_changed(hl_critic, agent.hl.critic)
    assert not torch.equal(agent.hl.log_alpha.detach(), hl_alpha)
    assert "ll/actor_loss" not in metrics and "hl/actor_loss" in metrics
    # π_L acts with its mean in the warm-start stage
    obs = make_obs(4)
    z, k = torch.randn(4, NZ), torch.arange(4) % H
    expected = torch.tanh(agent.ll.actor({**obs, "z": z, "k": k}).mu.detach())
    assert torch.equal(agent.ll_act(obs, z, k), expected)

    agent.set_stage("hybrid")
    assert agent.ll.train_actor and agent.ll.train_alpha and not agent.ll_deterministic
    ll_actor = state_snapshot(agent.ll.actor)
    metrics = agent.update(batches["hl"], batches["ll"], optimizers)
    assert params_changed(ll_actor, agent.ll.actor)
    assert not torch.equal(agent.ll.log_alpha.detach(), ll_alpha)
    # D_L ≈ 0 < δ_L: α_L falls
    assert float(agent.ll.alpha) < 1.0
    assert "ll/actor_loss" in metrics


def _allowed_to_change(agent: SkillAgent) -> tuple[str, ...]:
    levels = ("hl", "ll") if agent.ll is not None else ("hl",)
    parts = ("actor.", "critic.", "critic_target.", "log_alpha")
    return tuple(f"{level}.{part}" for level in levels for part in parts)


@pytest.mark.parametrize("name", AGENTS)
def test_update_touches_only_its_own_parameters(name: str) -> None:
    agent, _ = make_agent(name)
    agent.train()
    batches = replay_rows(agent)
    optimizers = agent.optimizers()
    # every trainable parameter is in exactly one optimiser, no frozen one in any
    optimised = [id(p) for level in optimizers.values() for opt in level.values()
                 for group in opt.param_groups for p in group["params"]]  # fmt: skip
    assert len(optimised) == len(set(optimised))
    assert set(optimised) == {id(p) for p in agent.parameters() if p.requires_grad}
    before = state_snapshot(agent)
    buffers = {name for name, _ in agent.named_buffers()}
    for _ in range(2):
        metrics = agent.update(batches["hl"], batches.get("ll"), optimizers)
    changed = changed_keys(before, agent)
    allowed = _allowed_to_change(agent)
    assert changed, "an update changed nothing"
    assert not changed & buffers, f"buffers changed: {changed & buffers}"  # BN stats frozen
    assert all(key.startswith(allowed) for key in changed), sorted(changed)
    for must in ("hl.actor.", "hl.critic.", "hl.critic_target.", "hl.log_alpha"):
        assert any(key.startswith(must) for key in changed), must
    frozen = [key for key in before if ".reference." in key or key.startswith("skills.")]
    if name not in ("sac", "bc_sac"):
        assert frozen
    assert not set(frozen) & changed
    if agent.skills is not None:
        assert not any(p.requires_grad for p in agent.skills.parameters())
    levels = ("hl", "ll") if name == "skill_critic" else ("hl",)
    stats = ("critic_loss", "actor_loss", "alpha", "regulariser", "q_mean", "target_mean")
    assert set(metrics) == {f"{level}/{stat}" for level in levels for stat in stats}
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())


def test_skill_critic_hl_only_update_leaves_the_low_level_alone() -> None:
    agent, _ = make_agent("skill_critic")
    batches = replay_rows(agent)
    before = state_snapshot(agent)
    metrics = agent.update(batches["hl"], None, agent.optimizers())
    assert all(key.startswith("hl/") for key in metrics)
    assert not any(key.startswith("ll.") for key in changed_keys(before, agent))


# ---------------------------------------------------------------------- U(s')


def _ll_level_batch(agent: SkillAgent, next_k: Tensor) -> dict[str, Any]:
    rows = replay_rows(agent, b=len(next_k))["ll"]
    obs_keys = ("state", "view", "z", "k")
    next_rows = rows | {"next_k": next_k}
    return {
        "obs": {key: rows[key] for key in obs_keys},
        "action": rows["action"],
        "reward": rows["reward"],
        "next_obs": {key: next_rows[f"next_{key}"] for key in obs_keys},
        "terminated": rows["terminated"],
    }


def _perturb_targets(agent: SkillAgent) -> None:
    """Targets ≠ online critics, policies ≠ their references (D ≠ 0), distinct temperatures:
    the tests can tell every piece apart."""
    assert agent.ll is not None
    with torch.no_grad():
        for level in (agent.hl, agent.ll):
            for p in level.critic_target.parameters():
                p.add_(0.3 * torch.randn_like(p))
            for p in level.actor.parameters():
                p.add_(0.05 * torch.randn_like(p))
        agent.ll.log_alpha.fill_(math.log(0.5))
        agent.hl.log_alpha.fill_(math.log(3.0))


@pytest.mark.parametrize("boundary_value", ["reference", "clean"])
def test_ll_next_value_by_hand(boundary_value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    agent, _ = make_agent("skill_critic", boundary_value=boundary_value)
    assert agent.ll is not None
    _perturb_targets(agent)
    next_k = torch.tensor([0, 1, 2, 0, 3, 1, 0, 2])
    batch = _ll_level_batch(agent, next_k)
    nxt = batch["next_obs"]

    # deterministic stand-ins for the two policies' samples (functions of their inputs)
    def ll_sample(obs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        action = torch.tanh(obs["state"][:, :DA] + obs["z"][:, :DA])
        return action, obs["state"].abs().sum(-1) + obs["k"].float()

    hl_inputs: list[dict[str, Tensor]] = []

    def hl_sample(obs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        hl_inputs.append(obs)
        z = 2.0 * torch.tanh(obs["state"].repeat(1, 3)[:, :NZ])
        return z, 10.0 * obs["state"][:, 0].abs()

    monkeypatch.setattr(agent.ll, "regularised_sample", ll_sample)
    monkeypatch.setattr(agent.hl, "regularised_sample", hl_sample)
    got = agent._ll_next_value(batch)

    # the HL sample ran on the boundary rows only, with their next state and view
    boundary = next_k == 0
    assert len(hl_inputs) == 1
    assert set(hl_inputs[0]) == {"state", "view"}
    assert torch.equal(hl_inputs[0]["state"], nxt["state"][boundary])
    assert torch.equal(hl_inputs[0]["view"], nxt["view"][boundary])

    with torch.no_grad():
        action, d_l = ll_sample(nxt)
        onehot = torch.eye(H)[next_k]
        q_l = torch.minimum(
            *agent.ll.critic_target(torch.cat([nxt["state"], nxt["z"], onehot, action], -1))
        )
        z_h, d_h = hl_sample({"state": nxt["state"]})
        q_h = torch.minimum(*agent.hl.critic_target(torch.cat([nxt["state"], z_h], -1)))
    inside = q_l - 0.5 * d_l
    # "reference": the published code's α_L·D_L at the boundary; "clean": α_H·D_H
    at_boundary = q_h - (0.5 * d_l if boundary_value == "reference" else 3.0 * d_h)
    expected = torch.where(boundary, at_boundary, inside)
    assert got.shape == (8,)
    torch.testing.assert_close(got, expected)
    # the online critics would give other values: the targets are the ones read
    with torch.no_grad():
        q_online = torch.minimum(
            *agent.ll.critic(torch.cat([nxt["state"], nxt["z"], onehot, action], -1))
        )
    assert not torch.allclose(got[~boundary], (q_online - 0.5 * d_l)[~boundary])


@pytest.mark.parametrize("boundary_value", ["reference", "clean"])
def test_ll_next_value_matches_bootstrap_from_its_pieces(boundary_value: str) -> None:
    agent, _ = make_agent("skill_critic", boundary_value=boundary_value)
    assert agent.ll is not None
    _perturb_targets(agent)
    next_k = torch.tensor([1, 0, 2, 3, 0, 0, 1, 2, 3, 0])
    batch = _ll_level_batch(agent, next_k)
    nxt = batch["next_obs"]
    torch.manual_seed(11)
    got = agent._ll_next_value(batch)
    torch.manual_seed(11)
    with torch.no_grad():
        action, d_l = agent.ll.regularised_sample(nxt)
        q_l = agent.ll.critic_target.min(agent.ll_critic_input(nxt, action))
        rows = next_k == 0
        z, d_h_rows = agent.hl.regularised_sample(
            {"state": nxt["state"][rows], "view": nxt["view"][rows]}
        )
        q_h = torch.zeros(len(next_k))
        d_h = torch.zeros(len(next_k))
        q_h[rows] = agent.hl.critic_target.min(torch.cat([nxt["state"][rows], z], -1))
        d_h[rows] = d_h_rows
    expected = ll_bootstrap_value(
        q_l, d_l, 0.5, next_k, q_h, d_h, 3.0, boundary_value=boundary_value
    )
    torch.testing.assert_close(got, expected)
    assert (d_l.abs() > 0).all() and (d_h[rows].abs() > 0).all()


def test_update_uses_ll_next_value_in_the_ll_target(monkeypatch: pytest.MonkeyPatch) -> None:
    agent, _ = make_agent("skill_critic", gamma=0.9)
    batches = replay_rows(agent)
    ll_rows = batches["ll"]
    seen: list[tuple[dict[str, Any], Tensor]] = []
    original = agent._ll_next_value

    def recording(batch: dict[str, Any]) -> Tensor:
        value = original(batch)
        seen.append((batch, value))
        return value

    monkeypatch.setattr(agent, "_ll_next_value", recording)
    metrics = agent.update(batches["hl"], ll_rows, agent.optimizers())
    ((batch, value),) = seen
    assert torch.equal(batch["next_obs"]["k"], ll_rows["next_k"])
    assert torch.equal(batch["next_obs"]["z"], ll_rows["next_z"])
    assert torch.equal(batch["next_obs"]["view"], ll_rows["next_view"])
    assert torch.equal(batch["obs"]["k"], ll_rows["k"])
    y = ll_rows["reward"] + 0.9 * (~ll_rows["terminated"]).float() * value
    assert metrics["ll/target_mean"] == pytest.approx(float(y.mean()), rel=1e-5, abs=1e-6)


# ---------------------------------------------------------------------- reproducibility


@pytest.mark.parametrize("name", ["sac", "spirl_cl", "skill_critic"])
def test_same_seed_same_first_update(name: str) -> None:
    runs: list[tuple[dict[str, float], dict[str, Tensor]]] = []
    for _ in range(2):
        torch.manual_seed(0)
        agent, _ = make_agent(name)
        batches = replay_rows(agent)
        torch.manual_seed(1)
        metrics = agent.update(batches["hl"], batches.get("ll"), agent.optimizers())
        runs.append((metrics, state_snapshot(agent)))
    (m1, s1), (m2, s2) = runs
    assert m1 == m2
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
