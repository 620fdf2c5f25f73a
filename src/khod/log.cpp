#include "log.hpp"

#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cstdarg>
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
        std::fprintf(stderr, "khod: %s: ", names[priority & 7]);
        std::vfprintf(stderr, format, ap);
        std::fputc('\n', stderr);
    }
    va_end(ap);
}

}  // namespace khod
