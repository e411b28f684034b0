"""skillcritic-rl end to end: every agent trains on the maze with real updates; resume, val,
rollout, bad input and sweeps, through the config layer and the console script."""

import os
import subprocess
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import BIN
from skillcritic.cli import config_dir
from skillcritic.collect_data import collect_data
from skillcritic.data.minari_io import episode_options, load_dataset, minari_root
from skillcritic.errors import UserError
from skillcritic.rl.agents import AGENTS, SkillAgent
from skillcritic.train_prior import train_prior
from skillcritic.train_rl import load_module, resolve_prior, run_rl

DATA = ["data=small", "data.episodes=6", "data.workers=1", "env.demos.layout_size=8"]
TINY_PRIOR = [
    "trainer.max_steps=4",
    "trainer.val_check_interval=4",
    "prior.hidden=16",
    "prior.prior_layers=1",
    "prior.decoder_layers=1",
    "prior.feature_dim=8",
    "prior.batch_size=16",
    "prior.val_data_size=16",
    "prior.best_of_n=2",
    "trainer.threads=1",
]
# Short episodes and a small budget: warm-up 100 env steps, then updates until 300.
SHORT = [
    "env.kwargs.max_episode_steps=60",
    "total_env_steps=300",
    "epoch_env_steps=150",
    "num_envs=2",
    "agent.warmup_env_steps=100",
    "agent.batch_size=16",
    "agent.policy_hidden=32",
    "agent.critic_hidden=32",
    "log_every_updates=2",
    "eval.episodes=1",
    "trainer.threads=1",  # tiny networks: one thread is faster on 2 shared cores
]


def config(name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny maze dataset and one tiny trained prior of every variant."""
    root = tmp_path_factory.mktemp("rl")
    paths = [f"paths.data_dir={root / 'data'}", f"paths.outputs={root / 'outputs'}"]
    collect_data(config("collect", ["env=maze", *DATA, *paths]))
    for variant in ("open_loop", "closed_loop", "cond_decoder", "flat"):
        train_prior(config("train_prior", [f"prior={variant}", *DATA, *TINY_PRIOR, *paths]))
    return root


def rl_config(root: Path, agent: str, *overrides: str) -> DictConfig:
    paths = [f"paths.data_dir={root / 'data'}", f"paths.outputs={root / 'outputs'}"]
    return config("train_rl", [f"agent={agent}", *SHORT, *paths, *overrides])


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def checkpoint_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["skillcritic"]


def test_keep_checkpoints_keeps_every_evaluation_without_buffers(root: Path) -> None:
    cfg = rl_config(root, "spirl", "prefix=keep", "keep_checkpoints=true")
    last = run_rl(cfg)
    folder = last.parent
    names = ["best.ckpt", "last.ckpt", "step150.ckpt", "step300.ckpt"]
    assert sorted(p.name for p in folder.iterdir()) == names
    early, late = (
        checkpoint_state(folder / "step150.ckpt"),
        checkpoint_state(folder / "step300.ckpt"),
    )
    assert early["experience"]["buffers"] == {} == late["experience"]["buffers"]
    assert "hl" in checkpoint_state(last)["experience"]["buffers"]  # resume still has them
    assert 0 < early["updates"] < late["updates"] == checkpoint_state(last)["updates"] == 20
    # The kept checkpoint is the policy of its moment, and mode=val runs it.
    policy = [
        torch.load(folder / f, weights_only=True)["state_dict"]
        for f in ("step150.ckpt", "step300.ckpt")
    ]
    changed = [
        k
        for k in policy[0]
        if k.startswith("agent.hl.actor") and not torch.equal(policy[0][k], policy[1][k])
    ]
    assert changed
    # best.ckpt is the evaluation with the highest mean return (the earlier on a tie).
    returns = dict(scalars(Path(cfg.run_dir))["rollout/return"])
    best_step = max(returns, key=lambda step: (returns[step], -step))
    best = checkpoint_state(folder / "best.ckpt")
    assert best["experience"]["buffers"] == {}
    assert best["updates"] == checkpoint_state(folder / f"step{best_step}.ckpt")["updates"]
    assert checkpoint_state(last)["best_eval_return"] == pytest.approx(returns[best_step])
    val = rl_config(
        root,
        "spirl",
        "prefix=keep",
        "mode=val",
        "n_val_samples=1",
        f"checkpoint={folder / 'step150.ckpt'}",
    )
    assert len(run_rl(val).returns) == 1


@pytest.mark.parametrize("agent", AGENTS)
def test_every_agent_trains_with_real_updates(agent: str, root: Path) -> None:
    cfg = rl_config(root, agent, f"prefix=all-{agent}")
    last = run_rl(cfg)
    run_dir = Path(cfg.run_dir)
    assert last == run_dir / "checkpoints" / "last.ckpt" and last.is_file()
    state = checkpoint_state(last)
    horizon = 1 if agent in ("sac", "bc_sac", "flat_prior") else 10
    # Updates: one per HL transition after the 100-step warm-up (2 envs, so ±1 skill per env).
    expected = (300 - 100) // horizon
    assert abs(state["updates"] - expected) <= 2, state["updates"]
    assert state["experience"]["collector"]["env_steps"] == 300
    logged = scalars(run_dir)
    for tag in (
        "rollout/return",
        "rollout/success",
        "hl/critic_loss",
        "hl/alpha",
        "time/env_steps_per_s",
        "time/updates_per_s",
    ):
        assert tag in logged, tag
    assert [step for step, _ in logged["rollout/success"]] == [150, 300]  # x-axis: env steps
    assert ("ll/critic_loss" in logged) == (agent == "skill_critic")
    assert all(np.isfinite(v) for _, v in logged["hl/critic_loss"])
    assert (run_dir / "videos" / "step300.gif").is_file()
    assert (run_dir / "pictures" / "skills_step300.png").is_file()


def test_skill_critic_stages_resume_and_modes(root: Path, tmp_path: Path) -> None:
    stages = ["agent.warm_start_env_steps=100", "total_env_steps=200", "prefix=stages"]
    cfg = rl_config(root, "skill_critic", *stages)
    run_rl(cfg)
    last = Path(cfg.run_dir) / "checkpoints" / "last.ckpt"
    first = checkpoint_state(last)
    assert first["stage"] == "warm_start" and first["updates"] == 10
    # Warm start: π_L and α_L did not learn (the LL policy still equals its decoder copy).
    module = load_module(last)
    logged = scalars(Path(cfg.run_dir))
    assert "ll/actor_loss" not in logged
    assert {v for _, v in logged["ll/alpha"]} == {1.0}
    ll = module.agent.ll
    assert torch.equal(ll.log_alpha.detach(), torch.zeros(()))

    # A fresh run into the same folder is refused; resume=latest continues into the hybrid stage.
    with pytest.raises(UserError, match="resume=latest"):
        run_rl(rl_config(root, "skill_critic", *stages))
    with pytest.raises(UserError, match="checkpoint of agent skill_critic, not spirl_cd"):
        run_rl(rl_config(root, "spirl_cd", "prefix=stages", f"resume={last}"))
    resume = ("total_env_steps=400", "resume=latest", "agent.lr=1e-4")  # the new lr applies
    run_rl(rl_config(root, "skill_critic", *stages, *resume))
    second = checkpoint_state(last)
    step_sizes = {g["lr"] for o in torch.load(last)["optimizer_states"] for g in o["param_groups"]}
    assert step_sizes == {1e-4}
    assert second["stage"] == "hybrid"
    assert second["experience"]["collector"]["env_steps"] == 400
    assert second["updates"] == first["updates"] + 20  # 200 more env steps, one update per skill
    # The best evaluation so far carries over: best.ckpt moves only for a better return.
    best = max(v for _, v in scalars(Path(cfg.run_dir))["rollout/return"])
    assert second["best_eval_return"] == pytest.approx(best)
    assert second["best_eval_return"] >= first["best_eval_return"]
    buffer = second["experience"]["buffers"]["ll"]["state"]
    assert buffer["size"] == 400 - 2  # every env step but each env's pending boundary row
    assert buffer["fields"]["view"].dtype == torch.uint8
    logged = scalars(Path(cfg.run_dir))
    assert "ll/actor_loss" in logged and min(s for s, _ in logged["ll/actor_loss"]) >= 200
    # A finished run resumed with the same budget has nothing to do (make run's resume=auto).
    again = run_rl(rl_config(root, "skill_critic", *stages, "total_env_steps=400", "resume=auto"))
    assert again == last and checkpoint_state(last)["updates"] == second["updates"]

    # mode=val prints the mean return and success of K episodes (deterministic).
    val = run_rl(
        rl_config(
            root,
            "skill_critic",
            *stages,
            "mode=val",
            "n_val_samples=3",
            "deterministic_action=true",
        )
    )
    assert len(val.returns) == 3
    # mode=rollout writes a Minari dataset usable again as demonstrations, plus GIFs.
    save = tmp_path / "rollouts"
    target = run_rl(
        rl_config(
            root,
            "skill_critic",
            *stages,
            "mode=rollout",
            "n_val_samples=2",
            f"save_dir={save}",
            "rollout.videos=1",
        )
    )
    assert target.is_dir() and (save / "videos" / "episode0.gif").is_file()
    dataset = load_dataset(save, "skillcritic/maze-skill_critic-rollouts-v0", "-")
    with minari_root(save):
        episodes = list(dataset.iterate_episodes())
        options = episode_options(dataset)
    assert len(episodes) == 2 and len(episodes[0].actions) == 60
    assert episodes[0].observations.shape == (61, 4)
    walls = gymnasium.make("skillcritic/Maze-v0", task="spirl").unwrapped.task.walls
    assert np.array_equal(options[0]["walls"], walls)


def test_same_seed_same_updates(root: Path) -> None:
    runs = []
    for prefix in ("same-a", "same-b"):
        cfg = rl_config(root, "spirl_cd", f"prefix={prefix}", "total_env_steps=150")
        runs.append(load_module(run_rl(cfg)).agent.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    other = load_module(
        run_rl(rl_config(root, "spirl_cd", "prefix=same-c", "seed=1", "total_env_steps=150"))
    ).agent.state_dict()
    assert not all(torch.equal(runs[0][k], other[k]) for k in runs[0])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["agent.batch_size=0"], "batch_size must be >= 1"),
        (["agent.target_divergence=-1"], "target divergences must be >= 0"),
        (["agent.horizon=5"], "does not match H=10"),
        (["agent.gamma=1.5"], "gamma must be in"),
        (["num_envs=0"], "num_envs must be >= 1"),
        (["agent.prior=open_loop"], "needs agent.prior=cond_decoder"),
        (["mode=fly"], "unknown mode"),
        (["mode=val", "checkpoint=/nowhere.ckpt"], "no RL checkpoint"),
    ],
)
def test_bad_settings_are_one_clear_error(root: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        run_rl(rl_config(root, "skill_critic", "prefix=bad", *overrides))


def test_a_prior_of_the_wrong_variant_or_env_is_refused(root: Path) -> None:
    flat = next(
        (root / "outputs" / "prior" / "maze" / "flat").glob("*/seed0/checkpoints/last.ckpt")
    )
    with pytest.raises(UserError, match="holds a flat prior, not cond_decoder"):
        run_rl(rl_config(root, "skill_critic", f"agent.prior_ckpt={flat}"))
    with pytest.raises(UserError, match="no trained open_loop prior for env elsewhere"):
        run_rl(rl_config(root, "spirl", "env=maze_nav", "env.prior_env=elsewhere"))
    # the maze tasks share the priors trained with env=maze
    _, path = resolve_prior(rl_config(root, "spirl", "env=maze_nav"))
    assert path is not None and path.parts[-6:-3] == ("maze", "open_loop", "default")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [str(BIN / "skillcritic-rl"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_contract_and_non_finite_loss(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        f"paths.data_dir={root / 'data'}",
        f"agent.prior_ckpt={_prior(root, 'cond_decoder')}",
        f"paths.outputs={out}",
        *SHORT,
        "total_env_steps=200",
        "eval.video=false",
    ]
    done = run_cli("env=maze", "agent=skill_critic", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = out / "rl" / "maze" / "skill_critic" / "default" / "seed0"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert {"rollout/success", "rollout/return"} <= set(scalars(run_dir))
    val = run_cli(
        "env=maze",
        "agent=skill_critic",
        *args,
        "mode=val",
        "n_val_samples=2",
        "deterministic_action=true",
        cwd=tmp_path,
    )
    assert val.returncode == 0, val.stderr
    assert val.stdout.startswith("return 0.000 success 0.000 (2 episodes")


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stages = ["prefix=nan", "total_env_steps=150"]
    run_rl(rl_config(root, "spirl_cl", *stages))
    last = Path(rl_config(root, "spirl_cl", *stages).run_dir) / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    monkeypatch.setattr(SkillAgent, "update", lambda *a: {"hl/critic_loss": float("nan")})
    with pytest.raises(UserError, match=r"non-finite hl/critic_loss at update \d+ \(env step"):
        run_rl(rl_config(root, "spirl_cl", *stages, "total_env_steps=300", "resume=latest"))
    assert last.read_bytes() == before


def _prior(root: Path, variant: str) -> Path:
    return next(
        (root / "outputs" / "prior" / "maze" / variant).glob("*/seed0/checkpoints/last.ckpt")
    )


@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local"])
def test_seed_sweeps(root: Path, tmp_path: Path, launcher: str) -> None:
    out = tmp_path / "out"
    args = [
        f"paths.data_dir={root / 'data'}",
        f"agent.prior_ckpt={_prior(root, 'open_loop')}",
        f"paths.outputs={out}",
        *SHORT,
        "total_env_steps=150",
        "eval.video=false",
        f"hydra/launcher={launcher}",
    ]
    if launcher == "submitit_local":
        args.append("hydra.launcher.timeout_min=10")
    done = run_cli("-m", "env=maze", "agent=spirl", "seed=0,1", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for seed in (0, 1):
        run_dir = out / "rl" / "maze" / "spirl" / "default" / f"seed{seed}"
        assert (run_dir / "checkpoints" / "last.ckpt").is_file(), seed
        assert "rollout/success" in scalars(run_dir)


def test_sac_on_a_plain_gymnasium_env(tmp_path: Path) -> None:
    """Flat agents run on any Box env: the observation becomes the state, actions fill its box."""
    overrides = [
        "env=pendulum",
        f"paths.outputs={tmp_path}",
        "total_env_steps=200",
        "epoch_env_steps=200",
        "agent.warmup_env_steps=100",
        "agent.batch_size=16",
        "agent.policy_hidden=32",
        "agent.critic_hidden=32",
        "eval.episodes=1",
        "trainer.threads=1",
    ]
    last = run_rl(config("train_rl", ["agent=sac", *overrides]))
    module = load_module(last)
    assert module.agent.hl.action_scale == 2.0  # Pendulum's torque box is [-2, 2]
    assert checkpoint_state(last)["updates"] == 100
    logged = scalars(last.parent.parent)
    assert "rollout/return" in logged and "train/success" not in logged
    # 100 updates never reach a log at 150: only the end of training logs, at the last step,
    # with the one env's 200-step episode that ended there
    extra = ["log_every_updates=150", "num_envs=1", "seed=1"]
    last = run_rl(config("train_rl", ["agent=sac", *overrides, *extra]))
    logged = scalars(last.parent.parent)
    assert [step for step, _ in logged["train/return"]] == [200]
    assert [step for step, _ in logged["hl/critic_loss"]] == [200]
