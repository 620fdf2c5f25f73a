"""A target without KHO is refused and nothing is lost; a good one then goes through.

Boot 1: khod under the fd store stand-in, session vm1 with 4 MiB of a seeded
pattern preserved through khod. `khoctl prepare` of a distribution kernel
built without KEXEC_HANDOVER (Debian's cloud kernel, fetched by
tools/fetch-distro-kernel) must fail with org.kexec.khod1.Error.TargetIncompatible
naming the missing compatible strings (kho-v4, luo-v5, memfd-v2) and what
booting it would drop (1 session, 4 MiB); `khoctl check --memfds` must say
the same, and the good kernel must pass it. The Handover properties other
than LastError, LiveUpdate's Outgoing and the kernel's kexec "loaded" flag are
as before the refusal. Then the live update into the good kernel (the one
booted) goes through, and boot 2 retrieves vm1 through khod with the
pattern's SHA-256 of boot 1.

The refused kernel is $KHOD_DISTRO_KERNEL, else the newest
vmlinuz-* in ${XDG_CACHE_HOME:-~/.cache}/khod/distro-kernel/ (where
tools/fetch-distro-kernel puts it; tools/test's vm tier runs it first). When
neither is there the scenario fails, before booting, saying where it looked.
"""

import os
from pathlib import Path

import vmtest
from scenarios import _luo
from scenarios._luo import APPEND, BINARIES, HOST_BINARIES, INCLUDE_BOOT, MEMORY  # noqa: F401
from vmtest import HarnessError, dig, expect, expect_eq

DESCRIPTION = "a target kernel without KHO is refused by Prepare, sessions kept; the good kernel then carries them"
BOOTS = 2
BOOT_TIMEOUT = 150

SIZE = "4M"
SIZE_BYTES = 4 << 20
SEED = _luo.SEED
REFUSED_GUEST = "/boot/refuse/bzImage"
INCOMPATIBLE = "org.kexec.khod1.Error.TargetIncompatible"


def distro_kernel_cache() -> Path:
    """Where tools/fetch-distro-kernel caches the distribution kernel."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "khod" / "distro-kernel"


def find_refused_kernel() -> tuple[Path | None, str]:
    """(the kernel, "") or (None, where it looked)."""
    env = os.environ.get("KHOD_DISTRO_KERNEL")
    if env:
        path = Path(env)
        return (path, "") if path.is_file() else (None, f"KHOD_DISTRO_KERNEL={env} is not a file")
    cache = distro_kernel_cache()
    # The same choice as the fetch script's: the last vmlinuz-* by name.
    found = sorted(p for p in cache.glob("vmlinuz-*") if p.is_file())
    if found:
        return found[-1], ""
    return None, f"KHOD_DISTRO_KERNEL is not set and {cache}/vmlinuz-* matches nothing"


REFUSED_KERNEL, _WHERE = find_refused_kernel()
FILES = {**_luo.FILES, str(REFUSED_KERNEL): REFUSED_GUEST} if REFUSED_KERNEL else dict(_luo.FILES)


def requires():
    if REFUSED_KERNEL is None:
        raise HarnessError(f"luo-refuse: no kernel without KHO to refuse: {_WHERE}; "
                           "run tools/fetch-distro-kernel (tools/test's vm tier does) or set "
                           "KHOD_DISTRO_KERNEL to a bzImage built without KEXEC_HANDOVER")


GUEST_SCRIPT = r'''
. /etc/khod-vm/guest-khod.sh
''' + _luo.GUEST_FUNCTIONS + r'''
handover_props() {
    busctl --json=short call org.kexec.khod1 /org/kexec/khod1 org.freedesktop.DBus.Properties \
        GetAll s org.kexec.khod1.Handover
}
kexec_loaded() { cat /sys/kernel/kexec/loaded 2>/dev/null || cat /sys/kernel/kexec_loaded; }
if [ "$1" = 1 ]; then
    start_khod_stored || exit 1
    # Boot 2 only retrieves, so the initramfs without /boot will do; it
    # keeps the kexec's initrd small (it carries the refused kernel already).
    cp /boot/initrd.gz /tmp/self-initrd.gz
    preserve_pattern ''' + f"{SIZE} {SEED}" + r'''
    handover_props > /tmp/handover-before.json; vm-put /tmp/handover-before.json handover-before.json
    vm-marker loaded-before "$(kexec_loaded)"
    khoctl --json prepare --kernel ''' + REFUSED_GUEST + r''' --initrd /tmp/self-initrd.gz \
        --reuse-cmdline --append "khod.stage=2" > /tmp/refused.json 2>&1
    vm-marker rc-refused $?
    vm-put /tmp/refused.json refused.json
    khoctl --json check --kernel ''' + REFUSED_GUEST + r''' --initrd /tmp/self-initrd.gz \
        --reuse-cmdline --memfds > /tmp/check-refused.json 2>&1
    vm-marker rc-check-refused $?
    vm-put /tmp/check-refused.json check-refused.json
    khoctl --json check --kernel /boot/bzImage --initrd /tmp/self-initrd.gz \
        --reuse-cmdline --memfds > /tmp/check-good.json 2>&1
    vm-marker rc-check-good $?
    vm-put /tmp/check-good.json check-good.json
    handover_props > /tmp/handover-after.json; vm-put /tmp/handover-after.json handover-after.json
    lu_prop Outgoing > /tmp/outgoing-after.json; vm-put /tmp/outgoing-after.json outgoing-after.json
    vm-marker loaded-after "$(kexec_loaded)"
    live_update_into /boot/bzImage
fi
start_khod_stored || exit 1
retrieve_pattern ''' + f"{SIZE} {SEED}" + r'''
'''


def missing_texts():
    """What target_compat says of each string this kernel hands over with memfds."""
    return ('has no KHO: "kho-v4" not found', 'has no LUO: "luo-v5" not found',
            'cannot restore memfds: "memfd-v2" not found')


def check_refusal(result, refused_release: str):
    expect_eq(result.marker("rc-refused", boot=1).payload, "1", "khoctl prepare of the kernel without KHO")
    refused = result.json("refused.json")
    expect_eq(dig(refused, "ok"), False, "refused.json ok")
    expect_eq(dig(refused, "error.name"), INCOMPATIBLE, "the Prepare error")
    message = dig(refused, "error.message")
    expect(message.startswith(f"target {refused_release} "),
           f"the refusal does not name the target {refused_release}: {message!r}")
    for text in missing_texts():
        expect(text in message, f"the refusal does not say {text!r}: {message!r}")
    expect(message.endswith("; booting it would drop 1 session, 4 MiB"),
           f"the refusal does not say what it would drop (1 session, 4 MiB): {message!r}")

    # khoctl check reads the same strings and says they are missing.
    expect_eq(result.marker("rc-check-refused", boot=1).payload, "1", "khoctl check of the kernel without KHO")
    check = result.json("check-refused.json")
    compat = dig(check, "target_compat")
    expect(compat is not None, "khoctl check did not run the target check (KHO not active?)")
    expect_eq(dig(compat, "ok"), False, "target_compat.ok of the refused kernel")
    expect_eq(dig(compat, "error_kind"), "TargetIncompatible", "target_compat.error_kind")
    expect_eq(dig(compat, "release"), refused_release, "target_compat.release")
    strings = {s["compatible"]: s["found"] for s in dig(compat, "strings")}
    for name in ("kho-v4", "luo-v5", "memfd-v2"):
        expect_eq(strings.get(name), False, f"{name} in khoctl check's strings {strings}")
    expect(all(not found for found in strings.values()), f"a kernel without KHO has one of {strings}")
    for text in missing_texts():
        expect(text in dig(compat, "error"), f"khoctl check's error does not say {text!r}: {compat['error']!r}")
    # The good kernel passes the same check: it is the strings that decided.
    expect_eq(result.marker("rc-check-good", boot=1).payload, "0", "khoctl check of the good kernel")
    good = dig(result.json("check-good.json"), "target_compat")
    expect_eq(dig(good, "ok"), True, f"target_compat.ok of the good kernel ({good.get('error')})")
    expect(all(s["found"] for s in dig(good, "strings")), f"the good kernel lacks a string: {good['strings']}")


def check_nothing_lost(result):
    before = dig(result.json("handover-before.json"), "data.0")
    after = dig(result.json("handover-after.json"), "data.0")
    expect_eq(dig(before, "State.data"), "idle", "Handover State before the refusal")
    expect_eq(dig(after, "State.data"), "idle", "Handover State after the refusal")
    last_error = dig(after, "LastError.data")
    expect(last_error.startswith("TargetIncompatible: ") and "kho-v4" in last_error,
           f"LastError after the refusal: {last_error!r}")
    changed = sorted(k for k in set(before) | set(after) if k != "LastError" and before.get(k) != after.get(k))
    expect(not changed, "Handover properties changed by the refusal: "
           + "; ".join(f"{k}: {before.get(k)} -> {after.get(k)}" for k in changed))
    expect_eq(result.json("outgoing-after.json"), result.json("outgoing-1.json"),
              "LiveUpdate Outgoing before and after the refusal")
    for word in ("loaded-before", "loaded-after"):
        expect_eq(result.marker(word, boot=1).payload, "0", f"kexec loaded ({word})")


def check(result):
    refused_release = vmtest.kernel_release(REFUSED_KERNEL)
    expect(refused_release != result.kernel_release,
           f"the refused kernel {REFUSED_KERNEL} is the kernel under test ({refused_release})")
    try:
        check_refusal(result, refused_release)
        check_nothing_lost(result)
    except vmtest.CheckFailed as e:
        shown = {n: result.text(n) for n in ("refused.json", "check-refused.json") if n in result.puts}
        raise vmtest.CheckFailed(f"{e}\n" + "\n".join(f"--- {n} ---\n{t}" for n, t in shown.items())) from None
    expect_eq(dig(result.json("prepare.json"), "handover.TargetKernel"), "/boot/bzImage",
              "the target staged after the refusal")
    _luo.check_carried(result, previous_release=result.kernel_release, size_bytes=SIZE_BYTES)

