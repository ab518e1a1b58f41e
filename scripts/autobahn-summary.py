#!/usr/bin/env python3
"""Summarise an Autobahn|Testsuite fuzzingclient report (reports/servers/index.json).

Prints counts by behavior (OK, NON-STRICT, INFORMATIONAL, FAILED,
UNIMPLEMENTED) and by close behavior, and lists every case that is not OK.
Exits 1 on any FAILED or UNIMPLEMENTED case (behavior or close behavior), or
when the number of cases differs from --expected.
"""
import argparse
import collections
import json
import sys


def sort_key(case_id):
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("index", help="path to reports/servers/index.json")
    ap.add_argument("--expected", type=int, help="expected number of cases (517 all, 301 quick)")
    a = ap.parse_args()
    try:
        with open(a.index) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print(f"autobahn: no usable report ({e}); did wstest finish?")
        return 1
    bad = False
    for agent, cases in sorted(index.items()):
        by_behavior = collections.Counter(c.get("behavior", "?") for c in cases.values())
        by_close = collections.Counter(c.get("behaviorClose", "?") for c in cases.values())
        print(f"agent {agent}: {len(cases)} cases")
        print("  behavior:       " + ", ".join(f"{k} {v}" for k, v in sorted(by_behavior.items())))
        print("  close behavior: " + ", ".join(f"{k} {v}" for k, v in sorted(by_close.items())))
        for cid in sorted(cases, key=sort_key):
            c = cases[cid]
            if c.get("behavior") != "OK" or c.get("behaviorClose") != "OK":
                print(f"  {cid:10} behavior={c.get('behavior')} close={c.get('behaviorClose')} "
                      f"remoteCloseCode={c.get('remoteCloseCode')} duration={c.get('duration')}ms")
        for counter in (by_behavior, by_close):
            if counter.get("FAILED") or counter.get("UNIMPLEMENTED"):
                bad = True
        if a.expected is not None and len(cases) != a.expected:
            print(f"  expected {a.expected} cases, report has {len(cases)} (server died?)")
            bad = True
    if not index:
        print("no agent in the report")
        bad = True
    passed = sum(1 for cs in index.values() for c in cs.values()
                 if c.get("behavior") not in ("FAILED", "UNIMPLEMENTED")
                 and c.get("behaviorClose") not in ("FAILED", "UNIMPLEMENTED"))
    total = sum(len(cs) for cs in index.values())
    print(f"autobahn: {passed} passed, {total - passed} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
