#!/usr/bin/env bash
# For bench/gpu.py on a GPU host without network access whose Python (3.12) has PyTorch
# but not the study's other packages: downloads the wheels it lacks into .whl/ (~43 MB:
# polars 1.20, the last release in one wheel, instead of polars 2's 55 MB runtime; the
# tests pass on both), and copies sp500_5yr into .gpudata/ and cn_sse_mainboard into
# .gpudata-cn/ (all three git-ignored), one run each. bench/gpu.py's docstring gives the
# commands on the GPU host.
#
#     bash bench/gpu_prepare.sh [DATA_DIR]        # DATA_DIR: default ../shared/data
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data}"
rm -rf .whl .gpudata .gpudata-cn && mkdir -p .whl .gpudata .gpudata-cn
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    optuna==5.1.0 alembic==1.20.1 colorlog==6.12.0 Mako==1.4.3 SQLAlchemy==2.1.9 \
    polars==1.20.0 optuna-dashboard==0.21.0 bottle==0.13.5
cp "$data/sp500_5yr.parquet" .gpudata/
cp "$data/cn_sse_mainboard.parquet" .gpudata-cn/
du -sh .whl .gpudata .gpudata-cn
