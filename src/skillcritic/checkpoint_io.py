"""Checkpoint writing shared by the prior and RL trainers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L


class AtomicCheckpointIO(L.pytorch.plugins.TorchCheckpointIO):
    """Checkpoints are written to a temporary file and renamed into place (never half-written)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        tmp.replace(path)
