#!/usr/bin/env bash
# Runs Vigil's fuzz targets (cargo-fuzz / libFuzzer) over the decoders of untrusted input.
#
#   scripts/fuzz.sh                         # every target, 60 s each
#   scripts/fuzz.sh pg_startup 600          # one target, 10 minutes
#   scripts/fuzz.sh all 300                 # every target, 5 minutes each
#   scripts/fuzz.sh mask_values 900 -seed=1 # extra arguments go to libFuzzer
#
# Targets: pg_startup (first packet of a connection), pg_frontend (client messages after
# login), sql_normalize (the SQL normalizer and analyser), sql_access (the access analysis
# against a catalog), mask_values (every detector and operator), pg_datarow_rewrite (the
# masking DataRow rewriter), pg_session_names (prepared statements, portals and cursors a text
# uses, defines or drops, looked up as the proxy does), pg_error_rewrite (a protected session's
# errors and notices), pg_startup_settings (startup parameters and options read into the
# settings Vigil checks, and rebuilt for the upstream). The corpus grows in fuzz/corpus/<target>/ (not tracked); crashes land in
# fuzz/artifacts/<target>/; fuzz/dicts/<target>.dict is used where there is one.
# Needs nightly (used if installed, else RUSTC_BOOTSTRAP=1) and cargo-fuzz (installed if
# missing).
set -euo pipefail
cd "$(dirname "$0")/.."

all=(pg_startup pg_frontend sql_normalize sql_access mask_values pg_datarow_rewrite pg_session_names pg_error_rewrite pg_startup_settings)
targets=("${all[@]}")
if [[ $# -ge 1 && $1 != all ]]; then targets=("$1"); fi
seconds="${2:-60}"
shift $(($# < 2 ? $# : 2))

# Longest input per target: room for the largest thing each decoder accepts, no more.
max_len() {
  case "$1" in
    pg_startup) echo 10240 ;;         # a startup packet is at most 10,000 bytes
    pg_frontend) echo 16384 ;;        # several frames of up to 4,096 bytes (the target's limit)
    pg_datarow_rewrite) echo 8192 ;;  # a RowDescription and a DataRow
    pg_error_rewrite) echo 8192 ;;    # an ErrorResponse body
    *) echo 4096 ;;                   # SQL texts, values
  esac
}

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
  # -timeout: an input taking 10 s is a finding (libFuzzer's default is 20 minutes).
  args=(-max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=4096
    -print_final_stats=1)
  if [[ -f "fuzz/dicts/$t.dict" ]]; then args+=(-dict="fuzz/dicts/$t.dict"); fi
  cargo "${toolchain[@]}" fuzz run "$t" "fuzz/corpus/$t" -- "${args[@]}" "$@"
done
