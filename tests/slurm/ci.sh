#!/usr/bin/env bash
# CI entry for the SLURM tests: bring the test cluster up (on a fresh machine this installs the
# Debian packages), run the tests marked `slurm` through it, take it down again if this script
# brought it up. Prints how long each phase took. Run as root from anywhere:
#
#   tests/slurm/ci.sh [extra pytest arguments]
#
# PYTHON names the interpreter with the project's dependencies (default: .venv/bin/python of the
# checkout if there is one, else python3). A cluster that does not come up fails the run: under
# IRNO_REQUIRE_SLURM=1 the tests fail instead of skipping.
set -euo pipefail

cd "$(dirname "$0")/../.."
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f", b - a}'; }

start=$(now)
up_out=$(tests/slurm/up.sh) || { echo "$up_out"; echo "ci.sh: the SLURM test cluster did not come up" >&2; exit 1; }
echo "$up_out"
up_seconds=$(since "$start")
if [[ $up_out != *"already up"* ]]; then
    trap 'tests/slurm/down.sh' EXIT
fi

tests_start=$(now)
status=0
IRNO_REQUIRE_SLURM=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" \
    "$PYTHON" -m pytest -m slurm tests/slurm -v --durations=0 -p no:cacheprovider "$@" || status=$?
echo "ci.sh: cluster up in ${up_seconds} s, SLURM tests in $(since "$tests_start") s," \
    "$(since "$start") s in all (pytest exit $status)"
exit "$status"
