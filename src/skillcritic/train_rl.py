"""``skillcritic-rl``: config -> prior, agent, experience, Lightning Trainer; and the val /
rollout modes.

The top layer: it reads the composed ``DictConfig`` and hands typed values to ``skillcritic.rl``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium
import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from skillcritic.checkpoint_io import AtomicCheckpointIO
from skillcritic.collect_data import env_kwargs, make_env
from skillcritic.data.collect import Demo, to_episode_buffer
from skillcritic.data.minari_io import DatasetError, load_dataset, write_dataset
from skillcritic.data.windows import EpisodeArrays, normalisation_statistics
from skillcritic.errors import UserError
from skillcritic.prior.module import SkillPriorModule
from skillcritic.rl.agents import AGENT_PRIORS, AgentSpec
from skillcritic.rl.experience import Experience, ExperienceStream, Schedule, make_vector_env
from skillcritic.rl.module import (
    EnvStepProgress,
    Episodes,
    Evaluation,
    LastCheckpoint,
    NonFiniteLossError,
    RLModule,
    run_episodes,
    save_episode_media,
)
from skillcritic.train_prior import (
    CHECKPOINTS,
    find_checkpoint,
    latest_prior_checkpoint,
    load_prior,
    make_logger,
)

log = logging.getLogger(__name__)


def _env_dims(cfg: DictConfig) -> tuple[int, int, float]:
    """State and action sizes of the env and the bound of its (symmetric) action box."""
    env = make_env(cfg)
    state, action = env.observation_space["state"], env.action_space
    env.close()
    if not isinstance(action, gymnasium.spaces.Box) or len(action.shape) != 1:
        raise UserError(f"env {cfg.env.name}: the agents need a 1-d Box action space")
    high = float(action.high[0])
    if not (np.all(action.high == high) and np.all(action.low == -high) and np.isfinite(high)):
        raise UserError(
            f"env {cfg.env.name}: the agents need a symmetric action box [-b, b] with one b, got "
            f"low={action.low}, high={action.high} (rescale it with a gymnasium wrapper)"
        )
    return int(state.shape[0]), int(action.shape[0]), high


def state_statistics(
    cfg: DictConfig, prior: SkillPriorModule | None
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Per-dimension state mean and std for the critics and from-scratch policies of an env that
    asks for normalised states (``env.normalize_states``): the prior's, or, for agents without
    a state-normalised prior, those of the env's demonstrations (None otherwise)."""
    if not cfg.env.get("normalize_states", False):
        return None
    if prior is not None and prior.state_mean is not None:
        mean, std = prior.state_mean, prior.state_std
    else:
        hint = f"skillcritic-data env={cfg.env.name} data={cfg.data.preset}"
        dataset = load_dataset(cfg.paths.data_dir, cfg.data.dataset_id, hint)  # missing: one line
        mean, std = normalisation_statistics(EpisodeArrays.from_minari(dataset).states)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def agent_spec(
    cfg: DictConfig,
    state_dim: int,
    action_dim: int,
    action_scale: float,
    state_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> AgentSpec:
    """The agent's hyperparameters from ``cfg.agent``; dims, action bound and state statistics
    from the env."""
    names = {f.name for f in dataclasses.fields(AgentSpec)}
    names -= {"state_dim", "action_dim", "action_scale", "state_mean", "state_std"}
    values = {name: cfg.agent[name] for name in names if name in cfg.agent}
    mean, std = state_stats if state_stats is not None else (None, None)
    try:
        return AgentSpec(
            state_dim=state_dim,
            action_dim=action_dim,
            action_scale=action_scale,
            state_mean=mean,
            state_std=std,
            **values,
        )
    except (TypeError, ValueError) as error:
        raise UserError(f"agent settings: {error}") from error


def schedule(cfg: DictConfig, horizon: int) -> Schedule:
    """Env-step schedule; the warm-up defaults to ``agent.warmup_hl_steps`` skills of H steps."""
    agent = cfg.agent
    warmup = agent.warmup_env_steps
    if warmup is None:
        warmup = int(agent.warmup_hl_steps) * horizon
    try:
        return Schedule(
            total_env_steps=int(cfg.total_env_steps),
            epoch_env_steps=int(cfg.epoch_env_steps),
            warmup_env_steps=int(warmup),
            updates_per_hl_step=float(agent.updates_per_hl_step),
            batch_size=int(agent.batch_size),
            warm_start_env_steps=int(agent.get("warm_start_env_steps", 0) or 0),
            hl_capacity=int(agent.hl_capacity),
            ll_capacity=int(agent.get("ll_capacity", agent.hl_capacity)),
        )
    except ValueError as error:
        raise UserError(f"invalid settings: {error}") from error


def resolve_prior(cfg: DictConfig) -> tuple[SkillPriorModule | None, Path | None]:
    """The trained prior the agent needs (``agent.prior_ckpt``: ``latest`` or a path)."""
    name = cfg.agent.name
    if name not in AGENT_PRIORS:
        raise UserError(f"unknown agent {name!r}; use one of {tuple(AGENT_PRIORS)}")
    needed = AGENT_PRIORS[name]
    if cfg.agent.prior != needed:
        raise UserError(f"agent {name} needs agent.prior={needed}, got {cfg.agent.prior}")
    if needed is None:
        return None, None
    if cfg.agent.prior_ckpt in (None, "latest"):
        path = latest_prior_checkpoint(cfg.paths.outputs, cfg.env.prior_env, needed)
    else:
        path = Path(cfg.agent.prior_ckpt)
        if not path.is_file():
            raise UserError(
                f"agent.prior_ckpt={path} is not a file; train the prior with: "
                f"skillcritic-prior env={cfg.env.prior_env} prior={needed}"
            )
    return load_prior(path, needed), path


def build_module(cfg: DictConfig) -> tuple[RLModule, Path | None]:
    """A fresh RL module for the configured agent over its trained prior."""
    prior, prior_path = resolve_prior(cfg)
    spec = agent_spec(cfg, *_env_dims(cfg), state_statistics(cfg, prior))
    horizon = prior.spec.horizon if prior is not None and prior.spec.variant != "flat" else 1
    if cfg.agent.horizon is not None and int(cfg.agent.horizon) != horizon:
        raise UserError(
            f"agent.horizon={cfg.agent.horizon} does not match H={horizon} of the prior "
            f"{prior_path}; leave agent.horizon=null"
        )
    try:
        module = RLModule(
            agent=dataclasses.asdict(spec),
            schedule=dataclasses.asdict(schedule(cfg, horizon)),
            prior_hparams=None if prior is None else dict(prior.hparams),
            log_every_updates=int(cfg.log_every_updates),
            save_buffers=bool(cfg.save_buffers),
            prior=prior,
        )
    except ValueError as error:  # dims / variant of the prior do not fit the env or agent
        raise UserError(f"prior {prior_path}: {error}") from error
    return module, prior_path


def read_checkpoint(path: Path, agent: str | None = None) -> dict[str, Any]:
    """An RL checkpoint's contents (weights only, memory-mapped); ``agent`` must match if
    given."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # missing, truncated, not a torch file, unsafe pickle, ...
        raise UserError(f"cannot read checkpoint {path} ({error})") from error
    hparams = checkpoint.get("hyper_parameters", {})
    if "agent" not in hparams or "skillcritic" not in checkpoint:
        raise UserError(f"{path} is not a skillcritic-rl checkpoint")
    if agent is not None and hparams["agent"]["name"] != agent:
        raise UserError(
            f"{path} is a checkpoint of agent {hparams['agent']['name']}, not {agent}; pass "
            f"agent={hparams['agent']['name']}"
        )
    return checkpoint


def load_module(path: Path, agent: str | None = None) -> RLModule:
    """An RL module from its checkpoint (weights only); ``agent`` must match if given."""
    return module_from_checkpoint(read_checkpoint(path, agent))


def module_from_checkpoint(checkpoint: dict[str, Any]) -> RLModule:
    """The RL module (eval mode) that :func:`read_checkpoint`'s contents hold."""
    module = RLModule(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    module.agent.set_stage(checkpoint["skillcritic"]["stage"])
    return module.eval()


def _eval_env(cfg: DictConfig, render: bool) -> gymnasium.Env:
    return make_env(cfg, render_mode="rgb_array") if render else make_env(cfg)


def make_train_envs(cfg: DictConfig, num_envs: int) -> gymnasium.vector.VectorEnv:
    """The collector's ``num_envs`` envs (SAME_STEP autoreset): the env's own batched vector env
    where it registers one (racing: all cars in one numpy call per physics step, the same
    episodes as separate envs), else a ``SyncVectorEnv`` of :func:`make_env`."""
    if gymnasium.spec(cfg.env.id).vector_entry_point is None:
        return make_vector_env(partial(make_env, cfg), num_envs)
    return gymnasium.make_vec(
        cfg.env.id,
        num_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP,
        **env_kwargs(cfg),
    )


def train_rl(cfg: DictConfig) -> Path:
    """Train the configured agent; returns the path of the last checkpoint."""
    run_dir = Path(cfg.run_dir)
    checkpoint = find_checkpoint(run_dir, cfg.resume)
    if checkpoint is not None:
        state = read_checkpoint(checkpoint, cfg.agent.name)  # refuses another agent's early
        env_steps = int(state["skillcritic"]["experience"]["collector"]["env_steps"])
        if env_steps >= int(cfg.total_env_steps):
            log.info(
                "%s already holds %d env steps (total_env_steps=%d): nothing to do",
                checkpoint,
                env_steps,
                int(cfg.total_env_steps),
            )
            return checkpoint
    if cfg.trainer.strategy not in ("auto", None) or int(cfg.trainer.devices) != 1:
        raise UserError(
            "skillcritic-rl trains in one process on one device; scale out with sweeps "
            "(-m seed=0,1,2 hydra/launcher=joblib), not trainer=ddp"
        )
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    torch.set_flush_denormal(True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    num_envs = int(cfg.num_envs)
    if num_envs < 1:
        raise UserError(f"num_envs must be >= 1, got {num_envs}")
    module, prior_path = build_module(cfg)
    envs = make_train_envs(cfg, num_envs)
    experience = Experience(module.agent, envs, module.schedule, int(cfg.seed))
    module.attach(experience)
    if prior_path is not None:
        log.info("agent %s over the prior %s", cfg.agent.name, prior_path)
    logger = make_logger(cfg, run_dir)
    last = run_dir / CHECKPOINTS / "last.ckpt"
    callbacks = [
        Evaluation(
            partial(_eval_env, cfg),
            int(cfg.eval.episodes),
            int(cfg.seed),
            run_dir,
            deterministic=bool(cfg.eval.deterministic),
            video=bool(cfg.eval.video),
        ),
        LastCheckpoint(last, keep=bool(cfg.keep_checkpoints)),
        EnvStepProgress(module.schedule.total_env_steps),
    ]
    try:
        trainer = L.Trainer(
            accelerator=cfg.trainer.accelerator,
            devices=1,
            precision=cfg.trainer.precision,
            max_epochs=-1,
            max_steps=-1,
            logger=logger,
            default_root_dir=run_dir,
            callbacks=callbacks,
            plugins=[AtomicCheckpointIO()],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
    except MisconfigurationException as error:  # e.g. trainer=gpu on a machine without one
        raise UserError(f"trainer settings: {error}") from error
    experience.device = trainer.strategy.root_device
    loader = DataLoader(ExperienceStream(experience), batch_size=None, num_workers=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # The copied prior networks keep their BatchNorm layers in eval mode on purpose.
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
        try:
            trainer.fit(module, train_dataloaders=loader, ckpt_path=checkpoint, weights_only=True)
        except NonFiniteLossError as error:
            raise UserError(str(error)) from error
    envs.close()
    log.info(
        "%s: %d env steps, %d updates; checkpoint %s, logs in %s",
        cfg.agent.name,
        module.env_steps,
        module.updates,
        last,
        logger.log_dir,
    )
    return last


def _checkpoint_to_use(cfg: DictConfig) -> Path:
    path = Path(cfg.checkpoint) if cfg.checkpoint else Path(cfg.run_dir) / CHECKPOINTS / "last.ckpt"
    if not path.is_file():
        raise UserError(
            f"no RL checkpoint at {path}; train it with: skillcritic-rl env={cfg.env.name} "
            f"agent={cfg.agent.name}, or pass checkpoint=PATH"
        )
    return path


def _episodes(cfg: DictConfig, module: RLModule, render: int) -> Episodes:
    n = int(cfg.n_val_samples)
    if n < 1:
        raise UserError(f"n_val_samples must be >= 1, got {n}")
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    torch.manual_seed(int(cfg.seed))
    envs = [_eval_env(cfg, i < render) for i in range(n)]
    result = run_episodes(
        module.agent, envs, int(cfg.seed), bool(cfg.deterministic_action), render=render
    )
    for env in envs:
        env.close()
    return result


def validate_rl(cfg: DictConfig) -> Episodes:
    """``mode=val``: ``n_val_samples`` episodes of a checkpoint; prints return and success."""
    path = _checkpoint_to_use(cfg)
    module = load_module(path, cfg.agent.name)
    result = _episodes(cfg, module, render=0)
    sys.stdout.write(
        f"return {result.returns.mean():.3f} success {result.success_rate:.3f} "
        f"({len(result.returns)} episodes, {cfg.agent.name}, {path})\n"
    )
    return result


def _episode_options(env: gymnasium.Env) -> dict[str, np.ndarray]:
    """What rebuilds the episode's maze (as the demonstrations store it); {} elsewhere."""
    task = getattr(env.unwrapped, "task", None)
    if task is None or not hasattr(task, "walls"):
        return {}
    return {
        "walls": np.asarray(task.walls, np.uint8),
        "start": np.asarray(task.start),
        "goal": np.asarray(task.goal),
    }


def rollout_rl(cfg: DictConfig) -> Path:
    """``mode=rollout``: record ``n_val_samples`` episodes into a local Minari dataset under
    ``save_dir`` (usable as demonstrations) plus GIFs of the first ``rollout.videos``."""
    path = _checkpoint_to_use(cfg)
    module = load_module(path, cfg.agent.name)
    result = _episodes(cfg, module, render=int(cfg.rollout.videos))
    env = make_env(cfg)
    options = _episode_options(env)
    episodes = [
        to_episode_buffer(
            i, Demo(states, actions.astype(np.float32), rewards, bool(success), options)
        )
        for i, (states, actions, rewards, success) in enumerate(
            zip(result.states, result.actions, result.rewards, result.successes, strict=True)
        )
    ]
    state_space = gymnasium.spaces.Box(-np.inf, np.inf, result.states[0].shape[1:], np.float32)
    try:
        target = write_dataset(
            cfg.save_dir,
            cfg.rollout.dataset_id,
            episodes,
            state_space,
            env.action_space,
            f"{cfg.agent.name} rollouts of {path}",
            overwrite=bool(cfg.rollout.overwrite),
        )
    except DatasetError as error:
        raise UserError(str(error)) from error
    for i in range(min(int(cfg.rollout.videos), len(result.frames))):
        single = Episodes(
            result.returns[i : i + 1],
            result.successes[i : i + 1],
            result.states[i : i + 1],
            frames=result.frames[i : i + 1],
        )
        save_episode_media(single, env, module.agent.horizon, Path(cfg.save_dir), f"episode{i}")
    env.close()
    log.info("rollouts: success %.2f over %d episodes", result.success_rate, len(episodes))
    sys.stdout.write(f"{target}\n")
    return target


def run_rl(cfg: DictConfig) -> Any:
    """Dispatch ``mode``."""
    modes = {"train": train_rl, "val": validate_rl, "rollout": rollout_rl}
    if cfg.mode not in modes:
        raise UserError(f"unknown mode {cfg.mode!r}; use one of {tuple(modes)}")
    return modes[cfg.mode](cfg)
