"""Prior training: every variant learns on real demonstrations, and the CLI writes a usable run."""

import itertools
import os
import subprocess
from pathlib import Path

import gymnasium
import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import BIN
from skillcritic.cli import config_dir
from skillcritic.data.collect import collect_dataset
from skillcritic.data.windows import WindowDataModule
from skillcritic.envs.maze.demos import DemoConfig, MazeDemoGenerator
from skillcritic.errors import UserError
from skillcritic.models.skills import VARIANTS, SkillSpec
from skillcritic.prior.module import NonFiniteLossError, SkillPriorModule, spec_dict
from skillcritic.train_prior import load_prior, train_prior

DATASET = "skillcritic/prior-test-v0"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prior-data")
    collect_dataset(
        MazeDemoGenerator(0, DemoConfig(layout_size=8, min_steps=20)),
        12,
        1,
        root,
        DATASET,
        gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32),
        gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32),
        "prior tests",
    )
    return root


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def small_module(variant: str) -> SkillPriorModule:
    spec = SkillSpec(
        variant=variant,
        state_dim=4,
        action_dim=2,
        image=True,
        horizon=1 if variant == "flat" else 10,
        hidden=32,
        prior_layers=2,
    )
    return SkillPriorModule(spec_dict(spec), lr=3e-3, best_of_n=4, init_grad_clip_steps=5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_learns(variant: str, data_dir: Path) -> None:
    torch.manual_seed(0)
    module = small_module(variant)
    datamodule = WindowDataModule(
        data_dir, DATASET, module.spec.n_actions, batch_size=32, val_data_size=32, with_views=True
    )
    recorder = LossRecorder()
    trainer = L.Trainer(
        max_steps=60,
        val_check_interval=30,
        check_val_every_n_epoch=None,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[recorder],
    )
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 60
    first, last = np.mean(recorder.losses[:10]), np.mean(recorder.losses[-10:])
    assert last < first - 0.1, (first, last)
    assert "val/best_of_n_mse" in trainer.callback_metrics


def test_non_finite_loss_names_step_and_term(data_dir: Path) -> None:
    module = small_module("closed_loop")
    datamodule = WindowDataModule(
        data_dir, DATASET, module.spec.n_actions, batch_size=8, with_views=True
    )
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    batch["actions"][0, 3, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"'rec'.*step 0"):
        module.training_step(batch, 0)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [str(BIN / "skillcritic-prior"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


TINY = [
    "env=maze",
    "prior=closed_loop",
    "data=small",
    "data.episodes=6",
    "data.workers=1",
    "env.demos.layout_size=8",
    "prior.batch_size=16",
    "prior.val_data_size=16",
    "prior.best_of_n=4",
    "prior.hidden=32",
    "prior.prior_layers=2",
    "trainer.val_check_interval=4",
    "trainer.log_every_n_steps=2",
]


def test_cli_trains_resumes_and_checks(tmp_path: Path) -> None:
    # No dataset yet: the command collects the small one itself, then trains.
    done = run([*TINY, "trainer.max_steps=8"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "outputs/prior/maze/closed_loop/default/seed0"
    last = run_dir / "checkpoints/last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 8
    assert checkpoint["hyper_parameters"]["spec"]["variant"] == "closed_loop"
    assert (run_dir / "checkpoints/best.ckpt").is_file()
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert {"train/total", "train/rec", "val/rec", "val/best_of_n_mse"} <= set(
        events.Tags()["scalars"]
    )
    for picture in ("reconstructions.png", "prior_skills.png"):
        assert (run_dir / "pictures" / picture).stat().st_size > 1000

    again = run([*TINY, "trainer.max_steps=8"], tmp_path)  # a fresh run never overwrites
    assert again.returncode == 2 and "resume=latest" in again.stderr
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 8

    resumed = run([*TINY, "trainer.max_steps=12", "resume=latest", "prior.lr=3e-4"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 12
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == 3e-4  # the new lr applies
    assert "updates" in resumed.stdout and "12/12" in resumed.stdout  # not "Epoch 0/-2 12/4"

    wrong = run([*TINY, "prior=open_loop", f"resume={last}"], tmp_path)
    assert wrong.returncode == 2 and "holds a closed_loop prior" in wrong.stderr

    check = run([*TINY, "mode=check", "check.episodes=2"], tmp_path)
    assert check.returncode == 0, check.stderr[-3000:]
    assert "prior check closed_loop on spirl: success" in check.stderr
    assert (run_dir / "check/visits.png").is_file() and (run_dir / "check/paths.png").is_file()


@pytest.mark.parametrize(("val_rec_sign", "best_step"), [(1, 4), (-1, 8)])
def test_last_and_best_checkpoints_follow_the_validations(
    tmp_path: Path, monkeypatch, val_rec_sign: int, best_step: int
) -> None:
    # Validations at steps 4 and 8; val/rec rises (best stays step 4) or falls (best moves to
    # step 8, at the same path) with the step. Training dies at step 10 before the final save:
    # last.ckpt must still hold step 8, the latest validation.
    paths = [f"paths.data_dir={tmp_path / 'data'}", f"paths.outputs={tmp_path / 'outputs'}"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train_prior", [*TINY, "trainer.max_steps=12", *paths])
    losses, training_step = SkillPriorModule._losses, SkillPriorModule.training_step

    def stepped_val_rec(self, batch):
        terms = losses(self, batch)
        if not self.training:
            terms["rec"] = torch.tensor(float(val_rec_sign * self.global_step))
        return terms

    def dies_at_step_10(self, batch, batch_idx):
        if self.global_step == 10:
            raise NonFiniteLossError("loss term 'rec' became nan at step 10")
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(SkillPriorModule, "_losses", stepped_val_rec)
    monkeypatch.setattr(SkillPriorModule, "training_step", dies_at_step_10)
    with pytest.raises(UserError, match="step 10"):
        train_prior(cfg)
    checkpoints = tmp_path / "outputs/prior/maze/closed_loop/default/seed0/checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 8
    assert torch.load(checkpoints / "best.ckpt", weights_only=True)["global_step"] == best_step


def test_missing_dataset_without_auto_collect_names_the_command(tmp_path: Path) -> None:
    done = run([*TINY, "data.auto_collect=false"], tmp_path)
    assert done.returncode == 2
    assert "skillcritic-data env=maze" in done.stderr and "Traceback" not in done.stderr


def test_dataset_of_another_env_is_refused(tmp_path: Path) -> None:
    from minari.data_collector import EpisodeBuffer

    from skillcritic.data.minari_io import write_dataset

    episodes = [
        EpisodeBuffer(
            id=i,
            observations=np.zeros((31, 3), np.float32),
            actions=np.zeros((30, 2), np.float32),
            rewards=np.zeros(30, np.float32),
            terminations=np.eye(30, dtype=bool)[-1],
            truncations=np.zeros(30, bool),
        )
        for i in range(3)
    ]
    write_dataset(
        tmp_path / "ds",
        "skillcritic/other-v0",
        episodes,
        gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32),
        "another env",
    )
    done = run([*TINY, "paths.data_dir=ds", "data.dataset_id=skillcritic/other-v0"], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "skillcritic/other-v0" in lines[-1], lines[-3:]


def test_state_normalisation_is_applied_and_saved(tmp_path: Path) -> None:

    spec = SkillSpec(
        variant="closed_loop", state_dim=4, action_dim=2, horizon=3, hidden=16, prior_layers=1
    )
    module = SkillPriorModule(
        spec_dict(spec), state_mean=[1.0, 2.0, 3.0, 4.0], state_std=[2.0, 2.0, 4.0, 4.0]
    )
    batch = {"states": torch.tensor([[[3.0, 2.0, 7.0, 0.0]] * 4]), "actions": torch.zeros(1, 3, 2)}
    assert torch.equal(module.prepare(batch)["states"][0, 0], torch.tensor([1.0, 0.0, 1.0, -1.0]))
    trainer = L.Trainer(max_steps=0, logger=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "p.ckpt")
    loaded = load_prior(tmp_path / "p.ckpt", "closed_loop")
    assert torch.equal(loaded.state_mean, module.state_mean)
    assert torch.equal(loaded.state_std, module.state_std)
    # a prior saved with the old floor of 1e-6 for a dimension constant in the data loads with 1
    with torch.no_grad():
        module.state_std[2] = 1e-6
    trainer.save_checkpoint(tmp_path / "old.ckpt")
    old = load_prior(tmp_path / "old.ckpt", "closed_loop")
    assert old.state_std.tolist() == [2.0, 2.0, 1.0, 4.0]


@pytest.mark.parametrize("variant", ["open_loop", "closed_loop", "cond_decoder"])
def test_prior_policy_resamples_skills_every_h_steps(variant: str) -> None:
    from skillcritic.prior.policy import PriorPolicy

    spec = SkillSpec(
        variant=variant, state_dim=4, action_dim=2, horizon=3, hidden=16, prior_layers=1
    )
    policy = PriorPolicy(
        SkillPriorModule(spec_dict(spec)), generator=torch.Generator().manual_seed(0)
    )
    states = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    skills = []
    for _ in range(7):
        actions = policy.act(states)
        assert actions.shape == (5, 2) and np.abs(actions).max() <= 1.0
        skills.append(policy._z.clone())
    changed = [not torch.equal(a, b) for a, b in itertools.pairwise(skills)]
    assert changed == [False, False, True, False, False, True]  # new z at steps 3 and 6
    policy.reset()
    policy.act(states)
    assert not torch.equal(policy._z, skills[-1])


def test_latest_prior_checkpoint_is_the_newest_of_any_prefix_and_seed(tmp_path: Path) -> None:
    from skillcritic.train_prior import latest_prior_checkpoint

    with pytest.raises(UserError, match="skillcritic-prior env=maze prior=cond_decoder"):
        latest_prior_checkpoint(tmp_path, "maze", "cond_decoder")
    paths = []
    for i, run in enumerate(["default/seed0", "exp/seed3", "default/seed1"]):
        path = tmp_path / "prior/maze/cond_decoder" / run / "checkpoints/last.ckpt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (1000 + i, 1000 + i))
        paths.append(path)
    os.utime(paths[1], (5000, 5000))
    assert latest_prior_checkpoint(tmp_path, "maze", "cond_decoder") == paths[1]
    with pytest.raises(UserError, match="no trained open_loop prior"):
        latest_prior_checkpoint(tmp_path, "maze", "open_loop")


def test_priors_of_the_old_two_channel_views_are_refused(tmp_path: Path) -> None:
    spec = SkillSpec(variant="closed_loop", state_dim=4, action_dim=2, image=True, view_channels=2)
    path = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": {"spec": spec_dict(spec)}, "state_dict": {}}, path)
    with pytest.raises(UserError, match=r"views of 2 channels.*train the prior again"):
        load_prior(path)
