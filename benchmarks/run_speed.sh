#!/usr/bin/env bash
# Every speed table of BENCHMARKS.md (issue 6), one after the other so that no two
# measurements share the CPU. Outputs: runs/bench/speed/<table>.md (+ .log).
# Needs: the runs and exports of benchmarks/debtags_quality.py (runs/bench/) and
# the PyTorch venv (bash benchmarks/torch_venv.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
out=runs/bench/speed
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=2
run() { name=$1; shift; echo "== $name: $*"; "$@" > "$out/$name.md" 2> "$out/$name.log"; echo "   rc=$? $(date +%T)"; }
tables="${TABLES:-peak vs-torch one-vs-n xla threads training}"
for t in $tables; do
  case $t in
    peak) run peak $py benchmarks/peak_flops.py ;;
    training) run training $py benchmarks/training_speed.py --steps 12 --repeats 3 ;;
    one-vs-n) run one-vs-n $py benchmarks/inference_speed.py one-vs-n --repeats 3 --json-out "$out/one-vs-n.json" ;;
    *) run "$t" $py benchmarks/inference_speed.py "$t" --repeats 5 --json-out "$out/$t.json" ;;
  esac
done
