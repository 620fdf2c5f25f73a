#include "usage.hpp"

#include <iostream>
#include <string>

#include "bus_client.hpp"

namespace khoctl {

namespace {

// The word the user meant as a command under app: the first word CLI11 could
// not place that is not an option. With fallthrough an unmatched word ends up
// with the top app, hence the recursive look.
std::string unplaced_word(const CLI::App& top) {
    for (const std::string& word : top.remaining(true))
        if (!word.empty() && word.front() != '-') return word;
    return {};
}

}  // namespace

int report_parse_error(CLI::App& app, const CLI::ParseError& error) {
    // The deepest command the words selected; an unknown word below it was meant as its subcommand.
    CLI::App* at = &app;
    std::string path;
    while (!at->get_subcommands().empty()) {
        at = at->get_subcommands().front();
        path += at->get_name() + " ";
    }
    std::string known;
    for (const CLI::App* sub : at->get_subcommands([](const CLI::App* s) { return !s->get_group().empty(); }))
        known += (known.empty() ? "" : ", ") + sub->get_name();
    const std::string word = unplaced_word(app);
    if (known.empty() || word.empty()) {
        // CLI11's message, but one status for every usage error (its own are 100 and up).
        const int status = app.exit(error);
        return status == 0 ? 0 : 2;  // 0: --help and --version end here too
    }

    const std::string message = "unknown command '" + path + word + "'; " + path + "commands: " + known;
    const CLI::Option* json = app.get_option_no_throw("--json");
    if (json != nullptr && json->count() > 0)
        report_failure({khod1::error::invalid_argument, message}, true);
    else
        std::cerr << "khoctl: " << message << '\n';
    return 2;
}

}  // namespace khoctl
