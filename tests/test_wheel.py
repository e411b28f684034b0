"""A regular (wheel) install finds its configs and runs, not only the editable checkout."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, installed (without deps) into its own folder."""
    root = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-qq"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(REPO)],
        check=True,
    )
    (wheel,) = (root / "dist").glob("skillcritic-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(root / "site"), str(wheel)], check=True
    )
    return root / "site"


def run_installed(site: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH puts the wheel's copy ahead of the editable checkout on sys.path.
    env = os.environ | {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_wheel_ships_configs_and_layouts(wheel_site: Path, tmp_path: Path) -> None:
    probe = run_installed(
        wheel_site,
        [
            sys.executable,
            "-c",
            "import skillcritic, skillcritic.cli as c; "
            "print(skillcritic.__file__); print(c.config_dir())",
        ],
        tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    package_file, conf = probe.stdout.split()
    assert Path(package_file).is_relative_to(wheel_site)
    assert Path(conf) == wheel_site / "skillcritic" / "conf"
    assert (Path(conf) / "env" / "maze.yaml").is_file()
    assert (wheel_site / "skillcritic/envs/maze/layouts/tasks.json").is_file()


def test_wheel_console_script_collects(wheel_site: Path, tmp_path: Path) -> None:
    done = run_installed(
        wheel_site,
        [
            str(wheel_site / "bin" / "skillcritic-data"),
            "env=maze_traj",
            "data=small",
            "data.episodes=2",
            "data.workers=1",
            "env.demos.layout_size=8",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "skillcritic/maze-demos-small-v0"
    assert (tmp_path / "data/skillcritic/maze-demos-small-v0/data/metadata.json").is_file()
    assert (tmp_path / "outputs/data/maze_traj/small/default/seed0/.hydra/config.yaml").is_file()
