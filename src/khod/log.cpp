// Entries name their MESSAGE_ID, not this file and line.
#define SD_JOURNAL_SUPPRESS_LOCATION
#include "log.hpp"

#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cstdarg>
#include <cstddef>
#include <cstdio>

namespace khod {

namespace {

const char* const priority_names[] = {"emerg",   "alert",  "crit", "error",
                                      "warning", "notice", "info", "debug"};

// One write(2) per line: stderr is unbuffered and may be shared
// (a supervisor's log, /dev/kmsg, where each write is a record).
void write_linev(int priority, const char* format, va_list ap) {
    char line[2048];
    int head = std::snprintf(line, sizeof line, "khod: %s: ", priority_names[priority & 7]);
    int body = std::vsnprintf(line + head, sizeof line - static_cast<std::size_t>(head) - 1, format, ap);
    std::size_t len = static_cast<std::size_t>(head) + static_cast<std::size_t>(body < 0 ? 0 : body);
    if (len > sizeof line - 2) len = sizeof line - 2;  // cut long lines, keep the newline
    line[len++] = '\n';
    (void)!::write(STDERR_FILENO, line, len);
}

void write_line(int priority, const char* format, ...) __attribute__((format(printf, 2, 3)));
void write_line(int priority, const char* format, ...) {
    va_list ap;
    va_start(ap, format);
    write_linev(priority, format, ap);
    va_end(ap);
}

std::function<void(const JournalEvent&)>& event_sink() {
    static std::function<void(const JournalEvent&)> sink;
    return sink;
}

}  // namespace

bool journal_available() {
    static const bool available = ::access("/run/systemd/journal/socket", W_OK) == 0;
    return available;
}

void log(int priority, const char* format, ...) {
    va_list ap;
    va_start(ap, format);
    if (journal_available())
        sd_journal_printv(priority, format, ap);
    else
        write_linev(priority, format, ap);
    va_end(ap);
}

const std::string* JournalEvent::field(const std::string& name) const {
    for (const auto& [n, v] : fields)
        if (n == name) return &v;
    return nullptr;
}

std::vector<std::string> journal_fields(const JournalEvent& event) {
    std::vector<std::string> out;
    out.reserve(event.fields.size() + 3);
    out.push_back(std::string("MESSAGE_ID=") + (event.message_id ? event.message_id : ""));
    out.push_back("PRIORITY=" + std::to_string(event.priority & 7));
    out.push_back("MESSAGE=" + event.message);
    for (const auto& [name, value] : event.fields) out.push_back(name + "=" + value);
    return out;
}

void log_event(const JournalEvent& event) {
    if (const auto& sink = event_sink()) {
        sink(event);
        return;
    }
    const std::vector<std::string> fields = journal_fields(event);
    if (journal_available()) {
        // sd_journal_sendv() copes with values holding newlines (a command line may).
        std::vector<iovec> iov;
        iov.reserve(fields.size());
        for (const std::string& f : fields)
            iov.push_back(iovec{const_cast<char*>(f.data()), f.size()});  // iovec has no const variant
        if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0) return;
    }
    // Without journald the fields still reach whoever reads stderr.
    std::string extra;
    for (std::size_t i = 0; i < fields.size(); ++i)
        if (i != 1 && i != 2) extra += (extra.empty() ? "" : " ") + fields[i];  // not PRIORITY, MESSAGE
    write_line(event.priority, "%s [%s]", event.message.c_str(), extra.c_str());
}

void set_event_sink(std::function<void(const JournalEvent&)> sink) {
    event_sink() = std::move(sink);
}

}  // namespace khod
