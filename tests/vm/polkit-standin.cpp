// Test-only: a stand-in for polkit's authority on a private bus (the bus
// tier) or in the busybox VM guest, where polkitd does not run. It is NOT
// polkit and proves nothing about polkit itself (no sessions, no agents, no
// .policy defaults); the real proof belongs to the systemd guest tier. It
// answers khod's CheckAuthorization from a rules file, so a test can say
// which uid gets which action.
//
//   polkit-standin --rules FILE [--log FILE] [--delay-ms N]
//
// - Owns org.freedesktop.PolicyKit1 on the system bus (DBUS_SYSTEM_BUS_ADDRESS)
//   and serves CheckAuthorization((sa{sv})sa{ss}us) -> (bba{ss}) on
//   /org/freedesktop/PolicyKit1/Authority; prints "ready" when it does.
// - The subject must be a "system-bus-name"; its uid comes from the bus.
// - FILE is read again at every query; one rule per line, the first that
//   matches wins, none matching means no:
//       ACTION|* UID|* yes|no|auth
//   auth: yes when the call allows interactive authorization (as if an agent
//   had asked and the user had answered), otherwise a challenge.
// - Every query appends "ACTION uid=U interactive=0|1 -> ANSWER" to the log.
// - --delay-ms holds each answer back (a slow authority), blocking only itself.
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

namespace {

struct Options {
    std::string rules;
    std::string log;
    unsigned delay_ms = 0;
};
Options options;

enum class Answer { yes, no, challenge };

Answer decide(const std::string& action, uid_t uid, bool interactive) {
    std::ifstream rules(options.rules);
    std::string line;
    while (std::getline(rules, line)) {
        std::istringstream words(line);
        std::string rule_action, rule_uid, verdict;
        if (!(words >> rule_action >> rule_uid >> verdict) || rule_action[0] == '#') continue;
        if (rule_action != "*" && rule_action != action) continue;
        if (rule_uid != "*" && rule_uid != std::to_string(uid)) continue;
        if (verdict == "yes") return Answer::yes;
        if (verdict == "auth") return interactive ? Answer::yes : Answer::challenge;
        return Answer::no;
    }
    return Answer::no;
}

const char* to_string(Answer a) {
    return a == Answer::yes ? "yes" : a == Answer::challenge ? "challenge" : "no";
}

// The subject's "name" out of (sa{sv}); nullptr when it is not a bus name.
int read_subject(sd_bus_message* m, const char** name) {
    const char* kind = nullptr;
    int r = sd_bus_message_enter_container(m, 'r', "sa{sv}");
    if (r < 0 || (r = sd_bus_message_read(m, "s", &kind)) < 0) return r;
    if (std::strcmp(kind, "system-bus-name") != 0) return -EPROTONOSUPPORT;
    if ((r = sd_bus_message_enter_container(m, 'a', "{sv}")) < 0) return r;
    while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
        const char* key = nullptr;
        if ((r = sd_bus_message_read(m, "s", &key)) < 0) return r;
        if (std::strcmp(key, "name") == 0) {
            if ((r = sd_bus_message_read(m, "v", "s", name)) < 0) return r;
        } else if ((r = sd_bus_message_skip(m, "v")) < 0) {
            return r;
        }
        if ((r = sd_bus_message_exit_container(m)) < 0) return r;
    }
    if (r < 0 || (r = sd_bus_message_exit_container(m)) < 0) return r;
    return sd_bus_message_exit_container(m);
}

int check_authorization(sd_bus_message* m, void* /*userdata*/, sd_bus_error* error) {
    const char* name = nullptr;
    const char* action = nullptr;
    std::uint32_t flags = 0;
    int r = read_subject(m, &name);
    if (r < 0 || !name)
        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "subject must be a bus name");
    if ((r = sd_bus_message_read(m, "s", &action)) < 0 || (r = sd_bus_message_skip(m, "a{ss}")) < 0 ||
        (r = sd_bus_message_read(m, "u", &flags)) < 0)
        return r;
    sd_bus_creds* creds = nullptr;
    uid_t uid = 0;
    r = sd_bus_get_name_creds(sd_bus_message_get_bus(m), name, SD_BUS_CREDS_EUID | SD_BUS_CREDS_UID, &creds);
    if (r >= 0 && sd_bus_creds_get_euid(creds, &uid) < 0) r = sd_bus_creds_get_uid(creds, &uid);
    sd_bus_creds_unref(creds);
    if (r < 0)
        return sd_bus_error_set_errnof(error, -r, "cannot tell the uid of %s: %s", name, std::strerror(-r));
    const bool interactive = flags & 1u;
    const Answer answer = decide(action, uid, interactive);
    if (!options.log.empty()) {
        std::ofstream log(options.log, std::ios::app);
        log << action << " uid=" << uid << " interactive=" << (interactive ? 1 : 0) << " -> "
            << to_string(answer) << '\n';
    }
    if (options.delay_ms) usleep(options.delay_ms * 1000);
    sd_bus_message* reply = nullptr;
    if ((r = sd_bus_message_new_method_return(m, &reply)) < 0) return r;
    r = sd_bus_message_append(reply, "(bba{ss})", answer == Answer::yes, answer == Answer::challenge, 0);
    if (r >= 0) r = sd_bus_send(nullptr, reply, nullptr);
    sd_bus_message_unref(reply);
    return r;
}

const sd_bus_vtable authority_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("CheckAuthorization", "(sa{sv})sa{ss}us", "(bba{ss})", check_authorization,
                  SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

int usage() {
    std::cerr << "usage: polkit-standin --rules FILE [--log FILE] [--delay-ms N]\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        if (flag == "--rules")
            options.rules = argv[i + 1];
        else if (flag == "--log")
            options.log = argv[i + 1];
        else if (flag == "--delay-ms")
            options.delay_ms = static_cast<unsigned>(std::stoul(argv[i + 1]));
        else
            return usage();
    }
    if (options.rules.empty() || argc % 2 == 0) return usage();
    sd_bus* bus = nullptr;
    int r = sd_bus_open_system(&bus);
    if (r >= 0)
        r = sd_bus_add_object_vtable(bus, nullptr, "/org/freedesktop/PolicyKit1/Authority",
                                     "org.freedesktop.PolicyKit1.Authority", authority_vtable, nullptr);
    if (r >= 0) r = sd_bus_request_name(bus, "org.freedesktop.PolicyKit1", 0);
    if (r < 0) {
        std::cerr << "polkit-standin: cannot serve org.freedesktop.PolicyKit1: " << std::strerror(-r) << '\n';
        return 1;
    }
    std::cout << "ready" << std::endl;
    for (;;) {
        if ((r = sd_bus_process(bus, nullptr)) < 0) break;
        if (r > 0) continue;
        if ((r = sd_bus_wait(bus, UINT64_MAX)) < 0) break;
    }
    std::cerr << "polkit-standin: " << std::strerror(-r) << '\n';
    sd_bus_flush_close_unref(bus);
    return 1;
}
