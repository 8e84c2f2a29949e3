#!/usr/bin/env bash
# Whenever a GPU is available, in one call (at most 6.25 minutes: each part has a time limit of its own; the device tool allows 10 a call):
#   1. correctness first: python -m benchmarks.gpu_check, every check printing PASS or FAIL (every method's
#      step with its statistics all-reduced through NCCL, spectra at a run's start, optimistic and CGD
#      resumed on the GPU, the compiled step with CUDA graphs, bf16, an image run with EMA and FID/KID, a
#      compiled sweep, torchrun with game_ddp, deterministic mode, TF32 kept out of the second-order step,
#      the 16-mixed refusal; with two GPUs visible also 2 processes = 1, a sweep, FID and a failing process);
#   2. then the timings: every method's step on the 32x32 DCGAN and the JARE paper's 4 x 256 networks (ours
#      eager against the plain loop), FID feature extraction, the Semi-StyleGAN networks.
# Each part has a time limit of its own, so that one slow part cannot take the others' time. Results in
# benchmarks/results/gpu_check.json and *_cuda.json; the exit status is the checks' (timings do not fail it).
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0), 'x', torch.cuda.device_count(), '| torch', torch.__version__)" || exit 1
timeout 240 python -m benchmarks.gpu_check
checks=$?
timeout 60 python -m benchmarks.step_cost --device cuda --sizes dcgan ring256 --repeats 3 --iterations 30 \
    || echo "step_cost: did not finish (exit $?)"
timeout 45 python -m benchmarks.fid_cost --device cuda || echo "fid_cost: did not finish (exit $?)"
timeout 30 python -m benchmarks.stylegan_cost --device cuda --cases 256 1024 --repeats 2 || echo "stylegan_cost: did not finish (exit $?)"
exit "$checks"
