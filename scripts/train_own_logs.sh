#!/bin/bash
# "Train on your own logs" (README): train on a plain log file without labels, score a new log, serve, stream it in.
# Usage: bash scripts/train_own_logs.sh [WORK_DIR]; each step is timed (WORK_DIR/times.txt). Needs bc and curl.
cd "$(dirname "$0")/.."
W=${1:-/tmp/logllm-own-logs}; mkdir -p "$W"; rm -rf runs/my-system "$W/redis" "$W/times.txt"
step() { local name=$1; shift; local t0=$(date +%s.%N); "$@"; local rc=$?; local t1=$(date +%s.%N); printf 'STEP %s rc %s %.1f s\n' "$name" $rc $(echo "$t1 - $t0" | bc) | tee -a $W/times.txt >&2; }
echo "load before: $(cat /proc/loadavg)" | tee $W/times.txt
# 0. your logs: a plain file as the system wrote it, no labels (here: 2,000 real Thunderbird lines)
head -n 1600 ../shared/data/Thunderbird/Thunderbird_2k.log > $W/my-system.log
tail -n 400 ../shared/data/Thunderbird/Thunderbird_2k.log > $W/today.log
# a few lines this system never wrote, spliced into the middle of today's log (lines 201-203)
{ head -n 200 $W/today.log
  echo '- 1131573000 2005.11.09 dn228 Nov 9 14:00:00 dn228/dn228 kernel: EXT3-fs error (device sda5): ext3_journal_start_sb: Detected aborted journal'
  echo '- 1131573000 2005.11.09 dn228 Nov 9 14:00:00 dn228/dn228 kernel: Remounting filesystem read-only'
  echo '- 1131573001 2005.11.09 dn228 Nov 9 14:00:01 dn228/dn228 sshd[4242]: fatal: Write failed: No space left on device'
  tail -n 200 $W/today.log; } > $W/today-with-faults.log
# 1. train without labels
step train .venv/bin/logllm train --dataset text --data $W/my-system.log --log-format thunderbird \
  --window-size 20 --window-step 20 --unlabeled --output runs/my-system --seed 42 --stage1-samples 96 \
  --max-train-samples 256 --stage2-epochs 1 --stage3-epochs 1 --lr 5e-4 --batch-size 8 --micro-batch-size 4 \
  > $W/train.log 2>&1
grep -E "^data:|^unlabeled:|^threshold|^fpr |^fp |^tn |checkpoint written" $W/train.log
# 2. score today's log offline
step score .venv/bin/logllm score $W/today-with-faults.log --checkpoint runs/my-system --log-format thunderbird \
  --window-size 20 --window-step 20 > $W/score.tsv 2> $W/score.err
cut -f1-5 $W/score.tsv | awk -F'\t' 'NR==1 || $4=="anomalous"'
echo "windows: $(($(wc -l < $W/score.tsv) - 1)), anomalous: $(awk -F'\t' '$4=="anomalous"' $W/score.tsv | wc -l)"
# 3. serve it (embedded Redis) and stream today's log in
.venv/bin/logllm serve --checkpoint runs/my-system --log-format thunderbird --window-mode fixed --window-size 20 \
  --window-step 20 --novelty-warmup-s 0 --port 8011 --redis-data-dir $W/redis > $W/serve.log 2>&1 &
SERVE=$!
t0=$(date +%s.%N); until curl -sf localhost:8011/health/ready > /dev/null; do sleep 0.5; done; t1=$(date +%s.%N)
printf 'STEP serve-ready rc 0 %.1f s\n' $(echo "$t1 - $t0" | bc) | tee -a $W/times.txt
step replay .venv/bin/logllm replay $W/today-with-faults.log --url http://127.0.0.1:8011 --rate 2000 > $W/replay.log 2>&1
tail -n 2 $W/replay.log
sleep 5
curl -s 'localhost:8011/anomalies?limit=10' > $W/anomalies.json
.venv/bin/python -c "import json; d=json.load(open('$W/anomalies.json')); [print(r['id'], r['score'], r['reason'], (r.get('novelty') or {}).get('novel')) for r in d['items']]"
kill $SERVE; wait $SERVE 2>/dev/null
cat $W/times.txt
