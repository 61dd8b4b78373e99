#!/usr/bin/env python3
"""Writes an osv.dev-style export (all.zip, one ID.json per record) of N
records for the import benchmark (BENCHMARKS.md, "Feeds").

The records are the real JSON records of testdata/advisories (Ubuntu,
Debian, Alpine, Maven; sources in testdata/advisories/SOURCES.md), taken
in turn, each given a new id (`USN-4038-1` -> `USN-4038-1-X000042`) so
that every record of the export is its own. `--bump K` rewrites the
`modified` of every K-th record one day later (a refresh of the feed in
which one record in K changed).

usage: osv_export.py N OUT.zip [--bump K]
"""
import datetime
import glob
import json
import os
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(HERE, "..", "..", "..", "testdata", "advisories")


def main() -> None:
    args = sys.argv[1:]
    if len(args) not in (2, 4) or (len(args) == 4 and args[2] != "--bump"):
        sys.exit(__doc__)
    n, out = int(args[0]), args[1]
    bump = int(args[3]) if len(args) == 4 else 0
    templates = []
    for path in sorted(glob.glob(os.path.join(TESTDATA, "*", "*.json"))):
        with open(path, encoding="utf-8") as f:
            templates.append(json.load(f))
    if not templates:
        sys.exit(f"no records under {TESTDATA}")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(n):
            rec = dict(templates[i % len(templates)])
            rec["id"] = f"{rec['id']}-X{i:06d}"
            if bump and i % bump == 0:
                t = datetime.datetime.fromisoformat(rec["modified"].replace("Z", "+00:00"))
                rec["modified"] = (t + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            z.writestr(rec["id"] + ".json", json.dumps(rec))
    print(f"{out}: {n} records from {len(templates)} real ones")


if __name__ == "__main__":
    main()
