// khoctl luo: LUO sessions held by khod (create, preserve, retrieve, destroy,
// finish), the barrier's inhibitors, and the last live update's phases.
// khod owns every session; these commands only ask it.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bus_client.hpp"
#include "commands.hpp"
#include "khod/luo/memfd.hpp"

namespace khoctl {

namespace {

// Outgoing a(susa(ttu)) and Incoming a(susa(ttub)) as named fields.
nlohmann::json sessions_json(const nlohmann::json& sessions, bool incoming) {
    nlohmann::json out = nlohmann::json::array();
    if (!sessions.is_array()) return out;
    for (const auto& s : sessions) {
        if (!s.is_array() || s.size() < 4) continue;
        nlohmann::json files = nlohmann::json::array();
        for (const auto& f : s[3]) {
            if (!f.is_array() || f.size() < 3) continue;
            nlohmann::json file{{"token", f[0]}, {"size", f[1]}, {"seals", f[2]}};
            if (incoming && f.size() > 3) file["retrieved"] = f[3];
            files.push_back(std::move(file));
        }
        out.push_back({{"name", s[0]}, {"uid", s[1]}, {"unit", s[2]}, {"files", std::move(files)}});
    }
    return out;
}

nlohmann::json luo_json(const nlohmann::json& p) {
    nlohmann::json inhibitors = nlohmann::json::array();
    for (const auto& i : p.value("Inhibitors", nlohmann::json::array()))
        if (i.is_array() && i.size() == 4)
            inhibitors.push_back({{"who", i[0]}, {"why", i[1]}, {"uid", i[2]}, {"pid", i[3]}});
    nlohmann::json phases = nlohmann::json::array();
    for (const auto& ph : p.value("LastUpdatePhases", nlohmann::json::array()))
        if (ph.is_array() && ph.size() == 2) phases.push_back({{"phase", ph[0]}, {"realtime_usec", ph[1]}});
    return {{"enabled", p.value("Enabled", false)},
            {"liveupdate_number", p.value("LiveUpdateNumber", std::uint64_t{0})},
            {"previous_release", p.value("PreviousRelease", std::string())},
            {"outgoing", sessions_json(p.value("Outgoing", nlohmann::json()), false)},
            {"incoming", sessions_json(p.value("Incoming", nlohmann::json()), true)},
            {"inhibitors", std::move(inhibitors)},
            {"last_update_phases", std::move(phases)}};
}

void print_sessions(const char* title, const nlohmann::json& sessions) {
    std::cout << title << ": " << (sessions.empty() ? "none" : "") << '\n';
    for (const auto& s : sessions) {
        std::cout << "  " << s["name"].get<std::string>() << "  uid " << s["uid"];
        if (!s["unit"].get<std::string>().empty()) std::cout << "  unit " << s["unit"].get<std::string>();
        std::cout << "  " << s["files"].size() << " file(s)\n";
        for (const auto& f : s["files"]) {
            std::cout << "    token " << f["token"] << "  " << f["size"] << " bytes  seals 0x" << std::hex
                      << f["seals"].get<std::uint32_t>() << std::dec;
            if (f.contains("retrieved"))
                std::cout << (f["retrieved"].get<bool>() ? "  retrieved" : "  waiting");
            std::cout << '\n';
        }
    }
}

// Each phase with its distance from the first, in milliseconds.
void print_phases(const nlohmann::json& phases) {
    if (phases.empty()) return;
    std::cout << "last live update:\n";
    auto first = phases[0]["realtime_usec"].get<std::uint64_t>();
    for (const auto& ph : phases) {
        auto at = ph["realtime_usec"].get<std::uint64_t>();
        std::cout << "  " << std::left << std::setw(22) << ph["phase"].get<std::string>() << std::right;
        if (at == 0)
            std::cout << "-\n";
        else
            std::cout << "+" << std::fixed << std::setprecision(1)
                      << (static_cast<double>(at) - static_cast<double>(first)) / 1000.0 << " ms\n";
    }
}

void print_luo(const nlohmann::json& p) {
    nlohmann::json j = luo_json(p);
    std::cout << "LUO: " << (j["enabled"].get<bool>() ? "enabled" : "not available (no /dev/liveupdate)")
              << ", live update number " << j["liveupdate_number"];
    if (!j["previous_release"].get<std::string>().empty())
        std::cout << ", came from " << j["previous_release"].get<std::string>();
    std::cout << '\n';
    print_sessions("outgoing", j["outgoing"]);
    print_sessions("incoming", j["incoming"]);
    for (const auto& i : j["inhibitors"])
        std::cout << "inhibitor: " << i["who"].get<std::string>() << " (" << i["why"].get<std::string>()
                  << "), uid " << i["uid"] << ", pid " << i["pid"] << '\n';
    print_phases(j["last_update_phases"]);
}

const InterfaceView luo_view{khod1::liveupdate_interface, "liveupdate", luo_json, print_luo};

int call_and_show(const GlobalOptions& global, const char* method, const char* done, const char* signature,
                  auto... args) {
    return khoctl::call_and_show(luo_view, global.json, method, done, signature, args...);
}

int fail_local(const GlobalOptions& global, const std::string& message) {
    return report_failure({khod1::error::invalid_argument, message}, global.json);
}

// The fd to preserve: an inherited one as it is (a client's memfd), or a
// sealed memfd with a copy of FILE.
khod::UniqueFd preserve_source(const std::string& file, int inherited, std::string& problem) {
    if (inherited >= 0) {
        struct stat st {};
        if (fstat(inherited, &st) < 0) {
            problem = "--fd " + std::to_string(inherited) + ": " + std::strerror(errno);
            return khod::UniqueFd();
        }
        khod::UniqueFd dup(fcntl(inherited, F_DUPFD_CLOEXEC, 3));
        if (!dup.valid()) problem = "--fd " + std::to_string(inherited) + ": " + std::strerror(errno);
        return dup;
    }
    khod::UniqueFd in(open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    struct stat st {};
    if (!in.valid() || fstat(in.get(), &st) < 0) {
        problem = "cannot open " + file + ": " + std::strerror(errno);
        return khod::UniqueFd();
    }
    // A device or FIFO would be copied without end (/dev/zero fills memory).
    if (!S_ISREG(st.st_mode)) {
        problem = file + " is not a regular file; pass a memfd with --fd instead";
        return khod::UniqueFd();
    }
    auto copy = khod::sealed_memfd_copy("khoctl:" + file, in.get());
    if (!copy) {
        problem = "copying " + file + " into a memfd: " + copy.error().describe();
        return khod::UniqueFd();
    }
    return std::move(copy.value());
}

int preserve(const GlobalOptions& global, const std::string& session, std::uint64_t token,
             const std::string& file, int inherited) {
    if (file.empty() == (inherited < 0)) return fail_local(global, "give either FILE or --fd N");
    std::string problem;
    khod::UniqueFd fd = preserve_source(file, inherited, problem);
    if (!fd.valid()) return fail_local(global, problem);
    return call_and_show(global, "Preserve", "preserved", "sth", session.c_str(), token, fd.get());
}

// Copies everything from in (a memfd from khod) to out; false with errno set.
bool copy_all(int in, int out) {
    std::vector<char> buf(1 << 20);
    off_t offset = 0;
    for (;;) {
        ssize_t n = pread(in, buf.data(), buf.size(), offset);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) return true;
        offset += n;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf.data() + done, static_cast<std::size_t>(n - done));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return false;
            done += w;
        }
    }
}

int retrieve(const GlobalOptions& global, const std::string& session, std::uint64_t token,
             const std::string& output) {
    if (output == "-" && global.json) return fail_local(global, "--json and OUTPUT - both want stdout");
    BusFailure failure;
    auto client = KhodClient::connect(failure);
    if (!client) return report_failure(failure, global.json);
    khod::UniqueFd fd =
        client->call_for_fd(khod1::liveupdate_interface, "Retrieve", failure, "st", session.c_str(), token);
    if (!fd.valid()) return report_failure(failure, global.json);
    bool to_stdout = output == "-";
    khod::UniqueFd out(to_stdout ? dup(STDOUT_FILENO)
                                 : open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!out.valid()) return fail_local(global, "cannot open " + output + ": " + std::strerror(errno));
    if (!copy_all(fd.get(), out.get()))
        return report_failure({SD_BUS_ERROR_IO_ERROR, "writing " + output + ": " + std::strerror(errno)},
                              global.json);
    if (to_stdout) return 0;
    return show_after_call(*client, luo_view, global.json, ("retrieved into " + output).c_str());
}

int finish_all(const GlobalOptions& global) {
    BusFailure failure;
    auto client = KhodClient::connect(failure);
    if (!client) return report_failure(failure, global.json);
    nlohmann::json props;
    if (!client->properties(khod1::liveupdate_interface, props, failure))
        return report_failure(failure, global.json);
    // Root finishes every session; anyone else their own.
    for (const auto& s : sessions_json(props.value("Incoming", nlohmann::json()), true)) {
        if (geteuid() != 0 && s["uid"].get<uid_t>() != geteuid()) continue;
        std::string name = s["name"];
        if (!client->call(khod1::liveupdate_interface, "FinishSession", failure, "s", name.c_str()))
            return report_failure(failure, global.json);
    }
    return show_after_call(*client, luo_view, global.json, "finished every incoming session");
}

// Holds an inhibitor while CMD runs, like systemd-inhibit: the fd is ours,
// CMD does not inherit it, and it closes when CMD ends.
int inhibit(const GlobalOptions& global, const std::string& who, const std::string& why,
            const std::vector<std::string>& command) {
    if (command.empty()) return fail_local(global, "give the command to run while the inhibitor is held");
    BusFailure failure;
    auto client = KhodClient::connect(failure);
    if (!client) return report_failure(failure, global.json);
    khod::UniqueFd fd =
        client->call_for_fd(khod1::liveupdate_interface, "Inhibit", failure, "ss", who.c_str(), why.c_str());
    if (!fd.valid()) return report_failure(failure, global.json);
    pid_t child = fork();
    if (child < 0) return fail_local(global, std::string("fork: ") + std::strerror(errno));
    if (child == 0) {
        std::vector<char*> argv;
        for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execvp(argv[0], argv.data());
        std::cerr << "khoctl: cannot run " << command[0] << ": " << std::strerror(errno) << '\n';
        _exit(127);
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

struct LuoArgs {
    std::string session, file, output, who = "khoctl", why = "inhibit";
    std::uint64_t token = 0;
    int fd = -1;
    bool all = false;
    std::vector<std::string> command;
};

void add_session_commands(CLI::App* luo, const GlobalOptions& global, Runner& selected,
                          const std::shared_ptr<LuoArgs>& a) {
    CLI::App* create = luo->add_subcommand("create", "Create an outgoing session owned by you");
    create->add_option("SESSION", a->session, "Session name (1-63 bytes of [A-Za-z0-9_.@+-])")->required();
    create->callback([&global, &selected, a] {
        selected = [&global, a] {
            return call_and_show(global, "CreateSession", "created", "s", a->session.c_str());
        };
    });

    CLI::App* pres = luo->add_subcommand("preserve", "Preserve a memfd (or a copy of FILE) under TOKEN");
    pres->add_option("SESSION", a->session, "Your session")->required();
    pres->add_option("TOKEN", a->token, "The number to retrieve it by after the kexec")->required();
    pres->add_option("FILE", a->file, "Copy this file into a sealed memfd and preserve that");
    pres->add_option("--fd", a->fd, "Preserve this inherited fd (a shmem memfd) as it is")->type_name("N");
    pres->callback([&global, &selected, a] {
        selected = [&global, a] { return preserve(global, a->session, a->token, a->file, a->fd); };
    });

    CLI::App* destroy =
        luo->add_subcommand("destroy", "Close an outgoing session: its files are unpreserved");
    destroy->add_option("SESSION", a->session, "Session name")->required();
    destroy->callback([&global, &selected, a] {
        selected = [&global, a] {
            return call_and_show(global, "DestroySession", "destroyed", "s", a->session.c_str());
        };
    });

    CLI::App* ret = luo->add_subcommand("retrieve", "Copy a file of an incoming session to OUTPUT");
    ret->add_option("SESSION", a->session, "Incoming session")->required();
    ret->add_option("TOKEN", a->token, "Token it was preserved under")->required();
    ret->add_option("OUTPUT", a->output, "File to write (- for stdout)")->required();
    ret->callback([&global, &selected, a] {
        selected = [&global, a] { return retrieve(global, a->session, a->token, a->output); };
    });

    CLI::App* finish = luo->add_subcommand("finish", "Release an incoming session (its memory is freed)");
    finish->add_option("SESSION", a->session, "Incoming session");
    finish->add_flag("--all", a->all, "Every incoming session");
    finish->callback([&global, &selected, a] {
        selected = [&global, a] {
            if (a->all == !a->session.empty()) return fail_local(global, "give either SESSION or --all");
            if (a->all) return finish_all(global);
            return call_and_show(global, "FinishSession", "finished", "s", a->session.c_str());
        };
    });
}

}  // namespace

void add_luo_commands(CLI::App& app, const GlobalOptions& global, Runner& selected) {
    CLI::App* luo = app.add_subcommand("luo", "LUO sessions khod holds across a live update");
    luo->require_subcommand(1);
    auto a = std::make_shared<LuoArgs>();

    luo->add_subcommand("status", "Sessions, inhibitors and the last live update's phases")
        ->callback([&global, &selected] {
            selected = [&global] {
                BusFailure failure;
                auto client = KhodClient::connect(failure);
                if (!client) return report_failure(failure, global.json);
                return show_after_call(*client, luo_view, global.json, "");
            };
        });
    add_session_commands(luo, global, selected, a);

    CLI::App* inh =
        luo->add_subcommand("inhibit", "Hold the barrier before a live update's reboot while CMD runs");
    inh->add_option("--who", a->who, "Who holds it (shown in Inhibitors and the journal)");
    inh->add_option("--why", a->why, "Why");
    inh->add_option("CMD", a->command, "Command and its arguments (after --)")->required();
    inh->callback([&global, &selected, a] {
        selected = [&global, a] { return inhibit(global, a->who, a->why, a->command); };
    });
}

}  // namespace khoctl
