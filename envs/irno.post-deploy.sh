#!/usr/bin/env bash
# Runs once, inside the freshly created environment, from Snakemake's working directory (the
# repository root): puts this package's `irno` command into the environment.
set -euo pipefail
pip install --no-deps -e .
