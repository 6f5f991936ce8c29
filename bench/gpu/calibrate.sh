#!/usr/bin/env bash
# The GPU calibration kit (bench/gpu/README.md): profiles, validation at 20/50/80% load, calibration.md.
#   bench/gpu/calibrate.sh --device cuda --out calib            # on a CUDA host, about 8 minutes
#   bench/gpu/calibrate.sh --device cpu --quick --out /tmp/c    # dry run
# Runs from the repository as it is (no install): simpy and pydantic come from bench/gpu/wheels when missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" -m profiler.calibrate "$@"
