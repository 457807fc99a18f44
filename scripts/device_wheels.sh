#!/usr/bin/env bash
# Download into .whl/ the wheels brainnet needs on the GPU machine beyond what its image holds.
#
# The GPU machine (device tool, kind nvidia-h200) reaches no package registry. Its python3 (3.12)
# already has torch, pytorch-lightning, timm, torchmetrics, h5py, scipy, scikit-learn, pandas,
# matplotlib, einops, pillow, tqdm, joblib, lxml, requests, packaging and pytest (see the device
# tool's KINDS.md). brainnet needs, beyond those, the packages in PACKAGES below; every one of
# their own requirements is already in the image. Keep this list in step with pyproject.toml.
#
#   scripts/device_wheels.sh            # -> .whl/*.whl (ignored by git; name .whl in the run's carry)
#
# benchmarks/device_check.py --install-wheels .whl installs them on the GPU machine with
# `pip install --no-index --no-deps --target`, and puts the target and the source tree on sys.path.
set -euo pipefail

PY=${PYTHON:-python3}
DEST=${DEST:-.whl}
# name==version, the versions of the development environment
PACKAGES=(
  "nibabel==5.4.2"
  "nilearn==0.14.1"
  "himalaya==0.4.11"
)

mkdir -p "$DEST"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
  -d "$DEST" "${PACKAGES[@]}"
ls -l "$DEST"
du -sh "$DEST"
