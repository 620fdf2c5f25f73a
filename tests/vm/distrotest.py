#!/usr/bin/env python3
"""khod in a real distribution: scenarios in a Debian testing guest with
systemd, dbus, polkitd, udev and kdump-tools, khod installed from its .deb.

    distrotest.py [--deb FILE] [--keep] [--workdir DIR] [--json-summary FILE] [SCENARIO ...]
    distrotest.py list

The harness is vmtest/distro.py; see tests/vm/README.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vmtest.distro import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
