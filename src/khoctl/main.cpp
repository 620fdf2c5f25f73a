// khoctl: the command-line face of khod. Commands that only read kernel state
// call lib/ directly and work without the daemon.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "completion.hpp"
#include "khod-config.h"
#include "usage.hpp"

std::string khoctl::absolute_path(const std::string& path) {
    if (path.empty()) return path;
    std::error_code ec;
    auto abs = std::filesystem::absolute(path, ec);
    return ec ? path : abs.lexically_normal().string();
}

namespace {

using AddCommands = void (*)(CLI::App&, const khoctl::GlobalOptions&, khoctl::Runner&);

struct CommandGroup {
    std::vector<std::string_view> verbs;  // the top-level subcommands `add` registers
    AddCommands add;
};

// In help order. A command line names one verb: only its group is built,
// since building all of them is most of khoctl's start (a third of the
// instructions `khoctl exec` runs before khod reboots).
const std::vector<CommandGroup>& command_groups() {
    static const std::vector<CommandGroup> groups = {
        {{"status"}, khoctl::add_status_commands},
        {{"show"}, khoctl::add_show_commands},
        {{"prepare", "finalize", "abort", "exec"}, khoctl::add_handover_commands},
        {{"scratch"}, khoctl::add_scratch_commands},
        {{"check"}, khoctl::add_check_commands},
        {{"kdump"}, khoctl::add_kdump_commands},
        {{"luo"}, khoctl::add_luo_commands},
        {{"metrics"}, khoctl::add_metrics_commands},
        {{"elfcorehdr"}, khoctl::add_elfcorehdr_commands},
    };
    return groups;
}

// The first word that is neither a global option nor its value.
std::string_view named_verb(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--sysroot") {
            ++i;
            continue;
        }
        if (!arg.starts_with("-")) return arg;
    }
    return {};
}

const CommandGroup* group_of(std::string_view verb) {
    for (const CommandGroup& g : command_groups())
        if (std::find(g.verbs.begin(), g.verbs.end(), verb) != g.verbs.end()) return &g;
    return nullptr;
}

// Run where the build writes the completion: a group whose verbs differ from
// the table fails the build rather than leaving a verb unparseable.
bool command_table_matches(const khoctl::GlobalOptions& global) {
    bool ok = true;
    for (const CommandGroup& g : command_groups()) {
        CLI::App scratch;
        khoctl::Runner unused;
        g.add(scratch, global, unused);
        std::vector<std::string_view> added;
        for (const CLI::App* sub : scratch.get_subcommands({})) added.emplace_back(sub->get_name());
        if (added != g.verbs) {
            std::cerr << "khoctl: the command table lists the wrong verbs for the group adding";
            for (auto v : added) std::cerr << ' ' << v;
            std::cerr << '\n';
            ok = false;
        }
    }
    return ok;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"khoctl - kexec handover and kdump control"};
    app.set_version_flag("--version", std::string("khoctl ") + KHOD_VERSION);
    app.require_subcommand(1);
    app.fallthrough();  // global options are accepted after the command too

    khoctl::GlobalOptions global;
    app.add_option("--sysroot", global.sysroot,
                   "Read kernel files under DIR instead of / (for fixture trees)")
        ->type_name("DIR");
    app.add_flag("--json", global.json, "Print machine-readable JSON (documented in khoctl(1))");

    khoctl::Runner selected;
    // The build writes the shell completion from this very table (completion.hpp).
    const bool completing = argc == 3 && argv[1] == khoctl::generate_completion_flag;
    const CommandGroup* named = completing ? nullptr : group_of(named_verb(argc, argv));
    if (named) {
        named->add(app, global, selected);
    } else {  // help, a typo, or the completion: every command
        for (const CommandGroup& g : command_groups()) g.add(app, global, selected);
    }
    if (completing) return command_table_matches(global) ? khoctl::print_completion(app, argv[2]) : 1;

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return khoctl::report_parse_error(app, e);
    }
    return selected ? selected() : 1;
}
