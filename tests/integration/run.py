#!/usr/bin/env python3
"""Runs the integration tests (khod on a private bus; introspection vs the
XML definitions) and ends with 'N passed, N failed'. --json-summary FILE
writes the counts for tools/test; --exclude MODULE leaves a test module out."""

import argparse
import json
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json-summary")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--exclude", action="append", default=[], metavar="MODULE",
                    help="leave out tests/integration/MODULE.py (repeatable)")
    args = ap.parse_args()
    suite = unittest.TestSuite()
    for path in sorted(HERE.glob("test_*.py")):
        if path.stem not in args.exclude:
            suite.addTests(unittest.defaultTestLoader.loadTestsFromName(path.stem))
    result = unittest.TextTestRunner(verbosity=2 if args.verbose else 1).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    if args.json_summary:
        Path(args.json_summary).write_text(json.dumps({"passed": passed, "failed": failed, "skipped": skipped}))
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
