#!/usr/bin/env python3
"""khod.catalog against message_ids.hpp: every MESSAGE_ID in the header has
exactly one catalog entry and every entry an id in the header; each entry
has the headers journalctl shows (Subject:, Defined-By: khod, Support:,
Documentation: naming khod(8)). The catalog is parsed as journalctl's
catalog_import_file() reads it, and then, where journalctl exists, imported
for real into a scratch root with --update-catalog and listed back.

Usage: check_catalog.py MESSAGE_IDS_HPP KHOD_CATALOG"""

import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HEADER_ID = re.compile(r'inline\s+constexpr\s+const\s+char\s*\*\s*(\w+)\s*=\s*"([^"]*)"')
ENTRY = re.compile(r"^-- ([0-9a-fA-F]{32})(?: ([A-Za-z_@.-]+))?\s*$")


def header_ids(text):
    ids = {}
    for name, value in HEADER_ID.findall(text):
        if not re.fullmatch(r"[0-9a-f]{32}", value):
            raise SystemExit(f"message_ids.hpp: {name} = {value!r} is not 32 lowercase hex digits")
        ids[name] = value
    return ids


def catalog_entries(text):
    """[(id, {header: value}, body)], as journalctl splits the file: '--' lines
    start entries, '#' lines outside them are comments, headers come first."""
    entries, current = [], None
    for lineno, line in enumerate(text.splitlines(), 1):
        m = ENTRY.match(line)
        if m:
            current = [m.group(1).lower(), {}, [], True]
            entries.append(current)
            continue
        if line.startswith("--"):
            raise SystemExit(f"khod.catalog:{lineno}: malformed entry header {line!r}")
        if current is None:
            if line.strip() and not line.startswith("#"):
                raise SystemExit(f"khod.catalog:{lineno}: text outside an entry")
            continue
        in_headers = current[3]
        if in_headers and line.strip() == "":
            current[3] = False
        elif in_headers:
            key, sep, value = line.partition(":")
            if not sep or not re.fullmatch(r"[A-Za-z-]+", key):
                raise SystemExit(f"khod.catalog:{lineno}: expected 'Header: value', got {line!r}")
            current[1][key] = value.strip()
        else:
            current[2].append(line)
    return [(i, h, "\n".join(b).strip()) for i, h, b, _ in entries]


def main():
    header_path, catalog_path = map(Path, sys.argv[1:3])
    ids = header_ids(header_path.read_text())
    if not ids:
        raise SystemExit("message_ids.hpp: no ids found")
    problems = []
    dupes = [v for v, n in Counter(ids.values()).items() if n > 1]
    problems += [f"message_ids.hpp: {v} is used twice" for v in dupes]
    entries = catalog_entries(catalog_path.read_text())
    counts = Counter(i for i, _, _ in entries)
    for name, value in ids.items():
        if counts[value] != 1:
            problems.append(f"{name} ({value}) has {counts[value]} catalog entries, not 1")
    for value in counts:
        if value not in ids.values():
            problems.append(f"catalog entry {value} has no id in message_ids.hpp")
    for value, headers, body in entries:
        for needed in ("Subject", "Defined-By", "Support", "Documentation"):
            if not headers.get(needed):
                problems.append(f"catalog entry {value}: no {needed}:")
        if headers.get("Defined-By") != "khod":
            problems.append(f"catalog entry {value}: Defined-By: {headers.get('Defined-By')!r}, not khod")
        if "man:khod(8)" not in headers.get("Documentation", ""):
            problems.append(f"catalog entry {value}: Documentation: does not name man:khod(8)")
        if not body:
            problems.append(f"catalog entry {value}: no explanation")
        for field in re.findall(r"@([A-Za-z0-9_]+)@", headers.get("Subject", "") + body):
            if not field.startswith("KHOD_"):
                problems.append(f"catalog entry {value}: @{field}@ is not a field khod sets")

    journalctl = shutil.which("journalctl")
    if journalctl and not problems:
        # What `journalctl --update-catalog` makes of the installed file.
        with tempfile.TemporaryDirectory() as root:
            catdir = Path(root, "usr/lib/systemd/catalog")
            catdir.mkdir(parents=True)
            Path(root, "var/lib/systemd/catalog").mkdir(parents=True)
            shutil.copy(catalog_path, catdir / "khod.catalog")
            subprocess.run([journalctl, f"--root={root}", "--update-catalog"], check=True)
            listed = subprocess.run([journalctl, f"--root={root}", "--list-catalog"], check=True,
                                    capture_output=True, text=True).stdout.split("\n")
            found = {line.split()[0] for line in listed if line.strip()}
            if found != set(ids.values()):
                problems.append(f"journalctl --list-catalog lists {sorted(found)}, expected {sorted(ids.values())}")
            for line in listed:
                if line.strip() and " khod: " not in line:
                    problems.append(f"journalctl --list-catalog: {line!r} not defined by khod")

    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print(f"{len(ids)} ids, {len(entries)} catalog entries: each id has exactly one"
          + (", and journalctl imports them all" if journalctl else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
