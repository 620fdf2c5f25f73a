"""What came back from a run (markers, vm-put files) and the helpers a
scenario's check() judges it with."""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Optional

from .errors import CheckFailed
from .qemu import Marker
from .report import TAIL_LINES, tail_lines


def expect(cond, message: str):
    """Like assert, but never compiled away and always with a message."""
    if not cond:
        raise CheckFailed(message)


def expect_eq(actual, expected, what: str):
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


def dig(doc, path: str):
    """doc['a']['b'][0] as dig(doc, 'a.b.0'), failing with the path that is missing."""
    cur = doc
    done = []
    for part in path.split("."):
        try:
            if isinstance(cur, list):
                cur = cur[int(part)]
            else:
                cur = cur[part]
        except (KeyError, IndexError, ValueError, TypeError):
            where = ".".join(done) or "<top>"
            have = sorted(cur) if isinstance(cur, dict) else type(cur).__name__
            raise CheckFailed(f"JSON has no {path!r} (stopped at {where!r}; it has {have})") from None
        done.append(part)
    return cur


@dataclasses.dataclass
class Put:
    name: str
    size: int
    sha256: str
    path: Path


def decode_puts(serial_log: Path, outdir: Path) -> tuple[dict[str, Put], list[str]]:
    """Decodes vm-put frames from the ttyS1 log into outdir. Returns (puts, errors)."""
    puts: dict[str, Put] = {}
    errors: list[str] = []
    if not serial_log.exists():
        return puts, ["no ttyS1 log"]
    outdir.mkdir(parents=True, exist_ok=True)
    cur = None
    body: list[str] = []
    for raw in serial_log.read_bytes().split(b"\n"):
        line = raw.replace(b"\r", b"").decode("ascii", errors="replace").strip()
        if line.startswith("KHOD-PUT-BEGIN "):
            if cur:
                errors.append(f"{cur[0]}: transfer cut off (no end line)")
            parts = line.split()
            if len(parts) != 4 or not parts[2].isdigit():
                errors.append(f"bad vm-put header: {line!r}")
                cur = None
                continue
            cur = (parts[1], int(parts[2]), parts[3])
            body = []
        elif line.startswith("KHOD-PUT-END "):
            if not cur:
                errors.append(f"vm-put end without begin: {line!r}")
                continue
            name, size, sha = cur
            cur = None
            try:
                data = base64_decode("".join(body))
            except ValueError as e:
                errors.append(f"{name}: bad base64: {e}")
                continue
            if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
                errors.append(f"{name}: corrupted in transfer (got {len(data)} bytes, "
                              f"expected {size})")
                continue
            if name in puts:
                errors.append(f"{name}: sent twice (vm-put names must be unique in a run)")
                continue
            if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", name):
                errors.append(f"bad vm-put name {name!r}")
                continue
            path = outdir / name
            path.write_bytes(data)
            puts[name] = Put(name, size, sha, path)
        elif cur is not None:
            body.append(line)
    if cur:
        errors.append(f"{cur[0]}: transfer cut off (no end line)")
    return puts, errors


def base64_decode(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text.encode())
    except binascii.Error as e:
        raise ValueError(str(e)) from None


@dataclasses.dataclass
class Result:
    """What a scenario's check() gets."""
    name: str
    workdir: Path
    outdir: Path
    console: str
    markers: list[Marker]
    puts: dict[str, Put]
    put_errors: list[str]
    panics: list[str]
    boots: int
    qemu_status: Optional[int]
    seconds: float
    #: The image under test and its release (from its setup header), which is
    #: what `uname -r`, khoctl and the KHO metadata of its boots must report.
    kernel: Path
    kernel_release: str
    #: NEXT_KERNEL's image and release: what boots after the first must run.
    next_kernel: Optional[Path] = None
    next_release: Optional[str] = None

    def tail(self, n: int = TAIL_LINES) -> str:
        return tail_lines(self.console, n)

    def markers_of(self, word: str, boot: Optional[int] = None) -> list[Marker]:
        return [m for m in self.markers if m.word == word and (boot is None or m.boot == boot)]

    def marker(self, word: str, boot: Optional[int] = None) -> Marker:
        """The single `word` marker (of `boot`, if given); fails if absent or repeated."""
        found = self.markers_of(word, boot)
        where = f" in boot {boot}" if boot else ""
        expect(found, f"guest never printed 'KHOD-VM: {word}'{where}")
        expect(len(found) == 1, f"'KHOD-VM: {word}' printed {len(found)} times{where}")
        return found[0]

    def exit_codes(self) -> list[tuple[int, str, int]]:
        out = []
        for m in self.markers_of("exit"):
            try:
                out.append((m.boot, m.stage, int(m.payload.split()[0])))
            except (ValueError, IndexError):
                out.append((m.boot, m.stage, -1))
        return out

    def file(self, name: str) -> bytes:
        if name not in self.puts:
            extra = f"; transfer errors: {'; '.join(self.put_errors)}" if self.put_errors else ""
            have = ", ".join(sorted(self.puts)) or "none"
            raise CheckFailed(f"guest did not send {name!r} (received: {have}){extra}")
        return self.puts[name].path.read_bytes()

    def text(self, name: str) -> str:
        return self.file(name).decode("utf-8", errors="replace")

    def json(self, name: str):
        data = self.text(name)
        try:
            return json.loads(data)
        except json.JSONDecodeError as e:
            raise CheckFailed(f"{name} is not valid JSON ({e}); it starts with: "
                              f"{data[:300]!r}") from None


def generic_checks(result: Result, boots: Optional[int], expect_exit: Optional[int]):
    """What every run must satisfy before the scenario's own check()."""
    if result.panics and not result.markers_of("exit", result.boots):
        raise CheckFailed(f"kernel panic in boot {result.boots}: {result.panics[-1]}")
    expect(result.markers_of("boot"), "the guest never reached /init (no 'KHOD-VM: boot' line)")
    for m in result.markers_of("boot"):
        booted = m.payload.split()[1:2]
        later = m.boot > 1 and result.next_release is not None
        want, image = (result.next_release, result.next_kernel) if later else (result.kernel_release, result.kernel)
        expect(booted == [want],
               f"boot {m.boot} ran {' '.join(booted) or 'an unnamed kernel'}, not "
               f"{'NEXT_KERNEL' if later else 'the image under test'} ({image}, {want})")
    if boots is not None:
        expect(result.boots == boots, f"expected {boots} boot(s), saw {result.boots}")
    exits = [e for e in result.exit_codes() if e[0] == result.boots]
    expect(exits, f"boot {result.boots} never finished its script (no 'KHOD-VM: exit' line)")
    if expect_exit is not None:
        _, stage, rc = exits[-1]
        expect(rc == expect_exit,
               f"guest script of stage {stage} exited with {rc}, expected {expect_exit}")
    expect(not result.put_errors, "vm-put transfer problems: " + "; ".join(result.put_errors))
