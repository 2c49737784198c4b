#!/usr/bin/env bash
# Vigil's test command: every unit and integration test (real PostgreSQL clusters, the real
# gateway binary, psql, pgbench, tokio-postgres, a real OIDC provider), then the psycopg2
# suite through the gateway compared with the same suite run directly.
#
# Needs: the Rust toolchain with cargo-nextest, PostgreSQL 15 server binaries and clients,
# pgbench, libclang (pg_query), Node.js + npm (OIDC provider), Python 3 with venv, tshark
# (pcapng exports of replay captures).
# .ci/run installs whatever is missing; run that on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# The OIDC and pcapng tests must run, not skip, when this script is the test command.
export VIGIL_TEST_REQUIRE_NODE=1
export VIGIL_TEST_REQUIRE_TSHARK=1

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --failure-output final
else
  cargo test --workspace --no-fail-fast
fi
cargo test --workspace --doc --quiet

if [[ "${VIGIL_SKIP_PSYCOPG2:-0}" != "1" ]]; then
  # The debug binary the tests above just built: no second (release) build.
  VIGIL_BIN="${VIGIL_BIN:-${CARGO_TARGET_DIR:-target}/debug/vigil}" scripts/psycopg2-suite.sh
fi
