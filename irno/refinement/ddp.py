"""Data-parallel training of Phi: joining torchrun's process group, and relaunching a training as
N processes on this node (``irno train --nproc N``). How the batches are shared between the
processes, and why the gradient is still exactly the global batch's: docs/training.md.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import torch
import torch.distributed as dist

from irno import log


@contextlib.contextmanager
def process_group(device_type: str) -> Iterator[tuple[int, int]]:
    """(rank, world_size); joins the process group torchrun describes when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield 0, 1
        return
    if dist.is_initialized():
        yield dist.get_rank(), dist.get_world_size()
        return
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The command that runs ``irno <argv>`` as `nproc` processes under torchrun on this node.

    The ``--nproc N`` option is left out of the processes' command line: torchrun's parser would
    reject it as an ambiguous abbreviation of its own ``--nproc-per-node``.
    """
    args = []
    drop_next = False
    for arg in argv:
        if drop_next or arg.startswith("--nproc="):
            drop_next = False
            continue
        drop_next = arg == "--nproc"
        if not drop_next:
            args.append(arg)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "irno.cli",
        *args,
    ]


def relaunch_with_torchrun(nproc: int, argv: list[str]) -> int:
    """Run ``irno <argv>`` as `nproc` DDP processes; the exit status (non-zero if any failed).

    Each process gets its share of the job's CPU threads: OMP_NUM_THREADS (which Snakemake sets to
    a job's threads) divided by `nproc`, as torchrun would otherwise hand all of them to each.
    """
    cmd = torchrun_command(nproc, argv)
    env = dict(os.environ)
    if env.get("OMP_NUM_THREADS", "").isdigit():
        env["OMP_NUM_THREADS"] = str(max(1, int(env["OMP_NUM_THREADS"]) // nproc))
    threads = env.get("OMP_NUM_THREADS", "torchrun's default")
    log.info("launching %d training processes (threads each: %s): %s", nproc, threads, " ".join(cmd))
    return subprocess.call(cmd, env=env)


def all_reduce(t: torch.Tensor, world: int, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """`t` reduced in place over the `world` processes (a no-op for one process)."""
    if world > 1:
        dist.all_reduce(t, op=op)
    return t
