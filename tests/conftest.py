"""Shared test setup: no network, no display, every run in its own folders."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

BIN = Path(sys.executable).parent


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh current folder (commands write data/ and outputs/ relative to it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
