"""The `slurm` fixture: the single-node SLURM test cluster (tests/slurm/up.sh), up for the session.

It skips the tests, with the reason, where this machine cannot run the cluster (not root, no
apt-get) or the cluster does not come up; under CI (CI=true, or IRNO_REQUIRE_SLURM=1) a cluster
that fails to come up on a machine that can run it fails the tests instead. The cluster is taken
down at the end of the session if this session brought it up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_harness import SlurmCluster

HERE = Path(__file__).resolve().parent


def _required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("IRNO_REQUIRE_SLURM") == "1"


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """The test cluster, up for the session (down again afterwards if this session started it)."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root: tests/slurm/up.sh installs packages and starts daemons")
    if shutil.which("apt-get") is None:
        pytest.skip("the SLURM test cluster needs Debian (apt-get) for tests/slurm/up.sh")
    up = subprocess.run([str(HERE / "up.sh")], capture_output=True, text=True, timeout=900)
    if up.returncode != 0:
        reason = f"the SLURM test cluster did not come up (tests/slurm/up.sh exit {up.returncode}): {up.stderr.strip()}"
        if up.returncode == 2 or not _required():
            pytest.skip(reason)
        pytest.fail(f"{reason}\n{up.stdout}")
    started_here = "already up" not in up.stdout
    yield SlurmCluster()
    if started_here:
        subprocess.run([str(HERE / "down.sh")], capture_output=True, timeout=120)


def pytest_collection_modifyitems(items) -> None:
    """Every test here starts SLURM jobs (minutes): all of them are slow, out of the fast loop."""
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)
