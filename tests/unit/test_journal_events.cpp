// khod's journal entries for operators: each event's MESSAGE_ID and KHOD_*
// fields, what log_event() hands the journal, and that every @FIELD@ the
// catalog (src/khod/khod.catalog) shows is one the event sets.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "journal_events.hpp"
#include "log.hpp"
#include "message_ids.hpp"

using namespace khod;

namespace {

std::string field(const JournalEvent& e, const std::string& name) {
    const std::string* v = e.field(name);
    return v ? *v : "<missing " + name + ">";
}

HandoverTarget target() {
    HandoverTarget t;
    t.kernel = "/boot/vmlinuz-7.3.4";
    t.initrd = "/boot/initrd.img-7.3.4";
    t.cmdline = "root=/dev/vda ro kho=on liveupdate=on kho_scratch=64M";
    return t;
}

LuoSessionEntry session(bool first_retrieved) {
    return LuoSessionEntry{
        "vm1", {1000, "vm1.service"}, {{1, 4096, 0, first_retrieved}, {2, 8192, 0, false}}, true};
}

ReloadReport report(bool ok, bool rolled_back, bool loaded_after) {
    return ReloadReport{"12 hotplug events",
                        12,
                        300'000,
                        250'000,
                        ok,
                        ok ? "" : "ENOEXEC",
                        "/boot/vmlinuz-crash",
                        rolled_back,
                        rolled_back ? "/boot/vmlinuz-good" : "",
                        loaded_after};
}

// Every event khod builds, by MESSAGE_ID.
std::map<std::string, JournalEvent> all_events() {
    LuoRecovery found;
    found.manifest_found = true;
    found.previous_release = "7.2.13";
    found.held = {"vm1", "vm2"};
    found.missing = {session(false)};
    std::map<std::string, JournalEvent> out;
    for (JournalEvent e : {
             live_update_staged_event(target(), "7.3.4", KhoAbi::stateless),
             live_update_exec_event(target(), "7.3.4", 2, 256U << 20),
             live_update_restored_event("7.3.4", true, found),
             *crash_kernel_event(report(true, false, true)),
             *crash_kernel_event(report(false, true, true)),
             *crash_kernel_event(report(false, false, false)),
             luo_session_released_event(session(true)),
             luo_session_lost_event(session(false), "7.2.13"),
         }) {
        const std::string id = e.message_id;
        out.emplace(id, std::move(e));
    }
    return out;
}

}  // namespace

TEST(JournalEvents, LiveUpdateStaged) {
    JournalEvent e = live_update_staged_event(target(), "7.3.4", KhoAbi::stateless);
    EXPECT_STREQ(e.message_id, message_id::live_update_staged);
    EXPECT_EQ(e.priority, LOG_NOTICE);
    EXPECT_EQ(field(e, "KHOD_KERNEL"), "/boot/vmlinuz-7.3.4");
    EXPECT_EQ(field(e, "KHOD_INITRD"), "/boot/initrd.img-7.3.4");
    EXPECT_EQ(field(e, "KHOD_CMDLINE"), target().cmdline);
    EXPECT_EQ(field(e, "KHOD_RELEASE"), "7.3.4");
    EXPECT_EQ(field(e, "KHOD_KHO_ABI"), "stateless");
    EXPECT_NE(e.message.find("/boot/vmlinuz-7.3.4 (7.3.4)"), std::string::npos) << e.message;
    // A header without a version string: said, not left empty.
    EXPECT_EQ(field(live_update_staged_event(target(), "", KhoAbi::finalize), "KHOD_RELEASE"), "unknown");
}

TEST(JournalEvents, LiveUpdateExec) {
    JournalEvent e = live_update_exec_event(target(), "7.3.4", 2, 256U << 20);
    EXPECT_STREQ(e.message_id, message_id::live_update_exec);
    EXPECT_EQ(field(e, "KHOD_KERNEL"), "/boot/vmlinuz-7.3.4");
    EXPECT_EQ(field(e, "KHOD_RELEASE"), "7.3.4");
    EXPECT_EQ(field(e, "KHOD_SESSIONS"), "2");
    EXPECT_EQ(field(e, "KHOD_SESSION_BYTES"), "268435456");
}

TEST(JournalEvents, LiveUpdateRestored) {
    LuoRecovery found;
    found.manifest_found = true;
    found.previous_release = "7.2.13";
    found.held = {"vm1"};
    JournalEvent e = live_update_restored_event("7.3.4", true, found);
    EXPECT_STREQ(e.message_id, message_id::live_update_restored);
    EXPECT_EQ(field(e, "KHOD_RELEASE"), "7.3.4");
    EXPECT_EQ(field(e, "KHOD_PREVIOUS_RELEASE"), "7.2.13");
    EXPECT_EQ(field(e, "KHOD_KHO_INCOMING"), "yes");
    EXPECT_EQ(field(e, "KHOD_SESSIONS"), "1");
    EXPECT_EQ(field(e, "KHOD_SESSIONS_LOST"), "0");
    // KHO alone (no LUO sessions, no manifest).
    JournalEvent kho = live_update_restored_event("7.3.4", true, LuoRecovery{});
    EXPECT_EQ(field(kho, "KHOD_PREVIOUS_RELEASE"), "unknown");
    EXPECT_NE(kho.message.find("no khod manifest"), std::string::npos) << kho.message;
}

TEST(JournalEvents, CrashKernelOutcomes) {
    auto reloaded = crash_kernel_event(report(true, false, true));
    ASSERT_TRUE(reloaded);
    EXPECT_STREQ(reloaded->message_id, message_id::crash_kernel_reloaded);
    EXPECT_EQ(field(*reloaded, "KHOD_KERNEL"), "/boot/vmlinuz-crash");
    EXPECT_EQ(field(*reloaded, "KHOD_RELOAD_REASON"), "12 hotplug events");
    EXPECT_EQ(field(*reloaded, "KHOD_EVENTS"), "12");
    EXPECT_EQ(field(*reloaded, "KHOD_DURATION_USEC"), "300000");
    EXPECT_EQ(field(*reloaded, "KHOD_UNLOADED_USEC"), "250000");

    auto back = crash_kernel_event(report(false, true, true));
    ASSERT_TRUE(back);
    EXPECT_STREQ(back->message_id, message_id::crash_kernel_rolled_back);
    EXPECT_EQ(field(*back, "KHOD_ROLLBACK_KERNEL"), "/boot/vmlinuz-good");
    EXPECT_EQ(field(*back, "KHOD_ERROR"), "ENOEXEC");
    EXPECT_EQ(field(*back, "KHOD_RELOAD_REASON"), "12 hotplug events");

    auto none = crash_kernel_event(report(false, false, false));
    ASSERT_TRUE(none);
    EXPECT_STREQ(none->message_id, message_id::crash_kernel_unloaded);
    EXPECT_EQ(none->priority, LOG_ERR);
    EXPECT_EQ(field(*none, "KHOD_UNLOADED_USEC"), "250000");
    EXPECT_EQ(none->field("KHOD_ROLLBACK_KERNEL"), nullptr);

    // Refused before the kernel freed the old image: nothing to search for.
    EXPECT_FALSE(crash_kernel_event(report(false, false, true)));
}

TEST(JournalEvents, LuoSessions) {
    JournalEvent released = luo_session_released_event(session(true));
    EXPECT_STREQ(released.message_id, message_id::luo_session_released);
    EXPECT_EQ(field(released, "KHOD_SESSION"), "vm1");
    EXPECT_EQ(field(released, "KHOD_UID"), "1000");
    EXPECT_EQ(field(released, "KHOD_UNIT"), "vm1.service");
    EXPECT_EQ(field(released, "KHOD_FILES"), "2");
    EXPECT_EQ(field(released, "KHOD_FILES_UNRETRIEVED"), "1");

    JournalEvent lost = luo_session_lost_event(session(false), "7.2.13");
    EXPECT_STREQ(lost.message_id, message_id::luo_session_lost);
    EXPECT_EQ(field(lost, "KHOD_SESSION"), "vm1");
    EXPECT_EQ(field(lost, "KHOD_UID"), "1000");
    EXPECT_EQ(field(lost, "KHOD_PREVIOUS_RELEASE"), "7.2.13");
}

TEST(JournalEvents, EveryIdHasOneEventAndTheFieldsAreJournalFields) {
    const auto events = all_events();
    EXPECT_EQ(events.size(), 8U) << "two events share a MESSAGE_ID";
    for (const auto& [id, e] : events) {
        EXPECT_TRUE(std::regex_match(id, std::regex("[0-9a-f]{32}"))) << id;
        for (const auto& [name, value] : e.fields)
            // journald's rule: uppercase letters, digits and _, not starting with _.
            EXPECT_TRUE(std::regex_match(name, std::regex("KHOD_[A-Z0-9_]+"))) << name;
    }
}

TEST(JournalEvents, WhatTheJournalGets) {
    JournalEvent e = *crash_kernel_event(report(false, true, true));
    const std::vector<std::string> fields = journal_fields(e);
    ASSERT_EQ(fields.size(), 3 + e.fields.size());
    EXPECT_EQ(fields[0], std::string("MESSAGE_ID=") + message_id::crash_kernel_rolled_back);
    EXPECT_EQ(fields[1], "PRIORITY=4");
    EXPECT_EQ(fields[2], "MESSAGE=" + e.message);
    EXPECT_EQ(fields[3], "KHOD_KERNEL=/boot/vmlinuz-crash");
    EXPECT_EQ(fields.back(), "KHOD_UNLOADED_USEC=250000");
}

TEST(JournalEvents, LogEventGoesToTheInjectedSink) {
    std::vector<JournalEvent> seen;
    set_event_sink([&seen](const JournalEvent& e) { seen.push_back(e); });
    log_event(luo_session_lost_event(session(false), "7.2.13"));
    set_event_sink({});
    ASSERT_EQ(seen.size(), 1U);
    EXPECT_STREQ(seen[0].message_id, message_id::luo_session_lost);
    EXPECT_EQ(field(seen[0], "KHOD_SESSION"), "vm1");
}

TEST(JournalEvents, TheCatalogShowsOnlyFieldsTheEventSets) {
    std::ifstream in(KHOD_CATALOG);
    ASSERT_TRUE(in) << KHOD_CATALOG;
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    const auto events = all_events();
    const std::regex header("^-- ([0-9a-f]{32})$", std::regex::multiline);
    const std::regex placeholder("@([A-Z0-9_]+)@");
    std::set<std::string> checked;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), header); it != std::sregex_iterator();
         ++it) {
        const std::string id = (*it)[1];
        const auto begin = static_cast<std::size_t>(it->position() + it->length());
        const std::size_t end = text.find("\n-- ", begin);
        const std::string entry =
            text.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
        auto event = events.find(id);
        ASSERT_NE(event, events.end()) << id << " has no event";
        for (auto p = std::sregex_iterator(entry.begin(), entry.end(), placeholder);
             p != std::sregex_iterator(); ++p)
            EXPECT_NE(event->second.field((*p)[1]), nullptr) << id << ": @" << (*p)[1] << "@ is never set";
        checked.insert(id);
    }
    EXPECT_EQ(checked.size(), events.size());
}
