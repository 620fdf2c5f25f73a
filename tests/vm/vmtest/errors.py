"""The harness's exceptions: who is to blame when a run does not pass."""


class HarnessError(Exception):
    """The test could not be run as asked (missing QEMU, kernel, binary, ...)."""


class VMError(Exception):
    """The VM misbehaved: it hung, died early, or QEMU failed."""


class VMTimeout(VMError):
    pass


class VMExited(VMError):
    pass


class CheckFailed(AssertionError):
    """A scenario's expectation did not hold."""
