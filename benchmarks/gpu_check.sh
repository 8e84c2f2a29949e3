#!/usr/bin/env bash
# The GPU-sized benchmark cases, for whenever a GPU is available (under 8 minutes on one GPU):
# the step cost of every method on the 32x32 DCGAN at batch 64 (ours against the eager loop), the
# FID feature-extraction rates, and the Semi-StyleGAN networks' images/s at 256 and 1024. Prints the tables; results in benchmarks/results/*_cuda.json.
#   bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0), 'torch', torch.__version__)"
python -m benchmarks.step_cost --device cuda --sizes dcgan ring256 --repeats 5 --iterations 50
python -m benchmarks.fid_cost --device cuda
python -m benchmarks.stylegan_cost --device cuda --cases 256 1024
