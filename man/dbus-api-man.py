#!/usr/bin/env python3
"""Writes org.kexec.khod1(5), the man page of khod's D-Bus API, from the
interface definitions (src/khod/dbus/org.kexec.khod1.*.xml: their DocString
annotations and comments) and the polkit policy, so the page says what the
definitions say (tests/integration/test_dbus_man.py holds it to what khod
exports).

Usage: dbus-api-man.py --version V --policy POLICY -o OUT INTERFACE.xml...
"""

import argparse
import datetime
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

BUS_NAME = "org.kexec.khod1"
OBJECT_PATH = "/org/kexec/khod1"
DOC = "org.freedesktop.DBus.DocString"
EMITS = "org.freedesktop.DBus.Property.EmitsChangedSignal"
ACCESS = {"read": "readonly", "write": "writeonly", "readwrite": "readwrite"}


def roff(text: str) -> str:
    """Text for a roff line: backslashes and dashes escaped, and a leading
    '.' or "'" kept from being read as a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def parse(path: Path) -> ET.Element:
    # Comments are part of the documentation: keep them in the tree.
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    return ET.parse(path, parser).getroot()


def comment_text(node) -> str:
    # XML comments cannot hold "--", so the files write "\-\-".
    return node.text.replace("\\-", "-")


def paragraphs(text: str) -> list[str]:
    """A comment's paragraphs as single lines; sentences addressed to whoever
    edits the XML (which file is the definition, which test checks it) left out."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        para = " ".join(block.split())
        sentences = re.split(r"(?<=[.)])\s+(?=[A-Z])", para)
        kept = [s for s in sentences if "This file is the definition" not in s]
        if kept:
            out.append(" ".join(kept))
    return out


def doc_of(element) -> str:
    for a in element.findall("annotation"):
        if a.get("name") == DOC:
            return a.get("value", "")
    return ""


def emits_of(prop) -> str:
    for a in prop.findall("annotation"):
        if a.get("name") == EMITS:
            return a.get("value", "true")
    return "true"


def args_text(member, direction_default: str, with_direction: bool) -> list[str]:
    out = []
    for a in member.findall("arg"):
        direction = a.get("direction", direction_default)
        prefix = f"{direction:<3} " if with_direction else ""
        out.append(f"{prefix}{a.get('type')} {a.get('name')}")
    return out


def call_lines(name: str, args: list[str], indent: str) -> list[str]:
    """Name(args); on one line when short, else one argument a line, aligned."""
    one = f"{indent}{name}({', '.join(args)});"
    if len(one) <= 72 or len(args) < 2:
        return [one]
    pad = " " * (len(indent) + len(name) + 1)
    lines = [f"{indent}{name}({args[0]},"]
    lines += [f"{pad}{a}," for a in args[1:-1]]
    lines.append(f"{pad}{args[-1]});")
    return lines


def members_with_comments(interface):
    """(element, the comments right before it) for each member, in file order."""
    pending = []
    for child in interface:
        if child.tag is ET.Comment:
            pending.append(comment_text(child))
        elif child.tag in ("method", "signal", "property"):
            yield child, pending
            pending = []


def synopsis(interface) -> list[str]:
    """The interface as systemd's D-Bus pages show one: a pseudo-IDL block."""
    name = interface.get("name")
    lines = [f"interface {name} {{"]
    methods = interface.findall("method")
    signals = interface.findall("signal")
    props = interface.findall("property")
    if methods:
        lines.append("  methods:")
        for m in methods:
            lines += call_lines(m.get("name"), args_text(m, "in", True), "    ")
    if signals:
        lines.append("  signals:")
        for s in signals:
            lines += call_lines(s.get("name"), args_text(s, "out", False), "    ")
    if props:
        lines.append("  properties:")
        for p in props:
            emits = emits_of(p)
            if emits != "true":
                lines.append(f'    @{EMITS}("{emits}")')
            lines.append(f"    {ACCESS.get(p.get('access'), p.get('access'))} {p.get('type')} {p.get('name')};")
    lines.append("};")
    return lines


EMITS_TEXT = {
    "true": "PropertiesChanged carries its new value",
    "invalidates": "PropertiesChanged names it without its value",
    "const": "it does not change while khod runs",
    "false": "no PropertiesChanged signal: read it when needed",
}


def member_section(title: str, entries: list[tuple[str, list[str]]]) -> list[str]:
    if not entries:
        return []
    out = [".PP", f".B {title}"]
    for head, texts in entries:
        out += [".TP", head]
        for i, t in enumerate(texts):
            if i:
                out.append(".IP")
            out.append(roff(t))
    return out


def interface_section(path: Path) -> tuple[str, list[str]]:
    root = parse(path)
    # The file's own comment comes before <node>, where ElementTree keeps none.
    text = path.read_text()
    head = text[:text.find("<node")]
    head_comments = [m.replace("\\-", "-") for m in re.findall(r"<!--(.*?)-->", head, re.S)]
    out = []
    interfaces = root.findall("interface")
    for interface in interfaces:
        name = interface.get("name")
        out += [f".SS {name}", ".PP", ".nf"]
        out += [roff(line) for line in synopsis(interface)]
        out += [".fi"]
        if doc_of(interface):
            out += [".PP", roff(doc_of(interface))]
        for text in head_comments:
            for para in paragraphs(text):
                out += [".PP", roff(para)]
        methods, signals, props = [], [], []
        for member, comments in members_with_comments(interface):
            texts = [doc_of(member)] if doc_of(member) else []
            texts += [p for c in comments for p in paragraphs(c)]
            mname = member.get("name")
            # The head names the arguments; their types are in the synopsis.
            arg_names = ", ".join(f"\\fI{roff(a.get('name'))}\\fR" for a in member.findall("arg"))
            if member.tag == "method":
                methods.append((f"\\fB{mname}\\fR({arg_names})", texts))
            elif member.tag == "signal":
                signals.append((f"\\fB{mname}\\fR({arg_names})", texts))
            else:
                emits = emits_of(member)
                texts.append(f"Type {member.get('type')}, {ACCESS.get(member.get('access'))}; "
                             f"{EMITS_TEXT.get(emits, 'EmitsChangedSignal ' + emits)}.")
                props.append((f"\\fB{mname}\\fR", texts))
        out += member_section("Methods", methods)
        out += member_section("Signals", signals)
        out += member_section("Properties", props)
    return ",".join(i.get("name") for i in interfaces), out


def polkit_section(policy: Path) -> list[str]:
    root = parse(policy)
    out = [".SH AUTHORIZATION", ".PP",
           "Callers other than root need the polkit action of the kind of method they call; see",
           ".BR khod (8),", "AUTHORIZATION."]
    for c in root:
        if c.tag is ET.Comment:
            for para in paragraphs(comment_text(c)):
                # The comment's pointer to khod(8) is given above already.
                para = re.sub(r"^khod's powers, one action per kind \(khod\(8\), AUTHORIZATION\)\.\s*", "", para)
                if para:
                    out += [".PP", roff(para)]
    for action in root.iter("action"):
        defaults = action.find("defaults")
        active = defaults.findtext("allow_active") if defaults is not None else "?"
        out += [".TP", f".B {roff(action.get('id'))}",
                roff(f"{action.findtext('description')}. {action.findtext('message')} "
                     f"Default for an active local session: {active}.")]
    return out


def page_date(inputs: list[Path]) -> str:
    # Reproducible: SOURCE_DATE_EPOCH when the build sets it, else the newest input.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    stamp = int(epoch) if epoch else max(int(p.stat().st_mtime) for p in inputs)
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).strftime("%Y-%m-%d")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", required=True)
    ap.add_argument("--policy", type=Path, required=True)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("interfaces", type=Path, nargs="+")
    args = ap.parse_args()

    # Handover first (what khod is for), then the rest by name.
    files = sorted(args.interfaces, key=lambda p: (not p.name.endswith(".Handover.xml"), p.name))
    sections = [interface_section(p) for p in files]
    names = [n for n, _ in sections]

    out = [
        f'.TH {BUS_NAME.upper()} 5 "{page_date(files + [args.policy])}" "khod {args.version}" "khod"',
        ".\\\" Generated by man/dbus-api-man.py from src/khod/dbus/*.xml: edit those, not this page.",
        ".SH NAME", f"{roff(BUS_NAME)} \\- the D\\-Bus API of khod",
        ".SH SYNOPSIS", ".nf",
        f"bus:         the system bus, name {roff(BUS_NAME)}",
        f"object:      {roff(OBJECT_PATH)}",
    ]
    out += [f"interface:   {roff(n)}" for n in names]
    out += [".fi", ".SH DESCRIPTION", ".PP", ".BR khod (8)",
            f"owns {roff(BUS_NAME)} on the system bus and serves one object, {roff(OBJECT_PATH)},",
            "with the interfaces below, besides the standard",
            "org.freedesktop.DBus.Properties, .Introspectable and .Peer.",
            ".BR khoctl (1)",
            "is its client; any other program may call it the same way, e.g. with",
            ".BR busctl (1).",
            "The bus policy lets anyone call; khod then asks polkit (see",
            ".BR AUTHORIZATION ).",
            "Failures are D\\-Bus errors named org.kexec.khod1.Error.\\fINAME\\fR, whose message",
            "says what went wrong; each interface lists the names it uses.",
            ".PP",
            "Each interface is shown as a synopsis (arguments as D\\-Bus type signature and name;",
            "properties as access, type and name, with their EmitsChangedSignal annotation",
            "when it is not \\(lqtrue\\(rq), followed by what each member does.",
            "The definitions are installed in the D\\-Bus interfaces directory",
            "(\\fI/usr/share/dbus\\-1/interfaces/\\fR) as one XML file per interface.",
            ".SH INTERFACES"]
    for _, lines in sections:
        out += lines
    out += polkit_section(args.policy)
    out += [".SH SEE ALSO", ".BR khod (8),", ".BR khoctl (1),", ".BR busctl (1),", ".BR polkit (8)"]
    args.output.write_text("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
