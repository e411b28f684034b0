"""skillcritic: skill-based RL (SPiRL, Skill-Critic) on Lightning + Hydra.

Importing the package registers its gymnasium environments (``skillcritic/Maze-v0``,
``skillcritic/Racing-v0``).
"""

import os
import warnings
from importlib.metadata import PackageNotFoundError, version

# Before mujoco or minari are imported: offscreen MuJoCo rendering, and no hub access ever.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gymnasium

# Lightning 2.6 trips a deprecation of torch 2.13's pytree API on every fit; harmless, not ours.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")

try:
    __version__ = version("skillcritic")
except PackageNotFoundError:  # running from a checkout without an install
    __version__ = "0.0.0"

gymnasium.register(
    id="skillcritic/Maze-v0",
    entry_point="skillcritic.envs.maze.env:MazeEnv",
    max_episode_steps=2000,
)

# Racing: the env enforces its task's step limit itself (600 corner, 2000 lap), as GTS did.
gymnasium.register(
    id="skillcritic/Racing-v0",
    entry_point="skillcritic.envs.racing.env:RacingEnv",
    vector_entry_point="skillcritic.envs.racing.env:RacingVectorEnv",
)
