"""Devices: which device a command computes on, and the fail-fast rule of a job given GPUs that
finds no usable CUDA (docs/slurm.md, "GPUs and the NVIDIA driver")."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import socket
import subprocess
from pathlib import Path

from irno import IrnoError, log

# Environment variables that say this process was given GPUs. SLURM sets the first two in a job
# with GPUs (indices; a count); SLURM and other schedulers set CUDA_VISIBLE_DEVICES.
GPU_ALLOTMENT_VARIABLES = ("SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE", "CUDA_VISIBLE_DEVICES")


# The oldest NVIDIA driver branch (Linux) that runs each CUDA major version: NVIDIA's CUDA Toolkit
# release notes, table "CUDA Toolkit and Minimum Required Driver Version for CUDA Minor Version
# Compatibility" (11.x: 450.80.02, 12.x: 525.60.13, 13.x: 580). PyTorch's wheels bring their own
# CUDA runtime and libraries, so the driver is all they need of the machine.
CUDA_MIN_DRIVER = {11: 450, 12: 525, 13: 580}


NVIDIA_DRIVER_FILE = Path("/proc/driver/nvidia/version")


PYTORCH_PREVIOUS_VERSIONS = "https://pytorch.org/get-started/previous-versions/"


class CudaUnavailableError(IrnoError):
    """CUDA was asked for, or this job was given GPUs, but torch can use no CUDA device."""


def gpu_allotment() -> tuple[str, str] | None:
    """(variable, value) of the first environment variable that says this process was given GPUs."""
    for name in GPU_ALLOTMENT_VARIABLES:
        value = os.environ.get(name, "").strip()
        # "-1" is the usual way of hiding every GPU from CUDA; SLURM_GPUS_ON_NODE is a count.
        if value and value != "-1" and not (name == "SLURM_GPUS_ON_NODE" and value == "0"):
            return name, value
    return None


def nvidia_driver_version() -> str | None:
    """The NVIDIA kernel driver's version (e.g. "580.65.06"), found without CUDA; None without one."""
    with contextlib.suppress(OSError):
        # "NVRM version: NVIDIA UNIX [Open] Kernel Module [for x86_64]  580.65.06  Release Build ..."
        found = re.search(r"Kernel Module.*?\s(\d+\.\d+(?:\.\d+)*)\s", NVIDIA_DRIVER_FILE.read_text())
        if found:
            return found.group(1)
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = result.stdout.split()
    return lines[0] if result.returncode == 0 and lines else None


def no_cuda_message(why: str) -> str:
    """One line: `why` CUDA is expected, torch's CUDA build, the NVIDIA driver found, and what to do."""
    import torch

    cuda, driver = torch.version.cuda, nvidia_driver_version()
    problem = f"{why}, but torch finds no usable CUDA device on {socket.gethostname()}"
    cpu = (
        "set `device: cpu` in the config (top-level: every step; or the step's own `device` key) "
        "to run on the CPU deliberately"
    )
    release = torch.__version__.split("+")[0]
    if cuda is None:
        return (
            f"{problem}: torch {torch.__version__} is built without CUDA. Install a CUDA build of torch {release} "
            f"({PYTORCH_PREVIOUS_VERSIONS}), or {cpu}."
        )
    needed = CUDA_MIN_DRIVER.get(int(cuda.split(".")[0]))
    build = f"torch {torch.__version__} is built for CUDA {cuda}" + (
        f", which needs an NVIDIA driver of version {needed} or newer" if needed else ""
    )
    if driver is None:
        return (
            f"{problem}: {build}, and no NVIDIA driver was found (no {NVIDIA_DRIVER_FILE}, no nvidia-smi). "
            f"Run on a node with an NVIDIA GPU and its driver (`nvidia-smi` shows both), or {cpu}."
        )
    branch = int(driver.split(".")[0])
    if needed and branch >= needed:
        return (
            f"{problem}: {build}, and driver {driver} is new enough, so this process sees no GPU. "
            f"Check `nvidia-smi` and CUDA_VISIBLE_DEVICES inside the job, or {cpu}."
        )
    runnable = [major for major, oldest in CUDA_MIN_DRIVER.items() if oldest <= branch]
    if not runnable:
        return f"{problem}: {build}, and the driver found is {driver}. Ask for a newer NVIDIA driver, or {cpu}."
    major = max(runnable)
    try:
        vision = f" torchvision=={importlib.metadata.version('torchvision').split('+')[0]}"
    except importlib.metadata.PackageNotFoundError:
        vision = ""
    return (
        f"{problem}: {build}, and the driver found is {driver}. Install a build of torch {release} for CUDA "
        f"{major}.x, which this driver runs: pip install torch=={release}{vision} --index-url "
        f"https://download.pytorch.org/whl/cu{major}N, with a cu{major}N that {PYTORCH_PREVIOUS_VERSIONS} lists "
        f"for torch {release}; or {cpu}."
    )


def select_device(preference: str = "auto"):
    """The torch device of `preference`: "cpu", "cuda", "cuda:N" or "auto".

    "cpu" is the CPU, deliberately, also in a job with GPUs. "cuda" and "cuda:N" need a usable
    CUDA device. "auto" takes CUDA when usable; without it, a job that was given GPUs
    (`gpu_allotment`) must not quietly train on the CPU for days, so it fails too, and elsewhere
    (a local run) it takes the CPU. The failure, `CudaUnavailableError`, names torch's CUDA, the
    driver found and what to do; the CLI chooses the device before it reads any data.
    """
    import torch

    preference = str(preference)
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        allotment = gpu_allotment()
        if allotment is None:
            return torch.device("cpu")
        name, value = allotment
        raise CudaUnavailableError(
            no_cuda_message(f"this job was given GPUs ({name}={value}) and `device: auto` wants them")
        )
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise IrnoError(f"device {preference!r} is not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CudaUnavailableError(no_cuda_message(f"the config asks for device {preference!r}"))
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise IrnoError(
                f"device {preference!r}: this process sees {torch.cuda.device_count()} CUDA device(s) "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
            )
    return device


def log_device(device, precision: str) -> None:
    """Log where a command computes, as one of its first lines: the device (the GPU's name, torch's
    CUDA, the NVIDIA driver; or the CPU's torch threads) and `precision` (e.g. "fp32", "bf16 autocast")."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        log.info(
            "device cuda:%d (%s), torch %s for CUDA %s, NVIDIA driver %s; precision %s",
            index, torch.cuda.get_device_name(index), torch.__version__, torch.version.cuda,
            nvidia_driver_version() or "not found", precision,
        )  # fmt: skip
    else:
        log.info(
            "device %s (%d torch threads), torch %s; precision %s",
            device, torch.get_num_threads(), torch.__version__, precision,
        )  # fmt: skip
