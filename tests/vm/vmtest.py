#!/usr/bin/env python3
"""Real-kernel VM tests for khod: the command line of the vmtest package.

    vmtest.py [--builddir DIR] [--kernel PATH] [--keep] [--json-summary FILE] [SCENARIO ...]
    vmtest.py capture [--kexec] --append "<cmdline words>" --paths FILE --out DIR
    vmtest.py list

The harness itself is the package beside this file (tests/vm/vmtest/); this
script only runs it. See tests/vm/README.md.
"""

import sys
from pathlib import Path

# Python puts this file's directory first on sys.path, so `vmtest` below is
# the package directory (a package wins over a module of the same name), the
# same one the scenarios import.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from vmtest import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
