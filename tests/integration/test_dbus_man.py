"""org.kexec.khod1(5), generated at build time by man/dbus-api-man.py, holds
to what khod exports (`khod --bus-introspect`): every interface, method with
its arguments, signal and property (type, access, EmitsChangedSignal) of the
running code is in the page's synopses, and the page has nothing else. Every
member is also described, and the intro names the bus, the object and the
polkit actions."""

import os
import re
import shutil
import subprocess
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

from khodbus import REPO

BUILDDIR = Path(os.environ.get("KHOD_BUILDDIR", REPO / "build"))
PAGE = BUILDDIR / "man/org.kexec.khod1.5"
EMITS = "org.freedesktop.DBus.Property.EmitsChangedSignal"
ACCESS = {"readonly": "read", "writeonly": "write", "readwrite": "readwrite"}


def plain(line: str) -> str:
    """A roff line as text: font changes dropped, escapes undone."""
    line = re.sub(r"\\f[BIRP]", "", line)
    return line.replace("\\-", "-").replace("\\&", "").replace("\\e", "\\")


def exported() -> dict:
    """{interface: {(kind, name): signature}} of khod's own interfaces."""
    r = subprocess.run([str(BUILDDIR / "src/khod/khod"), "--bus-introspect"], capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    out = {}
    for interface in ET.fromstring(r.stdout).iter("interface"):
        name = interface.get("name")
        if not name.startswith("org.kexec."):
            continue
        default_emits = next((a.get("value") for a in interface.findall("annotation") if a.get("name") == EMITS),
                             "true")
        members = {}
        for m in interface:
            if m.tag in ("method", "signal"):
                members[(m.tag, m.get("name"))] = tuple(
                    (a.get("direction", "in" if m.tag == "method" else "out"), a.get("type"), a.get("name"))
                    for a in m.findall("arg"))
            elif m.tag == "property":
                emits = next((a.get("value") for a in m.findall("annotation") if a.get("name") == EMITS),
                             default_emits)
                members[("property", m.get("name"))] = (m.get("type"), m.get("access"), emits)
        out[name] = members
    return out


def page_synopses(lines: list[str]) -> dict:
    """The pseudo-IDL blocks of the page, parsed back into the same shape."""
    out = {}
    text = "\n".join(plain(line) for line in lines)
    for block in re.findall(r"^interface (\S+) \{\n(.*?)^\};", text, re.M | re.S):
        name, body = block
        members = {}
        section, emits = None, "true"
        # A member may span lines (one argument a line): join up to its ';'.
        for statement in re.split(r";\s*\n|:\s*\n", body + "\n"):
            s = " ".join(statement.split())
            if s in ("methods", "signals", "properties"):
                section = s
                continue
            if not s:
                continue
            m = re.fullmatch(r'@' + re.escape(EMITS) + r'\("(\w+)"\)\s*(.*)', s)
            if m:
                emits, s = m.group(1), m.group(2)
            if section == "properties":
                access, ptype, pname = s.split(" ")
                members[("property", pname)] = (ptype, ACCESS[access], emits)
                emits = "true"
            else:
                call = re.fullmatch(r"(\w+)\((.*)\)", s)
                assert call, f"not a member: {s!r}"
                args = [a.split() for a in call.group(2).split(",") if a.strip()]
                if section == "methods":
                    sig = tuple((d, t, n) for d, t, n in args)
                    members[("method", call.group(1))] = sig
                else:
                    members[("signal", call.group(1))] = tuple(("out", t, n) for t, n in args)
        out[name] = members
    return out


class DbusManPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lines = PAGE.read_text().splitlines()
        cls.exported = exported()

    def test_synopses_are_exactly_what_khod_exports(self):
        self.assertTrue(self.exported, "khod exports no org.kexec interface")
        documented = page_synopses(self.lines)
        self.assertEqual(sorted(documented), sorted(self.exported), "interfaces")
        for name, members in self.exported.items():
            with self.subTest(interface=name):
                self.assertEqual(documented[name], members)

    def test_every_member_is_described(self):
        """Each member has its own entry (.TP head) with text under it."""
        heads = {}
        for i, line in enumerate(self.lines[:-1]):
            if line == ".TP":
                m = re.match(r"(\w+)(\(|$)", plain(self.lines[i + 1]))
                if m:
                    heads.setdefault(m.group(1), []).append(plain(self.lines[i + 2]) if i + 2 < len(self.lines) else "")
        for name, members in self.exported.items():
            for kind, member in members:
                with self.subTest(interface=name, member=member):
                    self.assertIn(member, heads, f"{kind} {member} has no entry")
                    self.assertTrue(all(text and not text.startswith(".") for text in heads[member]),
                                    f"{member}'s entry is empty")

    def test_intro_names_the_bus_object_and_polkit_actions(self):
        text = "\n".join(plain(line) for line in self.lines)
        self.assertIn("org.kexec.khod1", text)
        self.assertIn("/org/kexec/khod1", text)
        policy = ET.parse(REPO / "src/khod/polkit/org.kexec.khod1.policy").getroot()
        for action in policy.iter("action"):
            self.assertIn(action.get("id"), text)
        self.assertTrue(self.lines[0].startswith(".TH ORG.KEXEC.KHOD1 5 "), self.lines[0])

    @unittest.skipUnless(shutil.which("groff"), "groff is not installed")
    def test_renders_without_warnings(self):
        r = subprocess.run(["groff", "-man", "-ww", "-z", str(PAGE)], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")


if __name__ == "__main__":
    unittest.main()
