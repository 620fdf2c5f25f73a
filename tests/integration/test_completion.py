"""The shell completion the build writes from khoctl's own command table
(shell-completion/, `khoctl --generate-completion SHELL`), driven the way
each shell drives it: bash's completion function with COMP_WORDS and
COMP_CWORD set, fish's `complete -C`, and zsh's completion system in a real
zle under zsh/zpty. Also: the scripts list exactly the commands khoctl's
--help lists, so a command added to khoctl is completed without more work."""

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import textwrap
import unittest
from pathlib import Path

from khodbus import REPO

BUILDDIR = Path(os.environ.get("KHOD_BUILDDIR", REPO / "build"))
KHOCTL = BUILDDIR / "src/khoctl/khoctl"
SCRIPTS = BUILDDIR / "shell-completion"


def help_subcommands(*path) -> list[str]:
    """The subcommands `khoctl PATH --help` lists, as CLI11 prints them."""
    out = subprocess.run([str(KHOCTL), *path, "--help"], capture_output=True, text=True, check=True).stdout
    section = out.split("Subcommands:", 1)[1] if "Subcommands:" in out else ""
    return [m.group(1) for m in re.finditer(r"^  (\S+)", section, re.M)]


class Bash(unittest.TestCase):
    script = SCRIPTS / "khoctl"

    def complete(self, line: str, cwd=None, words=None) -> list[str]:
        """What _khoctl offers for the last word of line ('' after a space)."""
        words = words or shlex.split(line) + ([""] if line.endswith(" ") else [])
        program = textwrap.dedent(f"""\
            source {shlex.quote(str(self.script))}
            COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})
            COMP_CWORD={len(words) - 1}
            COMP_LINE={shlex.quote(line)}
            COMP_POINT=${{#COMP_LINE}}
            _khoctl khoctl {shlex.quote(words[-1])} {shlex.quote(words[-2])}
            printf '%s\\n' "${{COMPREPLY[@]}}"
            """)
        r = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True,
                           cwd=cwd, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "", "the completion function wrote to stderr")
        return [w for w in r.stdout.splitlines() if w]

    def test_a_command_from_its_first_letters(self):
        self.assertEqual(self.complete("khoctl kd"), ["kdump"])
        self.assertEqual(self.complete("khoctl --json sc"), ["scratch"])

    def test_every_command_and_only_those(self):
        self.assertEqual(sorted(self.complete("khoctl ")), sorted(help_subcommands()))

    def test_a_groups_verbs(self):
        self.assertEqual(sorted(self.complete("khoctl kdump ")), sorted(help_subcommands("kdump")))
        self.assertEqual(sorted(self.complete("khoctl kdump ")), ["load", "reload", "status", "unload"])
        self.assertEqual(self.complete("khoctl luo pre"), ["preserve"])

    def test_options_of_a_subcommand_and_the_global_ones(self):
        got = self.complete("khoctl kdump load --")
        for option in ("--kernel", "--initrd", "--append", "--json", "--sysroot", "--help"):
            self.assertIn(option, got)
        self.assertNotIn("--reuse-cmdline", got, "prepare's option offered to kdump load")
        self.assertEqual(self.complete("khoctl prepare --reu"), ["--reuse-cmdline"])
        self.assertEqual(self.complete("khoctl status --no"), ["--no-mount"])

    def test_values_files_directories_and_choices(self):
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "vmlinuz-7.3").write_text("")
            (Path(d) / "vroot").mkdir()
            self.assertEqual(sorted(self.complete("khoctl prepare --kernel v", cwd=d)), ["vmlinuz-7.3", "vroot"])
            # bash splits --kernel=v at the '=' (COMP_WORDBREAKS).
            self.assertEqual(sorted(self.complete("khoctl prepare --kernel=v", cwd=d,
                                                  words=["khoctl", "prepare", "--kernel", "=", "v"])),
                             ["vmlinuz-7.3", "vroot"])
            self.assertEqual(self.complete("khoctl --sysroot v", cwd=d), ["vroot"])
            # After the value, the command goes on: no subcommand swallowed by --kernel.
            self.assertEqual(self.complete("khoctl prepare --kernel vmlinuz-7.3 --ini", cwd=d), ["--initrd"])
            self.assertIn("vmlinuz-7.3", self.complete("khoctl luo preserve vm1 1 v", cwd=d))
        self.assertEqual(sorted(self.complete("khoctl show fdt ")), ["in", "out"])
        self.assertEqual(self.complete("khoctl prepare --append "), [], "free text has no completion")
        self.assertEqual(self.complete("khoctl luo create "), [], "a session name is not guessed")

    def test_a_command_to_run_after_the_double_dash(self):
        self.assertIn("bash", self.complete("khoctl luo inhibit --who x -- bas"))

    def test_loaded_by_bash_completion_from_where_it_is_installed(self):
        """bash-completion loads a command's script on first use, inside a function."""
        framework = Path("/usr/share/bash-completion/bash_completion")
        if not framework.exists():
            self.skipTest("bash-completion is not installed (tools/setup installs it)")
        with tempfile.TemporaryDirectory() as d:
            completions = Path(d) / "bash-completion/completions"
            completions.mkdir(parents=True)
            shutil.copy(self.script, completions / "khoctl")
            program = textwrap.dedent(f"""\
                source {framework}
                __load_completion khoctl || exit 3
                complete -p khoctl
                COMP_WORDS=(khoctl kdump re) COMP_CWORD=2
                _khoctl khoctl re kdump
                printf '%s\\n' "${{COMPREPLY[@]}}"
                """)
            env = dict(os.environ, XDG_DATA_DIRS=d, BASH_COMPLETION_USER_DIR=str(Path(d) / "none"))
            r = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True,
                               env=env, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.splitlines(), ["complete -F _khoctl khoctl", "reload"])


@unittest.skipUnless(shutil.which("fish"), "fish is not installed (tools/setup installs it)")
class Fish(unittest.TestCase):
    script = SCRIPTS / "khoctl.fish"

    def complete(self, line: str, cwd=None) -> dict[str, str]:
        """complete -C: each offered word with its description."""
        program = f"source {shlex.quote(str(self.script))}; complete -C {shlex.quote(line)}"
        r = subprocess.run(["fish", "--no-config", "-c", program], capture_output=True, text=True, cwd=cwd,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        return dict((line.split("\t", 1) + [""])[:2] for line in r.stdout.splitlines())

    def test_commands_verbs_and_options(self):
        self.assertEqual(list(self.complete("khoctl kd")), ["kdump"])
        self.assertIn("crash kernel", self.complete("khoctl kd")["kdump"])
        self.assertEqual(sorted(self.complete("khoctl ")), sorted(help_subcommands()))
        self.assertEqual(sorted(self.complete("khoctl kdump ")), ["load", "reload", "status", "unload"])
        # A subcommand's name that is also a group's ("status") at the right level only.
        self.assertEqual(sorted(self.complete("khoctl luo s")), ["status"])
        got = self.complete("khoctl kdump load --")
        self.assertIn("--kernel", got)
        self.assertIn("--json", got)
        self.assertNotIn("--reuse-cmdline", got)

    def test_values(self):
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "vmlinuz-7.3").write_text("")
            self.assertIn("vmlinuz-7.3", self.complete("khoctl prepare --kernel vm", cwd=d))
            self.assertEqual(list(self.complete("khoctl prepare --kernel vmlinuz-7.3 --ini", cwd=d)), ["--initrd"])
        self.assertEqual(sorted(self.complete("khoctl show fdt ")), ["in", "out"])
        self.assertEqual(self.complete("khoctl luo create "), {})


# Runs zsh -f -i under zsh/zpty with the completion in $fpath and compinit,
# types LINE and a TAB, and records every match zsh's completion system
# adds (compadd wrapped: -O only lists the matches) in OUT.
ZSH_DRIVER = r"""
zmodload zsh/zpty || exit 3
zpty -b z zsh -f -i
zpty -w z "PS1='>'; fpath=($1 \$fpath); autoload -Uz compinit; compinit -u -D"
zpty -w z "zstyle ':completion:*' list-prompt ''; zstyle ':completion:*' menu no"
zpty -w z 'compadd() { if (( ${@[(I)-[OAD]]} )); then builtin compadd "$@"; return; fi; local -a hits; builtin compadd -O hits "$@"; print -rl -- $hits >> '$2'; builtin compadd "$@"; }'
zpty -w z "cd $4; bindkey -e"
# Then a command that says the completion is over, after ^A^K (zle's
# beginning-of-line, kill-line) clear the line. Not ^U: the terminal's own
# line kill, it would erase the line before zle saw the TAB if zle were
# between two commands when it came.
zpty -wn z "$3"$'\t'
zpty -w z $'\C-a\C-k'"print done > $2.done"
for i in {1..100}; do [[ -e $2.done ]] && break; sleep 0.1; done
zpty -d z
[[ -e $2.done ]]
"""


@unittest.skipUnless(shutil.which("zsh"), "zsh is not installed (tools/setup installs it)")
class Zsh(unittest.TestCase):
    def complete(self, line: str) -> list[str]:
        with tempfile.TemporaryDirectory() as d:
            fpath = Path(d) / "functions"
            fpath.mkdir()
            shutil.copy(SCRIPTS / "_khoctl", fpath / "_khoctl")
            work = Path(d) / "work"
            work.mkdir()
            (work / "vmlinuz-7.3").write_text("")
            out = Path(d) / "matches"
            r = subprocess.run(["zsh", "-f", "-c", ZSH_DRIVER, "zsh", str(fpath), str(out), line, str(work)],
                               capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, HOME=d, TERM="dumb"))
            self.assertEqual(r.returncode, 0, f"zsh did not finish completing: {r.stdout}{r.stderr}")
            return sorted(set(out.read_text().split())) if out.exists() else []

    def test_commands_verbs_options_and_values(self):
        self.assertEqual(self.complete("khoctl kd"), ["kdump"])
        self.assertEqual(self.complete("khoctl "), sorted(help_subcommands()))
        self.assertEqual(self.complete("khoctl kdump "), ["load", "reload", "status", "unload"])
        got = self.complete("khoctl kdump load --")
        self.assertIn("--kernel", got)
        self.assertIn("--json", got)
        self.assertNotIn("--reuse-cmdline", got)
        self.assertEqual(self.complete("khoctl show fdt "), ["in", "out"])
        self.assertEqual(self.complete("khoctl prepare --kernel vm"), ["vmlinuz-7.3"])


class Generator(unittest.TestCase):
    def test_scripts_are_khoctls_current_output(self):
        """The built scripts are what this khoctl writes: the build reran it."""
        for shell, name in (("bash", "khoctl"), ("zsh", "_khoctl"), ("fish", "khoctl.fish")):
            with self.subTest(shell=shell):
                r = subprocess.run([str(KHOCTL), "--generate-completion", shell], capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, (SCRIPTS / name).read_text())

    def test_an_unknown_shell_is_refused(self):
        r = subprocess.run([str(KHOCTL), "--generate-completion", "tcsh"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        self.assertIn("tcsh", r.stderr)


if __name__ == "__main__":
    unittest.main()
