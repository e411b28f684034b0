"""The RL LightningModule, its evaluation loop and callbacks.

:class:`RLModule` wraps a :class:`~skillcritic.rl.agents.SkillAgent` with manual optimisation:
each ``training_step`` is one update (HL, then LL for Skill-Critic) on a batch the
:class:`~skillcritic.rl.experience.ExperienceStream` yielded. Env steps, HL steps and updates are
the module's own counters (checkpointed with the replay buffers, optimisers, α's, RNG states and
the stage); metrics are logged against env steps every ``log_every_updates`` updates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import lightning as L
import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor

from skillcritic.logs import stderr_console
from skillcritic.prior.module import SkillPriorModule
from skillcritic.rl.agents import AgentSpec, LowLevelActor, SkillAgent, build_agent
from skillcritic.rl.experience import Experience, Schedule, to_tensors
from skillcritic.viz.pictures import plot_skill_path
from skillcritic.viz.videos import subsample_frames, write_video


class NonFiniteLossError(RuntimeError):
    """An update produced a NaN / inf loss (names the update and the term)."""


class RLModule(L.LightningModule):
    """One agent, trained with manual optimisation (see the module docstring).

    Args:
        agent: :class:`AgentSpec` fields.
        schedule: :class:`Schedule` fields.
        prior_hparams: the prior checkpoint's hyperparameters (rebuilds the prior's shape; the
            agent's copies of its weights are in this module's own state dict). None for ``sac``.
        horizon: the configured agent horizon (None: the prior's).
        log_every_updates: updates between logged metrics.
        save_buffers: put the replay buffers into checkpoints (resume continues with them).
        prior: the trained prior to initialise a fresh agent from (not saved; omit to rebuild
            from ``prior_hparams`` and then load a checkpoint's state dict).
    """

    def __init__(
        self,
        agent: dict[str, Any],
        schedule: dict[str, Any],
        prior_hparams: dict[str, Any] | None = None,
        horizon: int | None = None,
        log_every_updates: int = 50,
        save_buffers: bool = True,
        prior: SkillPriorModule | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["prior"])
        self.automatic_optimization = False
        if prior is None and prior_hparams is not None:
            prior = SkillPriorModule(**prior_hparams)
        self.agent: SkillAgent = build_agent(AgentSpec(**agent), prior, horizon)
        self.schedule = Schedule(**schedule)
        self.log_every_updates = max(1, int(log_every_updates))
        self.save_buffers = save_buffers
        self.experience: Experience | None = None
        self.updates = 0
        self._optimizers: dict[str, dict[str, torch.optim.Optimizer]] = {}
        self._step_sizes: list[float] = []  # configured lr of each optimiser, in order
        self._window: dict[str, list[float]] = {}
        self._clock = (time.perf_counter(), 0, 0)  # (time, env steps, updates) at the last log
        self.last_success = float("nan")
        self.eval_return = float("nan")  # mean return of the latest evaluation
        self.best_eval_return = -math.inf  # the best of those so far (best.ckpt's)

    def attach(self, experience: Experience) -> None:
        """Give the module its experience (collector + replay) before ``fit``."""
        self.experience = experience

    @property
    def env_steps(self) -> int:
        return self.experience.env_steps if self.experience is not None else 0

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        self._optimizers = self.agent.optimizers()
        optimizers = [opt for level in self._optimizers.values() for opt in level.values()]
        self._step_sizes = [opt.param_groups[0]["lr"] for opt in optimizers]
        return optimizers

    def on_train_start(self) -> None:
        # A resumed optimiser brings its checkpoint's step size; the configured one wins, so
        # that ``agent.lr=… resume=latest`` changes it.
        for opt, lr in zip(self.trainer.optimizers, self._step_sizes, strict=True):
            for group in opt.param_groups:
                group["lr"] = lr

    def training_step(self, batch: dict[str, dict[str, Tensor]], batch_idx: int) -> None:
        metrics = self.agent.update(batch["hl"], batch.get("ll"), self._optimizers)
        self.updates += 1
        for name, value in metrics.items():
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"non-finite {name} at update {self.updates} (env step {self.env_steps}); "
                    "the last good checkpoint is kept"
                )
            self._window.setdefault(name, []).append(value)
        if self.updates % self.log_every_updates == 0:
            self._log_window()

    def _log_window(self) -> None:
        """Means of the metrics since the last log, speeds and training episodes, vs env steps."""
        assert self.experience is not None
        metrics = {name: float(np.mean(values)) for name, values in self._window.items()}
        self._window = {}
        now, steps0, updates0 = self._clock
        elapsed = max(time.perf_counter() - now, 1e-9)
        metrics["time/env_steps_per_s"] = (self.env_steps - steps0) / elapsed
        metrics["time/updates_per_s"] = (self.updates - updates0) / elapsed
        self._clock = (time.perf_counter(), self.env_steps, self.updates)
        episodes = self.experience.pop_episodes()
        if episodes:
            returns, successes = zip(*episodes, strict=True)
            metrics["train/return"] = float(np.mean(returns))
            if np.isfinite(successes).any():  # envs without info["success"] report NaN
                metrics["train/success"] = float(np.nanmean(successes))
        metrics["train/updates"] = float(self.updates)
        metrics["train/hl_steps"] = float(self.experience.collector.hl_steps)
        if self.logger is not None:
            self.logger.log_metrics(metrics, step=self.env_steps)

    def on_train_epoch_end(self) -> None:
        if self.env_steps >= self.schedule.total_env_steps:
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        # The last window rarely ends on a multiple of ``log_every_updates``: log it, so the
        # training episodes that ended since the last log (e.g. at the final env step) count.
        if self._window:  # updates since the last log
            self._log_window()

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state: dict[str, Any] = {
            "updates": self.updates,
            "torch_rng": torch.get_rng_state(),
            "stage": self.agent.stage,
            "best_eval_return": self.best_eval_return,
        }
        if self.experience is not None:
            state["experience"] = self.experience.state_dict(self.save_buffers)
        checkpoint["skillcritic"] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["skillcritic"]
        self.updates = int(state["updates"])
        torch.set_rng_state(state["torch_rng"])
        self.agent.set_stage(state["stage"])
        self.best_eval_return = float(state.get("best_eval_return", -math.inf))
        if self.experience is not None and "experience" in state:
            self.experience.load_state_dict(state["experience"])
            self._clock = (time.perf_counter(), self.env_steps, self.updates)


# ---------------------------------------------------------------------- evaluation


@dataclass
class Episodes:
    """Whole episodes of an agent: per-episode results and trajectories."""

    returns: np.ndarray  # (N,)
    successes: np.ndarray  # (N,) bool
    states: list[np.ndarray] = field(default_factory=list)  # per episode (T+1, ds)
    actions: list[np.ndarray] = field(default_factory=list)  # per episode (T, da)
    rewards: list[np.ndarray] = field(default_factory=list)  # per episode (T,)
    frames: list[list[np.ndarray]] = field(default_factory=list)  # rendered episodes

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes)) if len(self.successes) else float("nan")


def _frame(env: gymnasium.Env) -> np.ndarray | None:
    """An rgb frame, or None where the env cannot render (e.g. classic control without pygame)."""
    try:
        return env.render()
    except gymnasium.error.DependencyNotInstalled:
        return None


@torch.no_grad()
def run_episodes(
    agent: SkillAgent,
    envs: list[gymnasium.Env],
    seed: int,
    deterministic: bool = False,
    render: int = 0,
    frame_every: int = 10,
    device: torch.device | str = "cpu",
) -> Episodes:
    """One episode per env, all stepped in lockstep with batched policy calls.

    A skill is chosen every H steps; ``render`` first envs are rendered every ``frame_every``
    steps (they must be made with ``render_mode="rgb_array"``).
    """
    device = torch.device(device)
    n = len(envs)
    keys = ("state", "view") if agent.uses_views else ("state",)
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    states = [[o["state"]] for o in obs]
    actions: list[list[np.ndarray]] = [[] for _ in range(n)]
    rewards: list[list[float]] = [[] for _ in range(n)]
    frames = [_frame(envs[i]) for i in range(min(render, n))]
    frames = [[frame] for frame in frames if frame is not None]
    successes = np.zeros(n, dtype=bool)
    done = np.zeros(n, dtype=bool)
    low_level = LowLevelActor(agent)
    z = torch.zeros((n, agent.nz), device=device)
    step = 0
    while not done.all():
        batch = to_tensors({key: np.stack([o[key] for o in obs]) for key in keys}, device)
        k = torch.full((n,), step % agent.horizon, dtype=torch.long, device=device)
        if step % agent.horizon == 0:
            z = agent.hl_act(batch, deterministic)
        action = low_level(batch, z, k, deterministic).cpu().numpy()
        for i, env in enumerate(envs):
            if done[i]:
                continue
            obs[i], reward, terminated, truncated, info = env.step(action[i])
            states[i].append(obs[i]["state"])
            actions[i].append(action[i])
            rewards[i].append(float(reward))
            successes[i] |= bool(info.get("success", reward > 0))
            done[i] = terminated or truncated
        step += 1
        for i in range(len(frames)):
            if not done[i] and step % frame_every == 0:
                frames[i].append(envs[i].render())
    return Episodes(
        returns=np.array([sum(r) for r in rewards]),
        successes=successes,
        states=[np.stack(s) for s in states],
        actions=[np.stack(a) for a in actions],
        rewards=[np.asarray(r, np.float32) for r in rewards],
        frames=frames,
    )


# ---------------------------------------------------------------------- callbacks


class Evaluation(L.Callback):
    """At each epoch end: ``episodes`` episodes on fresh envs, logged as ``rollout/return`` and
    ``rollout/success`` against env steps; a GIF of the first and, for mazes, its path
    coloured by skill (the research code's ``viz_hrl``).

    Args:
        make_env: ``make_env(render)`` builds one evaluation env (``render``: rgb frames).
        episodes: episodes per evaluation.
        seed: base seed of the evaluation resets.
        out_dir: the run folder (``videos/`` and ``pictures/`` go there).
        deterministic: act with the policies' means.
        video: record the first episode.
    """

    def __init__(
        self,
        make_env: Any,
        episodes: int,
        seed: int,
        out_dir: Path,
        deterministic: bool = False,
        video: bool = True,
    ) -> None:
        self.make_env = make_env
        self.episodes = episodes
        self.seed = seed
        self.out_dir = out_dir
        self.deterministic = deterministic
        self.video = video

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, RLModule)
        if self.episodes < 1:
            return
        envs = [self.make_env(self.video and i == 0) for i in range(self.episodes)]
        was_training = pl_module.training
        pl_module.eval()
        result = run_episodes(
            pl_module.agent,
            envs,
            self.seed + 1_000_003,  # evaluation starts differ from the training resets
            self.deterministic,
            render=int(self.video),
            device=pl_module.device,
        )
        pl_module.train(was_training)
        step = pl_module.env_steps
        pl_module.last_success = result.success_rate
        pl_module.eval_return = float(result.returns.mean())
        if trainer.logger is not None:
            trainer.logger.log_metrics(
                {
                    "rollout/return": float(result.returns.mean()),
                    "rollout/success": result.success_rate,
                },
                step=step,
            )
        save_episode_media(result, envs[0], pl_module.agent.horizon, self.out_dir, f"step{step}")
        for env in envs:
            env.close()


def save_episode_media(
    result: Episodes, env: gymnasium.Env, horizon: int, out_dir: Path, tag: str
) -> list[Path]:
    """The first episode's GIF (``videos/<tag>.gif``) and, for mazes, its skill-coloured path
    (``pictures/skills_<tag>.png``)."""
    written = []
    if result.frames and len(result.frames[0]) > 1:
        frames = subsample_frames(result.frames[0], 200)
        written.append(write_video(frames, out_dir / "videos" / f"{tag}.gif", scale=2))
    task = getattr(env.unwrapped, "task", None)
    if task is not None and hasattr(task, "walls") and result.states:
        written.append(
            plot_skill_path(
                task.walls,
                result.states[0][:, :2],
                horizon,
                out_dir / "pictures" / f"skills_{tag}.png",
                goal=tuple(task.goal),
                title=f"return {result.returns[0]:.0f}, success {bool(result.successes[0])}",
            )
        )
    return written


class LastCheckpoint(L.Callback):
    """Writes ``last.ckpt`` at every epoch end (atomically, through the Trainer's checkpoint IO);
    beside it, without the replay buffers, ``best.ckpt`` whenever the evaluation's mean return is
    the best so far (ties keep the earlier) and, with ``keep``, ``step<env steps>.ckpt`` (the
    policies, critics, temperatures and optimisers of that moment, for ``mode=val`` or a look at
    how the policy changed; ``resume`` continues from ``last.ckpt``).

    Lightning's ``ModelCheckpoint`` skips saves when ``global_step`` has not moved, and with
    manual optimisation over raw optimisers it never moves; this callback saves regardless.
    """

    def __init__(self, path: Path, keep: bool = False) -> None:
        self.path = path
        self.keep = keep

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, RLModule)
        best = pl_module.eval_return > pl_module.best_eval_return  # False without an evaluation
        if best:
            pl_module.best_eval_return = pl_module.eval_return
        trainer.save_checkpoint(self.path)
        names = [f"step{pl_module.env_steps}.ckpt"] if self.keep else []
        names += ["best.ckpt"] if best else []
        with_buffers, pl_module.save_buffers = pl_module.save_buffers, False
        try:
            for name in names:
                trainer.save_checkpoint(self.path.with_name(name))
        finally:
            pl_module.save_buffers = with_buffers


class EnvStepProgress(L.Callback):
    """A rich progress bar over env steps (not batches) with updates and the latest success."""

    def __init__(self, total_env_steps: int) -> None:
        self.total = total_env_steps
        self._progress: Progress | None = None
        self._task: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        columns = (
            TextColumn("[bold]env steps"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        )
        self._progress = Progress(*columns, console=stderr_console())
        self._progress.start()
        assert isinstance(pl_module, RLModule)
        self._task = self._progress.add_task(
            "rl", total=self.total, completed=pl_module.env_steps, status=""
        )

    def _refresh(self, module: RLModule) -> None:
        if self._progress is not None:
            status = f"updates {module.updates}  success {module.last_success:.2f}"
            self._progress.update(self._task, completed=module.env_steps, status=status)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        assert isinstance(pl_module, RLModule)
        if pl_module.updates % pl_module.log_every_updates == 0:
            self._refresh(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, RLModule)
        self._refresh(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.on_train_end(trainer, pl_module)
