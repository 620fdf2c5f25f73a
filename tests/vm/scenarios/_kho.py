"""Checks shared by the scenarios that make one KHO kexec through khod."""

from vmtest import dig, expect, expect_eq


def check_loaded(result):
    """Stage 1: finalize answered "loaded" and the kernel has the image."""
    expect_eq(dig(result.json("finalize.json"), "handover.State"), "loaded", "State after finalize")
    expect_eq(result.marker("loaded", boot=1).payload, "1", "/sys/kernel/kexec/loaded after finalize")


def check_restored(result):
    """The second kernel booted through KHO: TEST_KEXEC_HANDOVER restored its
    data and the kernel logged the exec from this release."""
    stages = [m.stage for m in result.markers_of("boot")]
    expect_eq(stages, ["1", "2"], "stages of the boots")
    expect("KHO restore succeeded" in result.console, "the 2nd kernel did not print 'KHO restore succeeded'")
    expect("KHO restore failed" not in result.console, "the 2nd kernel printed 'KHO restore failed'")
    exec_from = f"KHO: exec from: {result.kernel_release} (count 1)"
    expect(exec_from in result.console, f"the 2nd kernel did not log '{exec_from}'")
