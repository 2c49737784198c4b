#!/usr/bin/env bash
# Runs Vigil's fuzz targets (cargo-fuzz / libFuzzer) over the decoders of untrusted input.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   scripts/fuzz.sh pg_startup 600  # one target, 10 minutes
#
# Targets: pg_startup (first packet of a connection), pg_frontend (client messages after
# login), sql_normalize (the SQL normalizer and analyser), mask_values (detectors and operators), pg_datarow_rewrite (the masking DataRow rewriter). Crashes land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(pg_startup pg_frontend sql_normalize mask_values pg_datarow_rewrite)
if [[ $# -ge 1 ]]; then targets=("$1"); fi
seconds="${2:-60}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz ..." >&2
  cargo install --locked cargo-fuzz
fi
# cargo-fuzz needs nightly's sanitizer flags; use nightly if present, else let stable accept them.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi

for t in "${targets[@]}"; do
  echo "== fuzzing $t for ${seconds}s" >&2
  mkdir -p "fuzz/corpus/$t"
  cargo "${toolchain[@]}" fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=4096
done
