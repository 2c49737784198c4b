#!/usr/bin/env python3
"""Checks the `valid` flags of access_cases.toml against a real PostgreSQL.

Not run by `cargo test` (vigil-sql does no I/O). Usage, with psql on PATH and a server that lets
the user create databases:

    python3 crates/vigil-sql/tests/pg_check_cases.py "host=127.0.0.1 user=postgres dbname=postgres"

It creates a template database from the file's `setup`, then runs each case in a fresh copy of
it (one simple-protocol Query, as a client would send it), and reports every case whose outcome
disagrees with its `valid` flag. Cases marked `runs = false`, and texts with parameters ($1), are only parse-analysed with PREPARE
when they are preparable (SELECT, INSERT, UPDATE, DELETE, MERGE, VALUES), else skipped; cases
marked `pg` newer than the server's major version are skipped. The databases are dropped at the
end.
"""

import os
import re
import subprocess
import sys
import tomllib

TEMPLATE = "vigil_access_cases_tpl"
SCRATCH = "vigil_access_cases_run"


def psql(conninfo, sql, db=None, stdin=b""):
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql]
    if db:
        args[args.index(conninfo)] = f"{conninfo} dbname={db}"
    r = subprocess.run(args, input=stdin, capture_output=True, timeout=60)
    return r.returncode == 0, r.stderr.decode(errors="replace").strip()


def main():
    conninfo = sys.argv[1] if len(sys.argv) > 1 else "host=127.0.0.1 user=postgres dbname=postgres"
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "access_cases.toml"), "rb") as f:
        cases = tomllib.load(f)
    major = int(subprocess.run(["psql", "-X", "-Atc", "SHOW server_version_num", "-d", conninfo],
                               capture_output=True, text=True).stdout.strip()) // 10000
    for db in (SCRATCH, TEMPLATE):
        psql(conninfo, f"DROP DATABASE IF EXISTS {db}")
    ok, err = psql(conninfo, f"CREATE DATABASE {TEMPLATE}")
    assert ok, err
    ok, err = psql(conninfo, cases["setup"], db=TEMPLATE)
    assert ok, err
    preparable = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|MERGE|VALUES|WITH|TABLE)\b", re.I)
    disagree, checked, skipped = [], 0, 0
    try:
        for case in cases["case"]:
            sql, valid = case["sql"], case.get("valid", True)
            if case.get("pg", 0) > major:
                skipped += 1
                continue
            # Parameters ($1) need PREPARE, which infers their types.
            if not case.get("runs", True) or re.search(r"\$\d", sql):
                if not preparable.match(sql) or ";" in sql:
                    skipped += 1
                    continue
                sql = f"PREPARE vigil_check AS {sql}"
            psql(conninfo, f"DROP DATABASE IF EXISTS {SCRATCH}")
            ok, err = psql(conninfo, f"CREATE DATABASE {SCRATCH} TEMPLATE {TEMPLATE}")
            assert ok, err
            ok, err = psql(conninfo, sql, db=SCRATCH)
            checked += 1
            if ok != valid:
                disagree.append((case["sql"], valid, err))
    finally:
        for db in (SCRATCH, TEMPLATE):
            psql(conninfo, f"DROP DATABASE IF EXISTS {db}")
    for sql, valid, err in disagree:
        print(f"valid = {str(valid).lower()} but PostgreSQL {'rejects' if valid else 'accepts'} it:\n  {sql}\n  {err}\n")
    print(f"{checked - len(disagree)} passed, {len(disagree)} failed, {skipped} skipped")
    sys.exit(1 if disagree else 0)


if __name__ == "__main__":
    main()
