"""Devices: a GPU job without usable CUDA fails at once, saying why and what to do; every command
logs its device and precision first. This machine has no GPU, which is the case under test."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest
import torch

import irno.device
from irno import IrnoError
from irno.device import (
    CUDA_MIN_DRIVER,
    GPU_ALLOTMENT_VARIABLES,
    CudaUnavailableError,
    gpu_allotment,
    log_device,
    nvidia_driver_version,
    select_device,
)
from irno.files import write_yaml
from irno.settings import to_dict

# What the tests below assume of this machine.
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the behaviour without usable CUDA")


@pytest.fixture
def no_gpus_allotted(monkeypatch):
    for name in GPU_ALLOTMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def driver(monkeypatch):
    """Set the NVIDIA driver version the message sees (None: no driver)."""

    def set_driver(version: str | None) -> None:
        monkeypatch.setattr(irno.device, "nvidia_driver_version", lambda: version)

    return set_driver


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"SLURM_JOB_GPUS": "0,1"}, ("SLURM_JOB_GPUS", "0,1")),
        ({"SLURM_GPUS_ON_NODE": "2"}, ("SLURM_GPUS_ON_NODE", "2")),
        ({"SLURM_GPUS_ON_NODE": "0"}, None),
        ({"CUDA_VISIBLE_DEVICES": "0"}, ("CUDA_VISIBLE_DEVICES", "0")),
        ({"CUDA_VISIBLE_DEVICES": ""}, None),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, None),  # every GPU hidden, deliberately
    ],
)
def test_gpus_are_allotted_by_slurm_or_cuda_visible_devices(no_gpus_allotted, monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert gpu_allotment() == expected


def test_a_local_run_without_cuda_keeps_the_cpu(no_gpus_allotted):
    assert select_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("variable", GPU_ALLOTMENT_VARIABLES)
def test_cpu_is_the_cpu_also_in_a_gpu_job(no_gpus_allotted, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    assert select_device("cpu") == torch.device("cpu")


def test_auto_in_a_gpu_job_without_cuda_names_the_allotment_torch_the_driver_and_the_fix(
    no_gpus_allotted, monkeypatch, driver
):
    monkeypatch.setenv("SLURM_JOB_GPUS", "3")
    driver("550.54.15")  # runs CUDA 12.x
    with pytest.raises(CudaUnavailableError) as error:
        select_device("auto")
    message = str(error.value)
    assert "\n" not in message  # the CLI prints it as one line
    release, needed = torch.__version__.split("+")[0], CUDA_MIN_DRIVER[int(torch.version.cuda.split(".")[0])]
    for part in (
        "this job was given GPUs (SLURM_JOB_GPUS=3)",
        f"torch {torch.__version__} is built for CUDA {torch.version.cuda}",
        f"needs an NVIDIA driver of version {needed} or newer",
        "the driver found is 550.54.15",
        f"Install a build of torch {release} for CUDA 12.x, which this driver runs",
        f"pip install torch=={release} torchvision==",
        "--index-url https://download.pytorch.org/whl/cu12N, with a cu12N that "
        f"https://pytorch.org/get-started/previous-versions/ lists for torch {release}",
        "`device: cpu` in the config (top-level: every step; or the step's own `device` key)",
    ):
        assert part in message, part


@pytest.mark.parametrize(
    ("found", "advice"),
    [
        (None, "no NVIDIA driver was found"),
        ("418.39", "Ask for a newer NVIDIA driver"),  # older than CUDA 11's
        ("999.1", "is new enough, so this process sees no GPU"),
    ],
)
def test_the_advice_follows_the_driver_found(no_gpus_allotted, monkeypatch, driver, found, advice):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    driver(found)
    with pytest.raises(CudaUnavailableError, match="run on the CPU deliberately") as error:
        select_device("auto")
    assert advice in str(error.value) and "--index-url" not in str(error.value)


@pytest.mark.parametrize("preference", ["cuda", "cuda:1"])
def test_cuda_asked_for_without_cuda_fails_also_outside_a_job(no_gpus_allotted, driver, preference):
    driver(None)
    with pytest.raises(CudaUnavailableError, match=f"the config asks for device '{preference}'"):
        select_device(preference)


def test_an_unknown_device_is_named():
    with pytest.raises(IrnoError, match="device 'gpu' is not a device"):
        select_device("gpu")


@pytest.mark.parametrize(
    "line",
    [
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023\n",
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.129.03  Release Build  (dvs-builder@U16)\n",
    ],
)
def test_the_driver_version_is_read_from_the_kernel_module(monkeypatch, tmp_path, line):
    (tmp_path / "version").write_text(line + "GCC version:  gcc version 12.2.0\n")
    monkeypatch.setattr(irno.device, "NVIDIA_DRIVER_FILE", tmp_path / "version")
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: the file alone
    assert nvidia_driver_version() == "535.129.03"


def test_the_driver_version_falls_back_on_nvidia_smi_and_else_is_none(monkeypatch, tmp_path):
    monkeypatch.setattr(irno.device, "NVIDIA_DRIVER_FILE", tmp_path / "no-such-file")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nvidia_driver_version() is None
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\n[ "$1" = --query-gpu=driver_version ] && echo 550.54.15 && echo 550.54.15\n')
    smi.chmod(0o755)
    assert nvidia_driver_version() == "550.54.15"


def test_the_device_line_on_the_cpu_names_the_threads_and_the_precision(caplog):
    with caplog.at_level(logging.INFO, logger="irno"):
        log_device(torch.device("cpu"), "fp32")
    assert caplog.messages == [
        f"device cpu ({torch.get_num_threads()} torch threads), torch {torch.__version__}; precision fp32"
    ]


def test_the_device_line_on_a_gpu_names_it_torchs_cuda_and_the_driver(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"NVIDIA H100 80GB HBM3 #{index}")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(irno.device, "nvidia_driver_version", lambda: "580.65.06")
    with caplog.at_level(logging.INFO, logger="irno"):
        log_device(torch.device("cuda"), "bf16 autocast")
    assert caplog.messages == [
        f"device cuda:1 (NVIDIA H100 80GB HBM3 #1), torch {torch.__version__} for CUDA {torch.version.cuda}, "
        "NVIDIA driver 580.65.06; precision bf16 autocast"
    ]


# ----------------------------------------------------------------------------- the real commands


def _commands(root, stores, caches, base) -> dict[str, list[str]]:
    """Every device-using `irno` command on the tiny data, with `device: auto` settings."""
    base_cfg, model_dir = base
    write_yaml(root / "base.yaml", to_dict(base_cfg) | {"device": "auto"})
    settings = {"network": {"base_channels": 4, "depth": 2}, "train": {"K": 2, "epochs": 1, "device": "auto"}}
    write_yaml(root / "settings.yaml", settings)
    write_yaml(root / "eval.yaml", {"device": "auto"})
    base_yaml = ["--config", str(root / "base.yaml")]
    train = ["train", "--config", str(root / "settings.yaml"), "--out", str(root / "out")]
    for split in ("train", "valid"):
        train += [f"--{split}", str(stores[split]), f"--{split}-cache", str(caches[split])]
    return {
        "base train": ["base", "train", *base_yaml, "--train", str(stores["train"]), "--valid", str(stores["valid"]),
                       "--out", str(root / "out")],
        "base check": ["base", "check", *base_yaml, "--model", str(model_dir), "--valid", str(stores["valid"]),
                       "--out", str(root / "out" / "check.json")],
        "base cache": ["base", "cache", *base_yaml, "--model", str(model_dir), "--store", str(stores["test"]),
                       "--out", str(root / "out")],
        "train": train,
        "train --nproc 2": [*train, "--nproc", "2"],
        # No checkpoint at all: the device is chosen before anything is read.
        "evaluate": ["evaluate", "--config", str(root / "eval.yaml"), "--checkpoint", str(root / "no.pt"),
                     "--store", str(stores["test"]), "--cache", str(caches["test"]), "--out", str(root / "out"),
                     "--dataset", "d", "--base", "b", "--experiment", "e"],
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "variable"),
    [
        ("base train", "SLURM_JOB_GPUS"),
        ("base check", "SLURM_GPUS_ON_NODE"),
        ("base cache", "CUDA_VISIBLE_DEVICES"),
        ("train", "SLURM_JOB_GPUS"),
        ("train --nproc 2", "SLURM_GPUS_ON_NODE"),
        ("evaluate", "CUDA_VISIBLE_DEVICES"),
    ],
)
def test_every_command_in_a_gpu_job_without_cuda_exits_at_once(
    tiny_stores, tiny_caches, tiny_base, tmp_path, command, variable
):
    args = _commands(tmp_path, tiny_stores, tiny_caches, tiny_base)[command]
    env = {k: v for k, v in os.environ.items() if k not in GPU_ALLOTMENT_VARIABLES} | {variable: "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "irno.cli", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    assert done.returncode == 1, done.stderr
    error = done.stderr.strip().splitlines()
    assert error[-1].startswith(f"irno {command.split()[0]}: error: this job was given GPUs ({variable}=1)")
    assert "torch finds no usable CUDA device" in error[-1] and "`device: cpu`" in error[-1]
    assert len(error) == 1  # nothing ran before the check: no log line, no torchrun
    assert not (tmp_path / "out").exists()
    assert seconds < 60, f"{command}: {seconds:.1f} s"  # 2.3 to 3.2 s on a 2-core machine, mostly importing torch
