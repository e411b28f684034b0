"""Skill-prior training speed per variant at the default sizes, next to the loader's speed.

    .venv/bin/python benchmarks/prior.py [--data-dir data] [--dataset-id skillcritic/maze-demos-v0]
        [--threads 2] [--steps 20] [--variants open_loop closed_loop cond_decoder flat]

One "step" = forward, loss, backward and a RAdam update on one batch of 128 windows (plain
torch, no Lightning, to time the model itself); the loader column is ``WindowSampler.sample``
with the views the image models need. Print-outs carry shapes, threads and versions; compare
with the reference code only side by side on the same machine.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch

from skillcritic.data.minari_io import DatasetError
from skillcritic.data.windows import WindowDataModule
from skillcritic.models.skills import VARIANTS, SkillSpec, build_skill_model


def time_steps(spec: SkillSpec, batch: dict[str, torch.Tensor], steps: int) -> float:
    """Median seconds per training step over ``steps`` steps (after 3 warm-up steps)."""
    model = build_skill_model(spec)
    optimizer = torch.optim.RAdam(model.parameters(), lr=1e-3)
    times = []
    for i in range(steps + 3):
        start = time.perf_counter()
        loss = model.loss(model(batch))["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--dataset-id", default="skillcritic/maze-demos-v0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--no-flush-denormal",
        dest="flush_denormal",
        action="store_false",
        help="keep denormal floats (skillcritic-prior flushes them)",
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(args.flush_denormal)
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"torch threads {torch.get_num_threads()}, batch {args.batch_size}, {args.dataset_id}"
    )
    print(
        f"{'variant':13s} {'batch shapes':52s} {'step ms':>8s} {'samples/s':>10s} {'loader ms':>9s}"
    )
    for variant in args.variants:
        spec = SkillSpec(
            variant=variant,
            state_dim=4,
            action_dim=2,
            image=True,
            horizon=1 if variant == "flat" else 10,
            decoder_layers=5 if variant == "flat" else 3,
        )
        try:
            data = WindowDataModule(
                args.data_dir,
                args.dataset_id,
                spec.n_actions,
                batch_size=args.batch_size,
                with_views=True,
            )
            data.setup("fit")
        except DatasetError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        sampler, rng = data.train_sampler, np.random.default_rng(0)
        batch = sampler.sample(args.batch_size, rng)
        start = time.perf_counter()
        for _ in range(10):
            sampler.sample(args.batch_size, rng)
        loader = (time.perf_counter() - start) / 10
        step = time_steps(spec, batch, args.steps)
        shapes = " ".join(f"{k}{tuple(v.shape)}" for k, v in batch.items() if k != "states")
        print(
            f"{variant:13s} {shapes:52s} {1e3 * step:8.1f} {args.batch_size / step:10.0f} "
            f"{1e3 * loader:9.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
