"""``skillcritic-prior``: config -> data, skill model, Lightning Trainer; and the prior check.

The top layer: it reads the composed ``DictConfig`` and hands typed values to the layers below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig
from torch import Tensor

from skillcritic.checkpoint_io import AtomicCheckpointIO
from skillcritic.collect_data import collect_data, make_env
from skillcritic.data.minari_io import dataset_path, is_minari_dataset
from skillcritic.data.windows import CONSTANT_STD, WindowDataModule
from skillcritic.envs.maze.view import N_CHANNELS
from skillcritic.errors import UserError
from skillcritic.models.skills import VARIANTS, SkillSpec
from skillcritic.prior.module import NonFiniteLossError, SkillPriorModule, spec_dict
from skillcritic.prior.policy import PriorPolicy, PriorRollouts, run_prior_episodes
from skillcritic.viz.pictures import plot_maze_paths, plot_reconstructions, plot_visit_heatmap

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"


class StepProgressBar(RichProgressBar):
    """Rich progress over the updates (``done/max_steps``, also after a resume), without the
    logger's version number (run folders name the run)."""

    @property
    def total_train_batches(self) -> int | float:
        # Lightning counts the updates left (a resume at 6000 of 14000 showed "14000/7999"), while
        # the bar counts the one endless epoch's batches, which a resume continues.
        max_steps = self.trainer.max_steps
        return max_steps if max_steps > 0 else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        return "updates"  # one endless epoch: Lightning's "Epoch 0/-2" says nothing

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


def skill_spec(cfg: DictConfig, state_dim: int, action_dim: int) -> SkillSpec:
    """Model sizes from the prior config; dims and observation kind from the env."""
    prior = cfg.prior
    if prior.name not in VARIANTS:
        raise UserError(f"unknown prior variant {prior.name!r}; use one of {VARIANTS}")
    image = bool(cfg.env.image)
    return SkillSpec(
        variant=prior.name,
        state_dim=state_dim,
        action_dim=action_dim,
        image=image,
        view_channels=N_CHANNELS,
        view_size=int(cfg.env.kwargs.view_size) if image else SkillSpec.view_size,
        horizon=prior.horizon,
        latent_dim=prior.latent_dim,
        beta=prior.beta,
        hidden=prior.hidden,
        feature_dim=prior.feature_dim,
        decoder_layers=prior.decoder_layers,
        prior_layers=prior.prior_layers,
    )


def make_logger(cfg: DictConfig, run_dir: Path) -> TensorBoardLogger | CSVLogger:
    """The run's metrics logger (``logger.kind``): ``<run>/tensorboard`` or ``<run>/csv``."""
    if cfg.logger.kind == "tensorboard":
        return TensorBoardLogger(
            save_dir=run_dir, name="", version="tensorboard", default_hp_metric=False
        )
    return CSVLogger(save_dir=run_dir, name="", version="csv")


def find_checkpoint(run_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint to continue: ``resume`` is None (fresh run), ``latest`` (this run folder's
    last.ckpt), ``auto`` (latest if there is one, else fresh) or a path.

    A fresh run never writes over a run folder that already holds checkpoints.
    """
    last = run_dir / CHECKPOINTS / "last.ckpt"
    if resume is None:
        if last.exists():
            raise UserError(
                f"{run_dir} already holds checkpoints; continue that run with resume=latest, or "
                "start another run with prefix=NAME (or another seed)"
            )
        return None
    if resume == "auto":
        return last if last.is_file() else None
    path = last if resume == "latest" else Path(resume)
    if not path.is_file():
        raise UserError(f"no checkpoint to resume at {path}; train first or pass resume=PATH")
    return path


def latest_prior_checkpoint(outputs: str | Path, env_name: str, variant: str) -> Path:
    """The newest ``last.ckpt`` of any ``<outputs>/prior/<env>/<variant>/<prefix>/seed<k>`` run
    (what ``agent.prior_ckpt=latest`` means); none is one clear error naming the command."""
    runs = Path(outputs) / "prior" / env_name / variant
    found = list(runs.glob(f"*/seed*/{CHECKPOINTS}/last.ckpt"))
    if not found:
        raise UserError(
            f"no trained {variant} prior for env {env_name} under {runs}; train it with: "
            f"skillcritic-prior env={env_name} prior={variant}"
        )
    return max(found, key=lambda path: path.stat().st_mtime)


def load_prior(path: Path, variant: str | None = None) -> SkillPriorModule:
    """A trained prior from its checkpoint (weights only); ``variant`` must match if given."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated file, not a torch file, unsafe pickle, ...
        raise UserError(f"cannot read checkpoint {path} ({error})") from error
    spec = checkpoint.get("hyper_parameters", {}).get("spec")
    if spec is None:
        raise UserError(f"{path} is not a skillcritic prior checkpoint")
    if variant is not None and spec["variant"] != variant:
        raise UserError(
            f"{path} holds a {spec['variant']} prior, not {variant}; pass prior={spec['variant']}"
        )
    if spec.get("image") and spec.get("view_channels") != N_CHANNELS:
        raise UserError(
            f"{path} was trained on views of {spec.get('view_channels')} channels; the maze views "
            f"now have {N_CHANNELS} (walls, goal, agent; centred behind the agent): train the "
            "prior again (skillcritic-prior ... with another prefix= or paths.outputs=)"
        )
    module = SkillPriorModule(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    if module.state_std is not None:  # older priors kept std 1e-6 for constant dimensions
        module.state_std[module.state_std <= CONSTANT_STD] = 1.0  # the model never saw them vary
    return module.eval()


def _ensure_dataset(cfg: DictConfig) -> None:
    """Collect the default dataset when it is missing (unless ``data.auto_collect=false``)."""
    target = dataset_path(cfg.paths.data_dir, cfg.data.dataset_id)
    if is_minari_dataset(target):
        return
    command = f"skillcritic-data env={cfg.env.name} paths.data_dir={cfg.paths.data_dir}"
    if target.exists() or not cfg.data.auto_collect:
        return  # the data module reports the problem with the command that fixes it
    log.info("dataset %s is missing; collecting it now (%s)", cfg.data.dataset_id, command)
    collect_data(cfg)


def _pictures(
    cfg: DictConfig, run_dir: Path
) -> Callable[[SkillPriorModule, dict[str, Tensor]], None]:
    """What each validation draws: reconstructions and, for mazes, chained prior skills from
    the task's start and three random free cells, drawn into the target maze."""
    pictures = run_dir / "pictures"
    walls, starts = None, []
    if cfg.env.family == "maze":
        task_env = make_env(cfg)
        walls = task_env.unwrapped.task.walls
        free = np.argwhere(~walls)
        rng = np.random.default_rng(cfg.seed)
        starts = [tuple(task_env.unwrapped.task.start)] + [
            tuple(int(v) for v in free[i]) for i in rng.choice(len(free), 3, replace=False)
        ]
        task_env.close()

    def draw(module: SkillPriorModule, batch: dict[str, Tensor]) -> None:
        step, was_training = module.global_step, module.training
        module.eval()
        with torch.no_grad():
            output = module.model(module.prepare(batch))
        plot_reconstructions(
            output.targets[:4].numpy(),
            output.reconstruction[:4].numpy(),
            pictures / "reconstructions.png",
            f"{module.spec.variant}: reconstructions, step {step}",
        )
        if walls is not None:
            positions = prior_paths(cfg, module, starts, seed=cfg.seed)
            plot_maze_paths(
                walls,
                list(positions),
                pictures / "prior_skills.png",
                title=f"{module.spec.variant}: prior for 200 steps from 4 starts, step {step}",
            )
        module.train(was_training)

    return draw


def prior_paths(
    cfg: DictConfig,
    module: SkillPriorModule,
    starts: list[tuple[int, int]],
    seed: int,
    samples_per_start: int = 4,
    steps: int = 200,
) -> np.ndarray:
    """Positions (N, steps+1, 2) of the prior as a policy (20 chained skills of H = 10, or the
    flat policy), ``samples_per_start`` runs from each start cell of the target maze."""
    envs = [make_env(cfg, start=start) for start in starts for _ in range(samples_per_start)]
    policy = PriorPolicy(module, generator=torch.Generator().manual_seed(seed))
    rollouts = run_prior_episodes(policy, envs, seed, max_steps=steps)
    for env in envs:
        env.close()
    return rollouts.positions


def train_prior(cfg: DictConfig) -> Path:
    """Train the configured prior; returns the path of the last checkpoint."""
    run_dir = Path(cfg.run_dir)
    checkpoint = find_checkpoint(run_dir, cfg.resume)
    if checkpoint is not None:
        load_prior(checkpoint, cfg.prior.name)  # refuse a checkpoint of another variant early
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    # Denormal activations make the conv layers ~1.5x slower on CPU; flush them to zero.
    torch.set_flush_denormal(True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    _ensure_dataset(cfg)

    env = make_env(cfg)
    state_dim = env.observation_space["state"].shape[0]
    action_dim = env.action_space.shape[0]
    env.close()
    spec = skill_spec(cfg, state_dim, action_dim)
    datamodule = WindowDataModule(
        data_dir=cfg.paths.data_dir,
        dataset_id=cfg.data.dataset_id,
        n_actions=spec.n_actions,
        batch_size=cfg.prior.batch_size,
        val_data_size=cfg.prior.val_data_size,
        seed=cfg.seed,
        with_views=bool(cfg.env.image),
        normalize_states=bool(cfg.env.normalize_states),
        make_hint=f"skillcritic-data env={cfg.env.name} paths.data_dir={cfg.paths.data_dir}",
    )
    datamodule.setup("fit")
    if (datamodule.state_dim, datamodule.action_dim) != (state_dim, action_dim):
        raise UserError(
            f"dataset {cfg.data.dataset_id} has states of {datamodule.state_dim} and actions of "
            f"{datamodule.action_dim} dims, env {cfg.env.name} has {state_dim} and {action_dim}; "
            "collect the env's own dataset with skillcritic-data"
        )
    stats = datamodule.state_stats
    module = SkillPriorModule(
        spec=spec_dict(spec),
        lr=cfg.prior.lr,
        init_grad_clip=cfg.prior.init_grad_clip,
        init_grad_clip_steps=cfg.prior.init_grad_clip_steps,
        best_of_n=cfg.prior.best_of_n,
        state_mean=None if stats is None else stats[0].tolist(),
        state_std=None if stats is None else stats[1].tolist(),
        on_validation=_pictures(cfg, run_dir),
    )
    logger = make_logger(cfg, run_dir)
    best = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINTS,
        filename="best",  # one stable path (overwritten by a better one) that RL runs can name
        monitor="val/rec",
        mode="min",
        save_top_k=1,
        enable_version_counter=False,
    )
    # last.ckpt at every validation: Lightning's save_last writes it only beside a new best,
    # which would leave resume=latest behind by every update since the best validation.
    latest = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINTS,
        filename="last",
        save_top_k=1,
        enable_version_counter=False,  # always last.ckpt, also in a copied folder
    )
    try:
        trainer = L.Trainer(
            accelerator=cfg.trainer.accelerator,
            devices=cfg.trainer.devices,
            strategy=cfg.trainer.strategy,
            precision=cfg.trainer.precision,
            max_steps=cfg.trainer.max_steps,
            val_check_interval=cfg.trainer.val_check_interval,
            check_val_every_n_epoch=None,
            log_every_n_steps=cfg.trainer.log_every_n_steps,
            num_sanity_val_steps=0,
            logger=logger,
            default_root_dir=run_dir,
            callbacks=[best, latest, StepProgressBar()],
            plugins=[AtomicCheckpointIO()],
            enable_model_summary=False,
        )
    except MisconfigurationException as error:  # e.g. trainer=gpu on a machine without one
        raise UserError(f"trainer settings: {error}") from error
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
    except NonFiniteLossError as error:
        raise UserError(str(error)) from error
    last = run_dir / CHECKPOINTS / "last.ckpt"
    trainer.save_checkpoint(last)  # the final step (validation-time saves may be older)
    log.info("prior %s: checkpoints in %s, logs in %s", cfg.prior.name, last.parent, logger.log_dir)
    return last


def check_prior(cfg: DictConfig) -> PriorRollouts:
    """Run the target task with HL = the learned prior, LL = the decoder (no learning)."""
    run_dir = Path(cfg.run_dir)
    path = (
        Path(cfg.check.checkpoint) if cfg.check.checkpoint else run_dir / CHECKPOINTS / "last.ckpt"
    )
    if not path.is_file():
        raise UserError(
            f"no prior checkpoint at {path}; train it with: skillcritic-prior env={cfg.env.name} "
            f"prior={cfg.prior.name}"
        )
    module = load_prior(path, cfg.prior.name)
    envs = [make_env(cfg) for _ in range(cfg.check.episodes)]
    policy = PriorPolicy(
        module,
        deterministic=cfg.check.deterministic,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    rollouts = run_prior_episodes(policy, envs, cfg.seed)
    log.info(
        "prior check %s on %s: success %.2f, mean return %.1f over %d episodes",
        cfg.prior.name,
        cfg.env.task,
        rollouts.success_rate,
        rollouts.returns.mean(),
        len(envs),
    )
    if cfg.env.family == "maze":
        task = envs[0].unwrapped.task
        out = run_dir / "check"
        plot_visit_heatmap(
            task.walls,
            rollouts.positions,
            out / "visits.png",
            task.goal,
            f"{cfg.prior.name} prior on {cfg.env.task}: success {rollouts.success_rate:.2f}",
        )
        plot_maze_paths(task.walls, list(rollouts.positions), out / "paths.png", task.goal)
        log.info("pictures in %s", out)
    for env in envs:
        env.close()
    return rollouts
