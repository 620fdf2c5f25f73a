"""`khoctl status` on a kernel booted without kho=on (only a crash reservation).

KHO must be reported inactive and khoctl must still exit cleanly.
"""

from scenarios import status
from vmtest import CheckFailed

DESCRIPTION = "khoctl status without kho=on (crashkernel=256M only)"
APPEND = "crashkernel=256M"
BINARIES = ["khoctl"]
GUEST_SCRIPT = status.GUEST_SCRIPT


def check(result):
    status.check_runs(result)
    doc = result.json("status.json")
    truth = status.parse_truth(result.text("truth.txt"))
    try:
        status.check_status(doc, truth, kho=False, release=result.kernel_release)
    except CheckFailed as e:
        raise CheckFailed(f"{e}\n--- khoctl status --json ---\n{result.text('status.json')}") from None
