"""Every config combination composes, and the run folders follow the documented pattern."""

import pytest
from hydra import compose, initialize_config_dir

from skillcritic.cli import config_dir
from skillcritic.envs.maze.layout import TASK_NAMES
from skillcritic.rl.agents import AGENT_PRIORS, AGENTS

ENVS = ["maze", "maze_nav", "maze_traj"]
PRIORS = ["open_loop", "closed_loop", "cond_decoder", "flat"]


def composed(config_name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("prior", PRIORS)
def test_prior_configs(env: str, prior: str) -> None:
    cfg = composed("train_prior", [f"env={env}", f"prior={prior}", "seed=2", "prefix=p"])
    assert cfg.prior.name == prior and cfg.env.task in TASK_NAMES
    assert cfg.run_dir == f"outputs/prior/{env}/{prior}/p/seed2"


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("agent", AGENTS)
def test_rl_configs(env: str, agent: str) -> None:
    cfg = composed("train_rl", [f"env={env}", f"agent={agent}"])
    assert cfg.agent.prior == AGENT_PRIORS[agent]
    assert cfg.agent.prior_ckpt == "latest"
    assert cfg.agent.name == agent and cfg.agent.gamma == 0.99 and cfg.agent.batch_size == 256
    assert ("ll_target_divergence" in cfg.agent) == (agent == "skill_critic")
    assert cfg.run_dir == f"outputs/rl/{env}/{agent}/default/seed0"


def test_env_tasks_and_data_presets() -> None:
    tasks = {env: composed("collect", [f"env={env}"]).env.task for env in ENVS}
    assert tasks == {"maze": "spirl", "maze_nav": "nav", "maze_traj": "traj"}
    default = composed("collect", [])
    small = composed("collect", ["data=small", "paths.outputs=/o"])
    assert default.data.dataset_id == "skillcritic/maze-demos-v0"
    assert default.data.episodes == default.env.demos.episodes
    assert small.data.dataset_id == "skillcritic/maze-demos-small-v0"  # never mixed up
    assert small.run_dir == "/o/data/maze/small/default/seed0"
    assert small.hydra.run.dir == small.run_dir


def test_gpu_trainers_compose() -> None:
    assert composed("train_prior", ["trainer=gpu"]).trainer.accelerator == "gpu"
    ddp = composed("train_rl", ["trainer=ddp"]).trainer
    assert ddp.strategy == "ddp" and ddp.devices == -1


@pytest.mark.parametrize(
    ("experiment", "env", "task"),
    [
        ("maze_spirl", "maze", "spirl"),
        ("maze_nav", "maze_nav", "nav"),
        ("maze_traj", "maze_traj", "traj"),
    ],
)
def test_experiments_set_env_prefix_and_length(experiment: str, env: str, task: str) -> None:
    cfg = composed("train_rl", [f"experiment={experiment}", "agent=spirl_cl", "seed=1"])
    assert (cfg.env.name, cfg.env.task, cfg.prefix) == (env, task, experiment)
    assert cfg.total_env_steps == 1_000_000 and cfg.epoch_env_steps == 50_000
    assert cfg.run_dir == f"outputs/rl/{env}/spirl_cl/{experiment}/seed1"
    assert (cfg.agent.min_alpha, cfg.agent.max_reward) == (0.3, 1.0)
    assert cfg.agent.alpha_lr == (3e-3 if experiment == "maze_spirl" else None)
    # an override on the command line still wins over the experiment
    cfg = composed("train_rl", [f"experiment={experiment}", "total_env_steps=5"])
    assert cfg.total_env_steps == 5


def test_maze_tasks_share_the_maze_priors() -> None:
    prior_envs = {env: composed("train_rl", [f"env={env}"]).env.prior_env for env in ENVS}
    assert prior_envs == dict.fromkeys(ENVS, "maze")
    assert composed("train_rl", ["env=pendulum"]).env.prior_env == "pendulum"


def test_racing_experiment_takes_the_gts_settings() -> None:
    for agent in ("sac", "spirl_cl", "skill_critic"):
        cfg = composed("train_rl", ["experiment=racing_corner", f"agent={agent}"])
        assert (cfg.env.name, cfg.env.task, cfg.prefix) == ("racing", "corner", "racing_corner")
        assert cfg.agent.gamma == 0.98 and cfg.agent.target_divergence == 5.0
        assert cfg.run_dir == f"outputs/rl/racing/{agent}/racing_corner/seed0"
