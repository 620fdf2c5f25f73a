#include "log.hpp"

#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cstdarg>
#include <cstddef>
#include <cstdio>

namespace khod {

bool journal_available() {
    static const bool available = ::access("/run/systemd/journal/socket", W_OK) == 0;
    return available;
}

void log(int priority, const char* format, ...) {
    va_list ap;
    va_start(ap, format);
    if (journal_available()) {
        sd_journal_printv(priority, format, ap);
    } else {
        static const char* const names[] = {"emerg",   "alert",  "crit", "error",
                                            "warning", "notice", "info", "debug"};
        // One write(2) per line: stderr is unbuffered and may be shared
        // (a supervisor's log, /dev/kmsg, where each write is a record).
        char line[2048];
        int head = std::snprintf(line, sizeof line, "khod: %s: ", names[priority & 7]);
        int body = std::vsnprintf(line + head, sizeof line - static_cast<std::size_t>(head) - 1, format, ap);
        std::size_t len = static_cast<std::size_t>(head) + static_cast<std::size_t>(body < 0 ? 0 : body);
        if (len > sizeof line - 2) len = sizeof line - 2;  // cut long lines, keep the newline
        line[len++] = '\n';
        (void)!::write(STDERR_FILENO, line, len);
    }
    va_end(ap);
}

}  // namespace khod
