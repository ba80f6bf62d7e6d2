#!/usr/bin/env bash
# Run a profile's configurations on one GPU machine: each configuration is one papermill
# execution of the strategy notebook (notebooks/02_strategy.py, parameter `config`), several
# workers share the GPU, each stopped at a deadline. Packed into $OUT: the finished folds
# (results.tgz), the executed notebooks, one per configuration, the run's records
# (records.tgz: <run>/02_strategy-<config>.ipynb), the logs, and the weights asked for.
#
#   scripts/gpu_run.sh PROFILE SECONDS WORKER_SPEC [WORKER_SPEC ...]
#
# A WORKER_SPEC is a comma-separated list of configurations that one worker runs one after the
# other, e.g. "from_scratch,fine_tune_5"; "@0" after a configuration brings back the trained
# weights of its fold 0 (for Grad-CAM back home), e.g. "from_scratch@0,fine_tune_5"; text after
# "#" is passed to `python -m cxrlib run`, which runs such a configuration instead of the
# notebook (the notebook has no parameter for it), e.g. "from_scratch#--set grouping=patient"
# (a run of its own name; no notebook record).
# Put the configurations that matter most first: a worker stopped at the deadline loses only
# its unfinished fold (its notebook record then ends at the cell that was running).
#
# The command expects the carried paths .whl/ (wheels for the machine's Python: keras, namex,
# optree; papermill, jupytext, ipykernel and what they need that the machine lacks, see
# ../shared/GPU.md), .carry/keras/models/<MobileNetV2 no-top weights> and
# data/curated/<the profile's curated folder>. Units already under results/PROFILE are skipped
# (the CV loop resumes), so the same command continues a run in a later session once its
# results are back in the tree. Back home: tar xzf results.tgz -C results; tar xzf records.tgz
# -C runs. CXRLIB_RESULTS, CXRLIB_RUNS, CXRLIB_LOGS and JAX_COMPILATION_CACHE_DIR move the
# folders (the tests run this script on the CPU that way, with SKIP_WHEELS=1).
set -uo pipefail
cd "$(dirname "$0")/.."
profile=$1; seconds=$2; shift 2
out=${OUT:-/tmp/out}; logs=${CXRLIB_LOGS:-logs}; mkdir -p "$out" "$logs"
res=${CXRLIB_RESULTS:-results}; runs=${CXRLIB_RUNS:-runs}
export PYTHONUNBUFFERED=1 KERAS_BACKEND=${KERAS_BACKEND:-jax} KERAS_HOME=${KERAS_HOME:-$PWD/.carry/keras}
wheels=${WHEELS:-.whl}
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jax-cache}
if [ -d "$wheels" ] && [ -z "${SKIP_WHEELS:-}" ]; then
  # Into a folder this Python searches by itself (its user site-packages; in a virtual
  # environment, its own site-packages): no PYTHONPATH to set.
  site=$(python3 -c "import site, sysconfig; print(site.getusersitepackages() if site.ENABLE_USER_SITE else sysconfig.get_paths()['purelib'])")
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$wheels"/*.whl || exit 1
fi
# cxrlib is this checkout's: every python3 here runs from the repository root (-m, -c).
python3 -c "import keras, cxrlib, papermill, jupytext, ipykernel" \
  || { echo "keras, cxrlib, papermill, jupytext or ipykernel cannot be imported" >&2; exit 1; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 -c "import keras, jax; print('keras', keras.__version__, keras.backend.backend(), jax.devices())"
} 2>&1 | tee "$logs/machine.txt"
# The notebook papermill executes: the text notebook as .ipynb (kept out of the records).
template=$(mktemp -d)/02_strategy.ipynb
python3 -m jupytext --quiet --to ipynb -o "$template" notebooks/02_strategy.py || exit 1
mkdir -p "$runs/$profile"
start=$(date +%s); deadline=$((start + seconds))

run_config() {  # $1: configuration, $2: seconds left, $3: text after "#" (or empty)
  if [ -n "$3" ]; then
    # shellcheck disable=SC2086
    timeout --signal=TERM --kill-after=30 "$2" python3 -m cxrlib run --profile "$profile" \
      --configs "$1" $3
  else
    # -r: parameters as raw strings (with -p, a name of digits would become a number)
    timeout --signal=TERM --kill-after=30 "$2" python3 -m papermill --cwd . -k python3 \
      --log-output --no-progress-bar "$template" "$runs/$profile/02_strategy-$1.ipynb" \
      -r profile "$profile" -r run "$profile" -r config "$1"
  fi
}

run_worker() {  # $1: worker number, $2: spec
  local extra="" spec=$2 item config left
  [[ "$spec" == *"#"* ]] && extra=${spec#*#}
  spec=${spec%%#*}
  for item in ${spec//,/ }; do
    config=${item%@*}
    left=$((deadline - $(date +%s)))
    [ "$left" -le 10 ] && break
    run_config "$config" "$left" "$extra"
  done > "$logs/worker-$1.log" 2>&1
}

i=0; pids=()
for spec in "$@"; do
  i=$((i + 1))
  run_worker "$i" "$spec" &
  pids+=($!)
done
while sleep "${POLL_SECONDS:-20}"; do
  alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
  echo "t=$(( $(date +%s) - start ))s workers alive=$alive finished folds=$(find "$res" -name fold.json 2>/dev/null | wc -l)"
  [ "$alive" -eq 0 ] && break
done
wait
for f in "$logs"/worker-*.log; do echo "== $f"; grep -E "done in|Error|error" "$f" | tail -n 4; done
tar czf "$out/results.tgz" -C "$res" .
tar czf "$out/records.tgz" -C "$runs" --exclude='*/weights' .
tar czf "$out/logs.tgz" -C "$logs" .
# The weights asked for ("config@fold"), named <run>--<file>.
for spec in "$@"; do
  items=${spec%%#*}
  for item in ${items//,/ }; do
    [ "$item" = "${item%@*}" ] && continue
    w=$(printf '%s/%s/weights/%s-fold-%02d.npz' "$runs" "$profile" "${item%@*}" "${item#*@}")
    [ -f "$w" ] && cp "$w" "$out/$profile--$(basename "$w")"
  done
done
echo "packed $(find "$res" -name fold.json | wc -l) finished folds and" \
  "$(find "$runs/$profile" -maxdepth 1 -name '02_strategy-*.ipynb' | wc -l) notebook records" \
  "after $(( $(date +%s) - start ))s"
