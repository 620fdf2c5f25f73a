// khod's log: the journal when journald runs, else stderr (initramfs,
// containers, the VM tests), so messages are never silently lost.
#pragma once

#include <syslog.h>

namespace khod {

// journald's socket is there to write to.
bool journal_available();

void log(int priority, const char* format, ...) __attribute__((format(printf, 2, 3)));

}  // namespace khod
