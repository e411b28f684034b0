"""RL-stage speed per agent: update time, collection speed and the whole training loop.

    .venv/bin/python benchmarks/rl.py [--agents sac ... skill_critic] [--threads 2]
        [--updates 30] [--num-envs 4 [1 8]] [--loop-hl-steps 60] [--repeats 3]
        [--no-lightning] [--profile] [--quick]

Priors are untrained (speed does not depend on the weights): ``SkillPriorModule`` at the maze
sizes of ``conf/prior/*.yaml`` (views, H = 10; the flat prior H = 1 with 5 decoder layers). The
env is ``skillcritic/Maze-v0`` (task ``spirl``, views uint8 (2, 3, 32, 32)). Per agent:

* update: ``agent.update(hl, ll, agent.optimizers())`` on ``Experience.sample()`` batches of
  ``--batch-size`` rows from a replay filled by ``--fill-env-steps`` env steps (4 envs, warm-up,
  so no updates), median ms over ``--updates`` updates after 3 warm-up updates. Skill-Critic is
  timed in the ``hybrid`` stage (HL + LL actors, critics and temperatures all learn; its row in
  the table) and in ``warm_start`` (π_L and α_L frozen). The split of an update into the HL
  step, the LL bootstrap value ``U(s')`` and the LL step comes from timing those calls.
* collecting: env steps/s of ``experience.collector.step(H)`` (rows not stored) with
  ``--num-envs`` vector envs, the policy acting (no warm-up). The shares come from wrapping the
  collector's ``envs.step`` (env), and its ``hl_act`` / ``ll_act`` callbacks (policy: numpy ↔
  torch conversion + the agent's ``hl_act`` / ``LowLevelActor``); the rest is the collector's own
  bookkeeping (row building, autoreset handling).
* loop: ``for batch in experience.batches(): agent.update(...)`` (plain, no Lightning) over
  ``--loop-hl-steps`` HL transitions after the fill (one update per HL transition, the default
  schedule): env steps/s and updates/s of the whole pipeline. With Lightning (default on): the
  same length through ``RLModule`` + ``ExperienceStream`` + ``L.Trainer.fit`` (no logger, no
  checkpoints, no progress bar), interleaved with the plain loop ``--repeats`` times. Both runs
  time their batch production (each ``next`` of ``batches()``) and ``agent.update``; what is
  left of the loop's (Lightning: the epoch's) wall time is the loop's own cost, and "L ms/upd"
  is Lightning's minus the plain loop's, per update (medians). Subtracting the measured work of
  the same run keeps the collection and update noise out of this small difference. The fit's
  fixed cost (setup + teardown outside the epoch) is printed below the table.

``--loop-hl-steps 0`` skips the loops. Timings are wall-clock medians. On a shared machine
torch's OpenMP threads stall whenever one of them is descheduled (a 2-thread update can get 10x
slower while another process keeps a core busy), so the "others" column gives the cores other
processes kept busy during each agent's measurements (from /proc/stat): trust rows near 0,
compare runs only side by side, and prefer ``--threads 1`` where the cores are busy.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import gymnasium
import lightning as L
import mujoco
import numpy as np
import torch
from torch.utils.data import DataLoader

import skillcritic  # noqa: F401  (registers skillcritic/Maze-v0)
from skillcritic.models.skills import SkillSpec
from skillcritic.prior.module import SkillPriorModule, spec_dict
from skillcritic.rl.agents import AGENT_PRIORS, AGENTS, AgentSpec, SkillAgent
from skillcritic.rl.experience import Experience, ExperienceStream, Schedule, make_vector_env
from skillcritic.rl.module import RLModule

ENV_ID, TASK = "skillcritic/Maze-v0", "spirl"


def make_env() -> gymnasium.Env:
    return gymnasium.make(ENV_ID, task=TASK)


def build_prior(variant: str | None) -> SkillPriorModule | None:
    """An untrained prior at the maze sizes of conf/prior/<variant>.yaml."""
    if variant is None:
        return None
    flat = variant == "flat"
    spec = SkillSpec(
        variant=variant,
        state_dim=4,
        action_dim=2,
        image=True,
        horizon=1 if flat else 10,
        decoder_layers=5 if flat else 3,  # conf/prior/flat.yaml: 5 (SkillSpec default: 3)
    )
    return SkillPriorModule(spec_dict(spec))


def cpu_seconds() -> tuple[float, float, float]:
    """(wall, busy CPU seconds of the whole machine, CPU seconds of this process).

    The machine's busy time comes from ``/proc/stat`` (Linux; NaN elsewhere), so
    ``(Δbusy − Δown) / Δwall`` is how many cores other processes kept busy meanwhile.
    """
    own = os.times()
    try:
        with open("/proc/stat") as stat:
            ticks = [int(x) for x in stat.readline().split()[1:9]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # − idle, iowait
    except (OSError, ValueError):
        busy = float("nan")
    return time.perf_counter(), busy, own.user + own.system


def others_cores(since: tuple[float, float, float]) -> float:
    """Cores kept busy by other processes since ``since`` (a :func:`cpu_seconds`)."""
    now = cpu_seconds()
    return max(0.0, ((now[1] - since[1]) - (now[2] - since[2])) / (now[0] - since[0]))


class Clock:
    """Wraps callables and sums the wall time spent in them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.seconds.setdefault(name, 0.0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return timed

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)


@dataclass
class Result:
    """What one agent measured (NaN: not measured)."""

    update_ms: float = float("nan")
    split_ms: dict[str, float] = field(default_factory=dict)
    # num_envs: (env steps/s, env share, policy share) of collecting
    collect: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    loop_steps_s: float = float("nan")
    loop_updates_s: float = float("nan")
    overhead_ms: float = float("nan")
    fit_fixed_s: float = float("nan")
    others: float = float("nan")  # cores other processes kept busy during the agent's run
    shapes: str = ""


def shapes_of(batch: dict[str, dict[str, torch.Tensor]]) -> str:
    """``hl{state(256, 4) view(256, 2, 2, 32, 32) ...}`` without next_* and per-row scalars."""
    parts = []
    for level, rows in batch.items():
        fields = " ".join(
            f"{k}{tuple(v.shape)}" for k, v in rows.items() if v.ndim > 1 and "next" not in k
        )
        parts.append(f"{level}{{{fields}}}")
    return " ".join(parts)


def time_updates(
    agent: SkillAgent,
    experience: Experience,
    optimizers: dict[str, dict[str, torch.optim.Optimizer]],
    updates: int,
) -> tuple[float, dict[str, float]]:
    """Median seconds per update (after 3 warm-up updates) and the median split of an update."""
    clock = Clock()
    hl_update, ll_update = agent.hl.update, agent.ll.update if agent.ll is not None else None
    next_value = agent._ll_next_value
    agent.hl.update = clock.wrap("hl", hl_update)
    if agent.ll is not None:
        agent.ll.update = clock.wrap("ll", ll_update)
        agent._ll_next_value = clock.wrap("ll U(s')", next_value)
    times, splits = [], []
    try:
        for i in range(updates + 3):
            batch = experience.sample()
            clock.reset()
            start = time.perf_counter()
            agent.update(batch["hl"], batch.get("ll"), optimizers)
            if i >= 3:
                times.append(time.perf_counter() - start)
                splits.append(dict(clock.seconds))
    finally:  # the instance attributes shadowed the methods; drop them
        del agent.hl.update
        if agent.ll is not None:
            del agent.ll.update
            del agent._ll_next_value
    split = {k: float(np.median([s[k] for s in splits])) for k in splits[0]}
    return float(np.median(times)), split


def time_collection(
    experiences: dict[int, Experience], env_steps: int, rounds: int
) -> dict[int, tuple[float, float, float]]:
    """Env steps/s and env / policy shares of ``collector.step(H)`` per number of envs.

    The configurations are interleaved: ``rounds`` rounds of about ``env_steps`` env steps each;
    medians over rounds.
    """
    clocks = {}
    for n, experience in experiences.items():
        collector = experience.collector
        clock = clocks[n] = Clock()
        collector.envs.step = clock.wrap("env", collector.envs.step)
        collector.hl_act = clock.wrap("policy", collector.hl_act)
        collector.ll_act = clock.wrap("policy", collector.ll_act)
        collector.step(experience.agent.horizon)  # warm-up
    rates: dict[int, list[tuple[float, float, float]]] = {n: [] for n in experiences}
    for _ in range(rounds):
        for n, experience in experiences.items():
            collector, clock = experience.collector, clocks[n]
            calls = max(1, round(env_steps / (n * experience.agent.horizon)))
            clock.reset()
            steps0, start = collector.env_steps, time.perf_counter()
            for _ in range(calls):
                collector.step(experience.agent.horizon)
            elapsed = time.perf_counter() - start
            rates[n].append(
                (
                    (collector.env_steps - steps0) / elapsed,
                    clock.seconds["env"] / elapsed,
                    clock.seconds["policy"] / elapsed,
                )
            )
    for experience in experiences.values():  # drop the wrappers
        del experience.collector.envs.step
        collector = experience.collector
        collector.hl_act, collector.ll_act = experience._hl_act, experience._ll_act
    return {
        n: tuple(float(np.median(col)) for col in zip(*r, strict=True)) for n, r in rates.items()
    }


class EpochEnd(L.Callback):
    """When the (single) training epoch of a fit ended."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.time = time.perf_counter()


def continue_for(module: RLModule, experience: Experience, env_steps: int) -> None:
    """One epoch of ``env_steps`` more env steps, updating from the first one (no warm-up)."""
    total = experience.env_steps + env_steps
    schedule = replace(
        experience.schedule, total_env_steps=total, epoch_env_steps=total, warmup_env_steps=0
    )
    module.schedule = experience.schedule = schedule


@dataclass
class LoopRun:
    """One loop: its wall time (from the first ``next`` of ``batches()`` to the loop's end; with
    Lightning to the epoch's end, as its data fetcher asks for the first batch already during
    the fit's setup), the time spent producing batches (collecting, storing, sampling: the
    ``batches()`` generator) and in ``agent.update``."""

    seconds: float
    collect_s: float
    update_s: float
    env_steps: int
    updates: int
    fit_s: float = float("nan")  # Lightning: the whole ``fit`` call

    @property
    def residual_ms(self) -> float:
        """Milliseconds per update spent outside batch production and updates: the loop's own."""
        return 1e3 * (self.seconds - self.collect_s - self.update_s) / max(self.updates, 1)


def instrumented(module: RLModule, experience: Experience) -> Clock:
    """Time ``experience.batches()`` (each ``next``) and ``agent.update`` of the next loop; the
    wrappers are instance attributes, removed by :func:`uninstrument`."""
    clock = Clock()
    batches = experience.batches
    clock.seconds["collect"] = 0.0

    def timed_batches() -> Iterator[dict[str, dict[str, torch.Tensor]]]:
        stream = batches()
        clock.seconds["first"] = time.perf_counter()
        while True:
            start = time.perf_counter()
            batch = next(stream, None)
            clock.seconds["collect"] += time.perf_counter() - start
            if batch is None:
                return
            yield batch

    experience.batches = timed_batches
    module.agent.update = clock.wrap("update", module.agent.update)
    return clock


def uninstrument(module: RLModule, experience: Experience) -> None:
    del experience.batches
    del module.agent.update


def plain_loop(
    module: RLModule,
    experience: Experience,
    optimizers: dict[str, dict[str, torch.optim.Optimizer]],
    env_steps: int,
) -> LoopRun:
    """``env_steps`` env steps of collect + update in a plain ``for`` loop, no Lightning."""
    continue_for(module, experience, env_steps)
    clock = instrumented(module, experience)
    agent, steps0, updates = module.agent, experience.env_steps, 0
    for batch in experience.batches():
        agent.update(batch["hl"], batch.get("ll"), optimizers)
        updates += 1
    seconds = time.perf_counter() - clock.seconds["first"]
    uninstrument(module, experience)
    return LoopRun(
        seconds,
        clock.seconds["collect"],
        clock.seconds["update"],
        experience.env_steps - steps0,
        updates,
    )


def lightning_loop(module: RLModule, experience: Experience, env_steps: int) -> LoopRun:
    """The same through ``RLModule`` + ``ExperienceStream`` + ``L.Trainer.fit`` (one epoch)."""
    continue_for(module, experience, env_steps)
    epoch_end = EpochEnd()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        callbacks=[epoch_end],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    loader = DataLoader(ExperienceStream(experience), batch_size=None, num_workers=0)
    clock = instrumented(module, experience)
    steps0, updates0 = experience.env_steps, module.updates
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    fit = time.perf_counter() - start
    uninstrument(module, experience)
    return LoopRun(
        epoch_end.time - clock.seconds["first"],
        clock.seconds["collect"],
        clock.seconds["update"],
        experience.env_steps - steps0,
        module.updates - updates0,
        fit,
    )


def bench_agent(name: str, args: argparse.Namespace, out: dict[str, Result]) -> None:
    """Measure one agent (Skill-Critic: also its warm_start update) into ``out``."""
    torch.manual_seed(0)
    since = cpu_seconds()
    prior = build_prior(AGENT_PRIORS[name])
    spec = AgentSpec(name=name, state_dim=4, action_dim=2)
    fill = args.fill_env_steps
    schedule = Schedule(
        total_env_steps=fill,
        epoch_env_steps=fill,
        warmup_env_steps=fill,
        batch_size=args.batch_size,
    )
    module = RLModule(
        agent=asdict(spec),
        schedule=asdict(schedule),
        prior_hparams=None if prior is None else dict(prior.hparams),
        prior=prior,
    )
    agent = module.agent
    experience = Experience(agent, make_vector_env(make_env, 4), module.schedule, seed=0)
    module.attach(experience)
    for _ in experience.batches():  # all warm-up: fills the replay, no updates
        pass
    result = out[name] = Result(shapes=shapes_of(experience.sample()))

    # 1. update time (Skill-Critic: warm_start first, then the hybrid stage of the table)
    optimizers = agent.optimizers()
    if agent.ll is not None:
        agent.set_stage("warm_start")
        ws = out[f"{name}/warm_start"] = Result(shapes=result.shapes)
        ws.update_ms, ws.split_ms = time_updates(agent, experience, optimizers, args.updates)
        ws.update_ms *= 1e3
    agent.set_stage("hybrid")
    result.update_ms, result.split_ms = time_updates(agent, experience, optimizers, args.updates)
    result.update_ms *= 1e3

    # 2. collection, the policy acting (fresh vector envs per num_envs; n = 4 reuses the fill's)
    experiences = {}
    for n in args.num_envs:
        if n == 4:
            experiences[n] = experience
        else:
            experiences[n] = Experience(agent, make_vector_env(make_env, n), schedule, seed=n)
            experiences[n].schedule = replace(schedule, warmup_env_steps=0)
    result.collect = time_collection(experiences, args.collect_env_steps, args.repeats)
    for other in experiences.values():
        if other is not experience:
            other.collector.envs.close()

    # 3. the whole loop, plain and (interleaved) through Lightning; one update per HL transition
    plain: list[LoopRun] = []
    light: list[LoopRun] = []
    for _ in range(args.repeats if args.loop_hl_steps > 0 else 0):
        loop_steps = args.loop_hl_steps * agent.horizon
        plain.append(plain_loop(module, experience, optimizers, loop_steps))
        if args.lightning:
            light.append(lightning_loop(module, experience, loop_steps))
    if plain:
        result.loop_steps_s = float(np.median([r.env_steps / r.seconds for r in plain]))
        result.loop_updates_s = float(np.median([r.updates / r.seconds for r in plain]))
    if light:
        result.overhead_ms = float(
            np.median([r.residual_ms for r in light]) - np.median([r.residual_ms for r in plain])
        )
        result.fit_fixed_s = float(np.median([r.fit_s - r.seconds for r in light]))
    experience.collector.envs.close()
    result.others = others_cores(since)

    if args.profile and agent.ll is not None:
        profile_update(agent, experience, optimizers)


def profile_update(
    agent: SkillAgent,
    experience: Experience,
    optimizers: dict[str, dict[str, torch.optim.Optimizer]],
) -> None:
    """torch.profiler table of a few updates (self CPU time, top ops)."""
    from torch.profiler import ProfilerActivity, profile

    batches = [experience.sample() for _ in range(6)]
    agent.update(batches[0]["hl"], batches[0].get("ll"), optimizers)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[1:]:
            agent.update(batch["hl"], batch.get("ll"), optimizers)
    print(f"\ntorch.profiler, {agent.spec.name} ({agent.stage}), 5 updates:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def fmt(value: float, spec: str) -> str:
    """``format(value, spec)``; NaN (not measured) as a right-aligned "-" of the same width."""
    width = int(re.match(r"[+]?(\d*)", spec).group(1) or 0)
    return f"{'-':>{width}s}" if value != value else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--updates", type=int, default=30, help="timed updates per agent")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[4], help="e.g. 1 4 8")
    parser.add_argument("--fill-env-steps", type=int, default=3000)
    parser.add_argument("--collect-env-steps", type=int, default=800, help="per round")
    parser.add_argument("--loop-hl-steps", type=int, default=60, help="HL transitions per loop")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds / loops")
    parser.add_argument("--no-lightning", dest="lightning", action="store_false")
    parser.add_argument("--profile", action="store_true", help="torch.profiler of skill_critic")
    parser.add_argument("--quick", action="store_true", help="small counts: checks it runs")
    args = parser.parse_args()
    if args.quick:
        args.updates, args.fill_env_steps, args.collect_env_steps = 3, 400, 80
        args.loop_hl_steps, args.repeats = 4, 1
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as skillcritic-rl does
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*max_epochs.*")
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # frozen copies
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")

    probe = make_env()
    obs, _ = probe.reset(seed=0)
    obs_shapes = {k: (tuple(v.shape), str(v.dtype)) for k, v in obs.items()}
    probe.close()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"mujoco {mujoco.__version__}, lightning {L.__version__}, gymnasium "
        f"{gymnasium.__version__}"
    )
    print(
        f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cpus, load average "
        f"{os.getloadavg()[0]:.2f}; {ENV_ID} task={TASK} obs {obs_shapes}; batch "
        f"{args.batch_size}; replay filled with {args.fill_env_steps} env steps (4 envs)"
    )

    since = cpu_seconds()
    time.sleep(1.0)
    if (busy := others_cores(since)) > 0.2:
        print(
            f"warning: other processes keep {busy:.1f} cores busy: timings will be noisy, and "
            "torch's OpenMP threads stall whenever one is descheduled (try --threads 1)"
        )
    results: dict[str, Result] = {}
    start = time.perf_counter()
    for name in args.agents:
        bench_agent(name, args, results)
    elapsed = time.perf_counter() - start

    header = f"{'agent':24s} {'update ms':>9s}"
    for n in args.num_envs:
        header += f" {f'steps/s n={n}':>13s} {'env/pol/rest %':>14s}"
    header += f" {'loop steps/s':>12s} {'loop upd/s':>10s}"
    if args.lightning:
        header += f" {'L ms/upd':>8s}"
    header += f" {'others':>6s}"
    print(f"\n{header}")
    for name, r in results.items():
        row = f"{name:24s} {fmt(r.update_ms, '9.1f')}"
        for n in args.num_envs:
            if n in r.collect:
                rate, env, pol = r.collect[n]
                shares = f"{100 * env:.0f}/{100 * pol:.0f}/{100 * (1 - env - pol):.0f}"
                row += f" {rate:13.0f} {shares:>14s}"
            else:
                row += f" {'-':>13s} {'-':>14s}"
        row += f" {fmt(r.loop_steps_s, '12.0f')} {fmt(r.loop_updates_s, '10.1f')}"
        if args.lightning:
            row += f" {fmt(r.overhead_ms, '+8.2f')}"
        print(f"{row} {fmt(r.others, '6.2f')}")

    print("\nupdate split (median ms): ")
    for name, r in results.items():
        if len(r.split_ms) > 1:
            print(f"  {name:24s} " + ", ".join(f"{k} {1e3 * v:.1f}" for k, v in r.split_ms.items()))
    if args.lightning:
        fixed = {k: r.fit_fixed_s for k, r in results.items() if r.fit_fixed_s == r.fit_fixed_s}
        print(
            "Lightning fit fixed cost (setup + teardown outside the epoch, s): "
            + ", ".join(f"{k} {v:.2f}" for k, v in fixed.items())
        )
    print("batch shapes (B, ...) per level:")
    for name, r in results.items():
        if "/" not in name:
            print(f"  {name:13s} {r.shapes}")
    print(
        "others: cores other processes kept busy during the agent's measurements (0 = quiet); "
        "L ms/upd: Lightning's per-update cost outside collection and agent.update, minus the "
        "plain loop's"
    )
    print(f"done in {elapsed:.0f} s, load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
