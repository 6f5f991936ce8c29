#!/usr/bin/env bash
# Downloads, on a machine with network, the wheels the calibration kit installs on a GPU host that lacks them
# (Python 3.12, x86_64 Linux): the same versions CI tests with. They land in bench/gpu/wheels/ (git-ignored);
# carry that folder to the GPU host with the repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$here/wheels" simpy==4.1.2 pydantic==2.13.4 pydantic_core==2.46.4 annotated_types==0.7.0 \
  typing_inspection==0.4.2 typing_extensions==4.15.0
ls -l "$here/wheels"
