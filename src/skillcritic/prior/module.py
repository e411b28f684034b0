"""The skill-prior LightningModule: trains any ``models.skills`` variant on window batches."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor

from skillcritic.models.nets import normalised
from skillcritic.models.skills import SkillSpec, build_skill_model

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN/inf; the message names the step and the term."""


class SkillPriorModule(L.LightningModule):
    """Skill space + learned prior (``SkillSpec``) trained with RAdam.

    Checkpoints carry the spec (``hyper_parameters``) and, for envs that normalise states,
    the normalisation statistics (buffers), so RL rebuilds the model without repeating sizes.

    Args:
        spec: the model's sizes, as a dict of ``SkillSpec`` fields.
        lr: RAdam learning rate.
        init_grad_clip: gradient-norm clip during the first ``init_grad_clip_steps`` updates
            (the reference's guard against early NaNs); no clipping afterwards.
        best_of_n: skills sampled from the learned prior per validation window.
        state_mean, state_std: per-dimension state normalisation (None: raw states).
        on_validation: called with the module and a validation batch after each validation
            (pictures); not saved.
    """

    def __init__(
        self,
        spec: dict[str, Any],
        lr: float = 1e-3,
        init_grad_clip: float = 1e-3,
        init_grad_clip_steps: int = 100,
        best_of_n: int = 100,
        state_mean: list[float] | None = None,
        state_std: list[float] | None = None,
        on_validation: Callable[[SkillPriorModule, dict[str, Tensor]], None] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["on_validation"])
        self.spec = SkillSpec(**spec)
        self.model = build_skill_model(self.spec)
        self.lr, self.best_of_n = lr, best_of_n
        self.init_grad_clip, self.init_grad_clip_steps = init_grad_clip, init_grad_clip_steps
        normalise = state_mean is not None and state_std is not None
        self.register_buffer("state_mean", torch.tensor(state_mean) if normalise else None)
        self.register_buffer("state_std", torch.tensor(state_std) if normalise else None)
        self.on_validation = on_validation
        self._picture_batch: dict[str, Tensor] | None = None

    def normalise_states(self, states: Tensor) -> Tensor:
        """States as the model sees them: normalised when the env asks for it, else as they are."""
        return normalised(states, self.state_mean, self.state_std)

    def prepare(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """A window batch as the model sees it (``normalise_states``)."""
        if self.state_mean is None:
            return batch
        return batch | {"states": self.normalise_states(batch["states"])}

    def _losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        losses = self.model.loss(self.model(self.prepare(batch)))
        for name, value in losses.items():
            if not torch.isfinite(value):
                raise NonFiniteLossError(
                    f"loss term {name!r} became {value.item()} at step {self.global_step}; "
                    "the last good checkpoint is kept (lower trainer lr or check the data)"
                )
        return losses

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        losses = self._losses(batch)
        batch_size = len(batch["actions"])
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=batch_size)
        return losses["total"]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        batch_size = len(batch["actions"])
        losses = self._losses(batch)
        losses["best_of_n_mse"] = self.model.best_of_n_error(self.prepare(batch), self.best_of_n)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=batch_size)
        if batch_idx == 0:
            self._picture_batch = batch

    def on_validation_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        summary = ", ".join(
            f"{k} {float(v):.4f}" for k, v in sorted(metrics.items()) if k.startswith("val/")
        )
        log.info("step %d: %s", self.global_step, summary)  # a trace for runs without a terminal
        if self.on_validation is not None and self._picture_batch is not None:
            self.on_validation(self, self._picture_batch)
        self._picture_batch = None

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        if self.global_step < self.init_grad_clip_steps:
            self.clip_gradients(optimizer, self.init_grad_clip, "norm")
        elif gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.RAdam(self.parameters(), lr=self.lr, betas=(0.9, 0.999))

    def on_train_start(self) -> None:
        # A resumed optimiser brings its checkpoint's step size; the configured one wins, so
        # that ``prior.lr=… resume=latest`` changes it.
        for group in self.trainer.optimizers[0].param_groups:
            group["lr"] = self.lr


def spec_dict(spec: SkillSpec) -> dict[str, Any]:
    """A ``SkillSpec`` as plain values (for ``hyper_parameters`` in checkpoints)."""
    return dataclasses.asdict(spec)
