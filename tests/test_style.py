"""The code style the project keeps (pyproject.toml's [tool.ruff]): every file of the repository
formatted and free of lint findings, as `ruff format --check .` and `ruff check .` say."""

from __future__ import annotations

import subprocess
import sys

import pytest
from workflow_copy import ROOT


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_finds_nothing(command):
    run = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, f"ruff {' '.join(command)}:\n{run.stdout[-6000:]}{run.stderr[-2000:]}"
