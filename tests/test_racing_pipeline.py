"""The racing pipeline in process: demonstrations -> a tiny prior (with state normalisation) ->
short SAC / SPiRL-cl / Skill-Critic runs with real updates on the corner task."""

from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from skillcritic.collect_data import collect_data
from skillcritic.data.minari_io import load_dataset
from skillcritic.data.windows import EpisodeArrays
from skillcritic.envs.racing.env import RacingVectorEnv
from skillcritic.rl.agents import AGENT_PRIORS
from skillcritic.train_prior import train_prior
from skillcritic.train_rl import load_module, make_train_envs, run_rl
from test_rl import SHORT, TINY_PRIOR, config

DATA = ["env=racing", "data=small", "data.episodes=8", "data.workers=1"]
RL_SHORT = [o for o in SHORT if not o.startswith("env.kwargs")] + ["env.kwargs.max_steps=60"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("racing")
    paths = [f"paths.data_dir={root / 'data'}", f"paths.outputs={root / 'outputs'}"]
    collect_data(config("collect", [*DATA, *paths]))
    for variant in ("closed_loop", "cond_decoder"):
        train_prior(config("train_prior", [f"prior={variant}", *DATA, *TINY_PRIOR, *paths]))
    return root


def test_racing_prior_stores_the_normalisation(root: Path) -> None:
    path = root / "outputs/prior/racing/cond_decoder/default/seed0/checkpoints/last.ckpt"
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    mean, std = state["state_mean"], state["state_std"]
    assert mean.shape == std.shape == (36,)
    assert torch.all(std > 0) and torch.isfinite(mean).all()


def test_racing_runs_collect_with_the_batched_vector_env() -> None:
    cfg = config("train_rl", ["env=racing", "env.kwargs.max_steps=5"])
    envs = make_train_envs(cfg, 3)
    assert isinstance(envs, RacingVectorEnv)  # all cars in one numpy call, not 3 envs
    assert envs.autoreset_mode == AutoresetMode.SAME_STEP  # what the collector needs
    envs.reset(seed=0)
    for _ in range(4):
        assert not envs.step(np.zeros((3, 2)))[3].any()
    _, _, terminated, truncated, info = envs.step(np.zeros((3, 2)))
    assert truncated.all() and not terminated.any()  # the configured max_steps reached the env
    assert "final_obs" in info
    maze = make_train_envs(config("train_rl", ["env=maze"]), 2)
    assert isinstance(maze, gymnasium.vector.SyncVectorEnv)


@pytest.mark.parametrize("agent", ["sac", "spirl_cl", "skill_critic"])
def test_racing_agents_train_with_real_updates(root: Path, agent: str) -> None:
    paths = [f"paths.data_dir={root / 'data'}", f"paths.outputs={root / 'outputs'}"]
    cfg = config("train_rl", ["env=racing", "data=small", f"agent={agent}", *RL_SHORT, *paths])
    last = run_rl(cfg)
    state = torch.load(last, map_location="cpu", weights_only=True)["skillcritic"]
    assert state["experience"]["collector"]["env_steps"] == 300
    horizon = 1 if agent == "sac" else 10
    assert abs(state["updates"] - 200 // horizon) <= 2
    # critics (and SAC's policy) see states normalised like the prior's: with the prior's
    # statistics, or, without a prior, with those of the demonstrations
    spec = torch.load(last, map_location="cpu", weights_only=True)["hyper_parameters"]["agent"]
    if agent == "sac":
        dataset = load_dataset(root / "data", "skillcritic/racing-demos-small-v0", "")
        states = EpisodeArrays.from_minari(dataset).states.astype(np.float64)
        std = states.std(axis=0)
        expected = states.mean(axis=0), np.where(std > 1e-6, std, 1.0)  # constant dims: 1
        assert (std[7] == 0) and expected[1][7] == 1.0  # the wall-hit flag: never set
    else:
        prior = root / f"outputs/prior/racing/{AGENT_PRIORS[agent]}/default/seed0/checkpoints"
        prior_state = torch.load(prior / "last.ckpt", map_location="cpu", weights_only=True)
        expected = prior_state["state_dict"]["state_mean"], prior_state["state_dict"]["state_std"]
    np.testing.assert_allclose(spec["state_mean"], expected[0], rtol=1e-5)
    np.testing.assert_allclose(spec["state_std"], expected[1], rtol=1e-5)
    module = load_module(last, agent)
    obs = {"state": torch.tensor(np.asarray(spec["state_mean"]), dtype=torch.float32)[None]}
    action = torch.zeros(1, 2 if agent == "sac" else 10)
    torch.testing.assert_close(
        module.agent.hl_critic_input(obs, action), torch.zeros(1, 36 + action.shape[1])
    )
