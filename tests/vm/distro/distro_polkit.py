"""khod's polkit actions under the real polkitd, on their own (distro/_polkit.py).

tools/test does not run this one: distro-enable runs the same guest script
and checks at the end of its own boot, which saves CI a guest boot. Run it
by name to look at polkit alone.
"""

from distro import _polkit

DESCRIPTION = "real polkitd: mutating calls refused to a user, allowed to a rule's admin (also inside distro-enable)"
KERNEL = "7.2"
FILES = _polkit.FILES
GUEST_SCRIPT = _polkit.GUEST_SCRIPT
check = _polkit.check
