#!/usr/bin/env bash
# Run a profile's (configuration, fold) units on one GPU machine with several worker processes
# sharing the GPU, each stopped at a deadline; finished folds are packed into $OUT.
#
#   scripts/gpu_run.sh PROFILE SECONDS WORKER_SPEC [WORKER_SPEC ...]
#
# A WORKER_SPEC is a comma-separated list of configurations that one worker runs one after the
# other, e.g. "from_scratch,fine_tune_5"; "@0" after a configuration keeps the trained weights
# of its fold 0 (for Grad-CAM back home), e.g. "from_scratch@0,fine_tune_5"; text after "#" is
# passed on to each `python -m cxrlib run` of the worker, e.g.
# "from_scratch#--set grouping=patient" (a run of its own name).
# Put the configurations that matter most first: a worker stopped at the deadline loses only
# its unfinished fold.
#
# The command expects the carried paths .whl/ (keras, namex, optree wheels for the machine's
# Python), .carry/keras/models/<MobileNetV2 no-top weights> and data/curated/<the profile's
# curated folder>. Units already under results/PROFILE are skipped (the CV loop resumes), so
# the same command continues a run in a later session once its results are back in the tree.
set -uo pipefail
cd "$(dirname "$0")/.."
profile=$1; seconds=$2; shift 2
out=${OUT:-/tmp/out}; mkdir -p "$out" logs
res=${CXRLIB_RESULTS:-results}; runs=${CXRLIB_RUNS:-runs}
export PYTHONUNBUFFERED=1 KERAS_BACKEND=${KERAS_BACKEND:-jax} KERAS_HOME=${KERAS_HOME:-$PWD/.carry/keras}
wheels=${WHEELS:-.whl}
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_COMPILATION_CACHE_DIR=/tmp/jax-cache
if [ -d "$wheels" ] && [ -z "${SKIP_WHEELS:-}" ]; then
  # Into a folder this Python searches by itself (its user site-packages; in a virtual
  # environment, its own site-packages): no PYTHONPATH to set.
  site=$(python3 -c "import site, sysconfig; print(site.getusersitepackages() if site.ENABLE_USER_SITE else sysconfig.get_paths()['purelib'])")
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$wheels"/*.whl || exit 1
fi
# cxrlib is this checkout's: every python3 here runs from the repository root (-m, -c).
python3 -c "import keras, cxrlib" || { echo "keras or cxrlib cannot be imported" >&2; exit 1; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 -c "import keras, jax; print('keras', keras.__version__, keras.backend.backend(), jax.devices())"
} 2>&1 | tee logs/machine.txt
start=$(date +%s); deadline=$((start + seconds))

run_worker() {  # $1: worker number, $2: spec
  local extra="" spec=$2 item config save left
  [[ "$spec" == *"#"* ]] && extra=${spec#*#}
  spec=${spec%%#*}
  for item in ${spec//,/ }; do
    config=${item%@*}; save=""
    [ "$item" != "$config" ] && save="--save-weights-folds ${item#*@}"
    left=$((deadline - $(date +%s)))
    [ "$left" -le 10 ] && break
    # shellcheck disable=SC2086
    timeout --signal=TERM "$left" python3 -m cxrlib run --profile "$profile" \
      --configs "$config" $save $extra
  done > "logs/worker-$1.log" 2>&1
}

i=0; pids=()
for spec in "$@"; do
  i=$((i + 1))
  run_worker "$i" "$spec" &
  pids+=($!)
done
while sleep 20; do
  alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
  echo "t=$(( $(date +%s) - start ))s workers alive=$alive finished folds=$(find "$res" -name fold.json 2>/dev/null | wc -l)"
  [ "$alive" -eq 0 ] && break
done
wait
for f in logs/worker-*.log; do echo "== $f"; grep -E "done in|Error|error" "$f" | tail -n 4; done
tar czf "$out/results.tgz" -C "$res" .
tar czf "$out/logs.tgz" logs
for w in "$runs"/*/weights/*.npz; do [ -f "$w" ] && cp "$w" "$out/$(basename "$(dirname "$(dirname "$w")")")--$(basename "$w")"; done
echo "packed $(find "$res" -name fold.json | wc -l) finished folds after $(( $(date +%s) - start ))s"
