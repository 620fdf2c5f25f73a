"""khoctl's usage errors: an unknown command is named with the commands
that exist (CLI11 alone said only "A subcommand is required"), on stderr or
as khoctl's JSON error, and every usage error exits 2."""

import json
import os
import subprocess
import unittest
from pathlib import Path

from khodbus import REPO
from test_completion import help_subcommands

BUILDDIR = Path(os.environ.get("KHOD_BUILDDIR", REPO / "build"))
KHOCTL = BUILDDIR / "src/khoctl/khoctl"


def khoctl(*args):
    return subprocess.run([str(KHOCTL), *args], capture_output=True, text=True, timeout=30)


class UnknownCommand(unittest.TestCase):
    def test_names_the_word_and_the_commands(self):
        r = khoctl("bogus")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        commands = ", ".join(help_subcommands())
        self.assertEqual(r.stderr, f"khoctl: unknown command 'bogus'; commands: {commands}\n")
        self.assertIn("kdump", commands)

    def test_as_json(self):
        for args in (("--json", "bogus"), ("bogus", "--json")):
            with self.subTest(args=args):
                r = khoctl(*args)
                self.assertEqual(r.returncode, 2)
                doc = json.loads(r.stdout)
                self.assertIs(doc["ok"], False)
                self.assertEqual(doc["error"]["name"], "org.kexec.khod1.Error.InvalidArgument")
                self.assertTrue(doc["error"]["message"].startswith("unknown command 'bogus'; commands: status, "))

    def test_under_a_group(self):
        r = khoctl("kdump", "bogus")
        self.assertEqual(r.returncode, 2)
        verbs = ", ".join(help_subcommands("kdump"))
        self.assertEqual(r.stderr, f"khoctl: unknown command 'kdump bogus'; kdump commands: {verbs}\n")

    def test_global_option_values_are_not_commands(self):
        r = khoctl("--sysroot", "/nonexistent-root", "bogus")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command 'bogus'", r.stderr)


class OtherUsageErrors(unittest.TestCase):
    def test_exit_2_with_cli11s_message(self):
        for args, says in ((("status", "extra"), "not expected: extra"),
                           (("kdump",), "A subcommand is required"),
                           (("prepare",), "--kernel is required"),
                           ((), "A subcommand is required")):
            with self.subTest(args=args):
                r = khoctl(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(says, r.stderr + r.stdout)

    def test_help_and_version_still_succeed(self):
        self.assertEqual(khoctl("--help").returncode, 0)
        self.assertEqual(khoctl("kdump", "--help").returncode, 0)
        r = khoctl("--version")
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith("khoctl "))


if __name__ == "__main__":
    unittest.main()
