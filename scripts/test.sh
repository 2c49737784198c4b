#!/usr/bin/env bash
# Vigil's test command: every unit and integration test (real PostgreSQL clusters, the real
# gateway binary, psql, pgbench, tokio-postgres, a real OIDC provider), then the psycopg2
# suite through the gateway compared with the same suite run directly.
#
# Needs the Rust toolchain (rustup) and, on Debian, installs what else is missing first
# (scripts/lib/prereqs.sh): a C compiler and libclang (the build), PostgreSQL 15 server
# binaries, psql and pgbench, curl, Python 3 with venv, tshark (pcapng exports of replay
# captures), and Node.js >= 20.19 with the OIDC provider's modules. cargo-nextest is used when
# installed, cargo test otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/prereqs.sh
. scripts/lib/prereqs.sh
vigil_prereqs test

# The OIDC and pcapng tests must run, not skip, when this script is the test command.
export VIGIL_TEST_REQUIRE_NODE=1
export VIGIL_TEST_REQUIRE_TSHARK=1

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --failure-output final
  cargo test --workspace --doc --quiet
else
  echo "vigil setup: cargo-nextest is not installed: running the tests with cargo test" >&2
  cargo test --workspace --no-fail-fast # doc tests included
fi

if [[ "${VIGIL_SKIP_PSYCOPG2:-0}" != "1" ]]; then
  # The debug binary the tests above just built: no second (release) build.
  VIGIL_BIN="${VIGIL_BIN:-${CARGO_TARGET_DIR:-target}/debug/vigil}" scripts/psycopg2-suite.sh
fi
