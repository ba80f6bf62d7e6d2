#!/usr/bin/env bash
# The audit's retrainings of a real-data run on one GPU machine (cxrlib.audit.retrain.run_variant):
# one worker process per retraining, all sharing the GPU, each stopped at a deadline; the
# finished folds of every run are packed into $OUT/audit-results.tgz.
#
#   scripts/gpu_audit.sh RUN SECONDS [VARIANT ...]
#
# VARIANTs are names of cxrlib.audit.retrain.VARIANTS (default: source-probe border-only
# lung-only adult-normal), plus "baseline": the main run's folds of the audit's configuration
# still missing, made by papermill executing the strategy notebook (notebooks/02_strategy.py;
# its executed copy comes back in $OUT/audit-records.tgz as the run's record,
# <run>/02_strategy-<config>.ipynb), then the patient-grouped retraining's. RUN is also the
# profile's name, as for `python -m cxrlib run --profile RUN`. Folds run in order and finished
# ones are skipped, so the same command continues in a later session once the results are back
# in the tree. The machine needs the carried paths .whl/ (wheels for its Python: keras, namex,
# optree; papermill, jupytext, ipykernel and what they need, see ../shared/GPU.md) and
# data/curated/<the run's curated folder>; runs/jax-cache (XLA's compiled programs) helps.
# CXRLIB_RESULTS, CXRLIB_RUNS and CXRLIB_LOGS move the folders (the tests use them, with
# SKIP_WHEELS=1, on the CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
run=$1; seconds=$2; shift 2
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(source-probe border-only lung-only adult-normal)
out=${OUT:-/tmp/out}; logs=${CXRLIB_LOGS:-logs}; mkdir -p "$out" "$logs"
res=${CXRLIB_RESULTS:-results}; runs=${CXRLIB_RUNS:-runs}
export PYTHONUNBUFFERED=1 KERAS_BACKEND=${KERAS_BACKEND:-jax} XLA_PYTHON_CLIENT_PREALLOCATE=false
if [ -d .whl ] && [ -z "${SKIP_WHEELS:-}" ]; then
  # Into a folder this Python searches by itself (its user site-packages; in a virtual
  # environment, its own site-packages): no PYTHONPATH to set.
  site=$(python3 -c "import site, sysconfig; print(site.getusersitepackages() if site.ENABLE_USER_SITE else sysconfig.get_paths()['purelib'])")
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl || exit 1
fi
# cxrlib is this checkout's: every python3 here runs from the repository root (-m, -c).
python3 -c "import keras, cxrlib, papermill, jupytext, ipykernel" \
  || { echo "keras, cxrlib, papermill, jupytext or ipykernel cannot be imported" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee "$logs/machine.txt"
start=$(date +%s)

baseline() {  # the main run's audit folds through the strategy notebook, then "patient"
  local settings config folds template
  settings=$(python3 -c "from cxrlib.core.profiles import audit_settings as a; s = a('$run'); \
print(s.config, ','.join(map(str, s.test_folds)))") || return 1
  read -r config folds <<< "$settings"
  template=$(mktemp -d)/02_strategy.ipynb
  mkdir -p "$runs/$run"
  python3 -m jupytext --quiet --to ipynb -o "$template" notebooks/02_strategy.py || return 1
  # -r: parameters as raw strings (with -p, folds "0" would reach the notebook as a number)
  python3 -m papermill --cwd . -k python3 --log-output --no-progress-bar "$template" \
    "$runs/$run/02_strategy-$config.ipynb" -r profile "$run" -r run "$run" \
    -r config "$config" -r folds "$folds" || return 1
  python3 -c "from cxrlib.audit import retrain; \
retrain.run_variant(retrain.main_profile('$run', '$run'), 'patient', '$run')"
}

worker() {  # $1: a variant, or "baseline"
  if [ "$1" = baseline ]; then
    export -f baseline; export run runs
    timeout --signal=TERM --kill-after=30 "$seconds" bash -c baseline > "$logs/$1.log" 2>&1
  else
    timeout --signal=TERM --kill-after=30 "$seconds" python3 -c "from cxrlib.audit import \
retrain; retrain.run_variant(retrain.main_profile('$run', '$run'), '$1', '$run')" \
      > "$logs/$1.log" 2>&1
  fi
}

pids=()
for v in "${variants[@]}"; do worker "$v" & pids+=($!); done
while sleep "${POLL_SECONDS:-30}"; do
  alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
  echo "t=$(( $(date +%s) - start ))s workers alive=$alive folds=$(find "$res" -path "*$run*" -name fold.json | wc -l)"
  [ "$alive" -eq 0 ] && break
done
wait
for f in "$logs"/*.log; do echo "== $f"; grep -E "done in|Error|error" "$f" | tail -n 3; done
# Paths inside the archive start with results/ (unpack it at the repository root).
tar czf "$out/audit-results.tgz" -C "$(dirname "$res")" \
  $(cd "$res" && ls -d "$run"*/ | sed "s|^|$(basename "$res")/|")
[ -d "$runs/$run" ] && tar czf "$out/audit-records.tgz" -C "$runs" --exclude='*/weights' "$run"
tar czf "$out/audit-logs.tgz" -C "$logs" .
echo "packed after $(( $(date +%s) - start ))s"
