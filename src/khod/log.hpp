// khod's log: the journal when journald runs, else stderr (initramfs,
// containers, the VM tests), so messages are never silently lost.
#pragma once

#include <syslog.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace khod {

// journald's socket is there to write to.
bool journal_available();

void log(int priority, const char* format, ...) __attribute__((format(printf, 2, 3)));

// An entry operators search for: a MESSAGE_ID from message_ids.hpp (explained
// by khod.catalog) and KHOD_* fields beside the message.
struct JournalEvent {
    const char* message_id = nullptr;  // 32 hex digits
    int priority = LOG_INFO;
    std::string message;
    std::vector<std::pair<std::string, std::string>> fields;  // name (KHOD_...), value

    // The value of a field, or nullptr.
    const std::string* field(const std::string& name) const;
};

// What the journal gets: "MESSAGE_ID=...", "PRIORITY=...", "MESSAGE=...", then
// each field as "NAME=value" (sd_journal_sendv() takes one such string per field).
std::vector<std::string> journal_fields(const JournalEvent& event);

// Logs an event: to the journal with all its fields, else as one stderr line
// with the fields in brackets after the message.
void log_event(const JournalEvent& event);

// Where log_event() sends events instead of the journal (tests); an empty
// function puts the journal back.
void set_event_sink(std::function<void(const JournalEvent&)> sink);

}  // namespace khod
