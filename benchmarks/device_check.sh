#!/usr/bin/env bash
# The GPU checks and figures, as one script for a CUDA machine: `bash benchmarks/device_check.sh [OUT_DIR]`.
#
# 1. tests/test_cuda.py (skipped everywhere without a GPU, CI included);
# 2. exact evaluation ÷ FP32 forward on the device and on this machine's CPU (benchmarks.eval_overhead);
# 3. the cold first reset of EfficientNet-Lite0 and of ResNet50 (random weights) on the device;
# 4. worker processes on this machine's cores (ResNet50 cold start, 1 and 4 workers, on the CPU).
# Each step has its own time limit and the whole script a deadline (DEADLINE_S, default 420 s), so a slow
# step costs only its own figures. Results go to OUT_DIR (default runs/device_check); MPQ_GYM_DATA must
# name the ImageNet folder, and PY the Python that has torch with CUDA (default python3).
set -u
OUT_DIR=${1:-runs/device_check}
mkdir -p "$OUT_DIR"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 MPQ_GYM_CACHE=${MPQ_GYM_CACHE:-/tmp/mpq_device_cache}
END=$(( $(date +%s) + ${DEADLINE_S:-420} ))

step() {  # step NAME LIMIT_S COMMAND...: run COMMAND under min(LIMIT_S, time left), output to OUT_DIR/NAME.log
    local name=$1 limit=$2; shift 2
    local left=$(( END - $(date +%s) ))
    (( left < limit )) && limit=$left
    if (( limit < 20 )); then echo "== $name: skipped, deadline reached" | tee -a "$OUT_DIR/summary.txt"; return; fi
    local start=$(date +%s)
    timeout "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
    echo "== $name: rc=$? in $(( $(date +%s) - start )) s (limit $limit s)" | tee -a "$OUT_DIR/summary.txt"
    tail -n 25 "$OUT_DIR/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/summary.txt"
$PY -c "import sys, os, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(), \
'cpus', os.cpu_count(), 'threads', torch.get_num_threads())" | tee -a "$OUT_DIR/summary.txt"

step test_cuda 120 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py
for device in cuda cpu; do
    step "eval_overhead_$device" 90 $PY -m benchmarks.eval_overhead --workload efficientnet_lite0 --split search \
        --repeats 5 --device "$device"
done
step first_reset_lite0_cuda 120 $PY -m benchmarks.first_reset --cases cold --env-kwargs device=cuda \
    --out "$OUT_DIR/first_reset_lite0_cuda.json"
step first_reset_r50_cuda 90 $PY -m benchmarks.first_reset --env MixedPrecision-ResNet50-v0 --cases cold \
    --env-kwargs random_weights=true sensitivity_images=64 device=cuda --out "$OUT_DIR/first_reset_r50_cuda.json"
step first_reset_r50_workers 240 $PY -m benchmarks.first_reset --env MixedPrecision-ResNet50-v0 --cases cold \
    --workers 1 4 --env-kwargs random_weights=true sensitivity_images=64 device=cpu \
    --out "$OUT_DIR/first_reset_r50_workers.json"
