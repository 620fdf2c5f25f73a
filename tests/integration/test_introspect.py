"""The D-Bus interfaces are defined once, in src/khod/dbus/*.xml: what
`khod --bus-introspect` reports the running code exports must match them
member for member (names, signatures, argument names and directions,
property access). Doc annotations are the XML's alone and are not compared.
"""

import os
import subprocess
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

from khodbus import REPO

BUILDDIR = Path(os.environ.get("KHOD_BUILDDIR", REPO / "build"))
DEFINITIONS = sorted((REPO / "src/khod/dbus").glob("org.kexec.khod1.*.xml"))


def members(interface: ET.Element) -> dict:
    out = {}
    for m in interface:
        if m.tag == "method" or m.tag == "signal":
            args = tuple((a.get("name"), a.get("type"), a.get("direction", "out" if m.tag == "signal" else "in"))
                         for a in m.findall("arg"))
            out[(m.tag, m.get("name"))] = args
        elif m.tag == "property":
            out[("property", m.get("name"))] = (m.get("type"), m.get("access"))
    return out


class IntrospectionMatchesDefinition(unittest.TestCase):
    def test_every_defined_interface_is_exported_exactly(self):
        self.assertTrue(DEFINITIONS, "no interface definitions found")
        r = subprocess.run([str(BUILDDIR / "src/khod/khod"), "--bus-introspect"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        exported = {i.get("name"): i for i in ET.fromstring(r.stdout).iter("interface")}
        for path in DEFINITIONS:
            for interface in ET.parse(path).getroot().iter("interface"):
                name = interface.get("name")
                with self.subTest(interface=name):
                    self.assertIn(name, exported, f"{path.name} defines {name}; khod does not export it")
                    self.assertEqual(members(exported[name]), members(interface),
                                     f"khod's {name} differs from {path.name}")
        ours = {n for n in exported if n.startswith("org.kexec.")}
        defined = {i.get("name") for p in DEFINITIONS for i in ET.parse(p).getroot().iter("interface")}
        self.assertEqual(ours, defined, "khod exports an interface that has no XML definition")


if __name__ == "__main__":
    unittest.main()
