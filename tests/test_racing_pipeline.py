"""The racing pipeline in process: demonstrations -> a tiny prior (with state normalisation) ->
short SAC / SPiRL-cl / Skill-Critic runs with real updates on the corner task."""

from pathlib import Path

import pytest
import torch

from skillcritic.collect_data import collect_data
from skillcritic.train_prior import train_prior
from skillcritic.train_rl import run_rl
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


@pytest.mark.parametrize("agent", ["sac", "spirl_cl", "skill_critic"])
def test_racing_agents_train_with_real_updates(root: Path, agent: str) -> None:
    paths = [f"paths.data_dir={root / 'data'}", f"paths.outputs={root / 'outputs'}"]
    cfg = config("train_rl", ["env=racing", f"agent={agent}", *RL_SHORT, *paths])
    last = run_rl(cfg)
    state = torch.load(last, map_location="cpu", weights_only=True)["skillcritic"]
    assert state["experience"]["collector"]["env_steps"] == 300
    horizon = 1 if agent == "sac" else 10
    assert abs(state["updates"] - 200 // horizon) <= 2
