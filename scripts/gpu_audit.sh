#!/usr/bin/env bash
# The audit's retrainings of a real-data run on one GPU machine
# (cxrlib.audit.retrain.run_variant): one worker process per retraining, all sharing the GPU,
# each stopped at a deadline; the finished folds of every run are packed into
# $OUT/audit-results.tgz.
#
#   scripts/gpu_audit.sh RUN SECONDS [VARIANT ...]
#
# VARIANTs are names of cxrlib.audit.retrain.VARIANTS (default: source-probe border-only lung-only
# adult-normal), plus "baseline": the main run's from-scratch folds still missing, then the
# patient-grouped retraining's. Folds run in order and finished ones are skipped, so the same
# command continues in a later session once the results are back in the tree. The machine needs
# the carried paths .whl/ (keras, namex, optree wheels for its Python) and
# data/curated/<the run's curated folder>; runs/jax-cache (XLA's compiled programs) helps.
set -uo pipefail
cd "$(dirname "$0")/.."
run=$1; seconds=$2; shift 2
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(source-probe border-only lung-only adult-normal)
out=${OUT:-/tmp/out}; mkdir -p "$out" logs
export PYTHONUNBUFFERED=1 KERAS_BACKEND=${KERAS_BACKEND:-jax} XLA_PYTHON_CLIENT_PREALLOCATE=false
if [ -d .whl ] && [ -z "${SKIP_WHEELS:-}" ]; then
  # Into a folder this Python searches by itself (its user site-packages; in a virtual
  # environment, its own site-packages): no PYTHONPATH to set.
  site=$(python3 -c "import site, sysconfig; print(site.getusersitepackages() if site.ENABLE_USER_SITE else sysconfig.get_paths()['purelib'])")
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl || exit 1
fi
# cxrlib is this checkout's: every python3 here runs from the repository root (-m, -c).
python3 -c "import keras, cxrlib" || { echo "keras or cxrlib cannot be imported" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee logs/machine.txt
start=$(date +%s)

worker() {  # $1: a variant, or "baseline"
  local code
  if [ "$1" = baseline ]; then
    code="p = audit.main_profile('$run', '$run'); audit.ensure_baseline(p, '$run'); \
audit.run_variant(p, 'patient', '$run')"
  else
    code="audit.run_variant(audit.main_profile('$run', '$run'), '$1', '$run')"
  fi
  timeout --signal=TERM "$seconds" python3 -c "from cxrlib.audit import retrain as audit; $code" \
    > "logs/$1.log" 2>&1
}

pids=()
for v in "${variants[@]}"; do worker "$v" & pids+=($!); done
while sleep 30; do
  alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
  echo "t=$(( $(date +%s) - start ))s workers alive=$alive folds=$(find results -path "*$run*" -name fold.json | wc -l)"
  [ "$alive" -eq 0 ] && break
done
wait
for f in logs/*.log; do echo "== $f"; grep -E "done in|Error|error" "$f" | tail -n 3; done
tar czf "$out/audit-results.tgz" $(cd results && ls -d "$run"*/ | sed 's|^|results/|')
tar czf "$out/audit-logs.tgz" logs
echo "packed after $(( $(date +%s) - start ))s"
