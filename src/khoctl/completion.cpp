#include "completion.hpp"

#include <iostream>
#include <string>
#include <utility>
#include <vector>

namespace khoctl {

namespace {

// What a word after an option, or in a positional's place, should complete to.
enum class Value { flag, text, file, dir, command, choice };

struct Arg {
    std::vector<std::string> names;  // "--kernel", "-h"; a positional's one name ("FILE")
    std::string description;
    Value value = Value::flag;
    std::vector<std::string> choices;
    int count = 1;  // words a positional takes, -1 for any number
};

struct Command {
    std::string path;  // "" for khoctl itself, "kdump load" for that subcommand
    std::vector<std::pair<std::string, std::string>> subcommands;  // name, description
    std::vector<Arg> options;                                      // fallthrough ones included
    std::vector<Arg> positionals;
};

std::vector<std::string> choices_of(CLI::Option& opt) {
    for (int i = 0;; ++i) {
        CLI::Validator* v = nullptr;
        try {
            v = opt.get_validator(i);
        } catch (const CLI::OptionNotFound&) {
            return {};
        }
        // CLI11 2.1 keeps an IsMember set only inside the validator, but
        // describes the validator as the set itself: "{out,in}".
        const std::string d = v->get_description();
        if (d.size() < 3 || d.front() != '{' || d.back() != '}') continue;
        std::vector<std::string> out;
        std::string::size_type start = 1;
        for (auto comma = d.find(',', start); comma != std::string::npos; comma = d.find(',', start)) {
            out.push_back(d.substr(start, comma - start));
            start = comma + 1;
        }
        out.push_back(d.substr(start, d.size() - 1 - start));
        return out;
    }
}

// The kind of value, from what the command table says: a validator's set,
// the type name the option shows in --help, or a positional's own name.
Value value_of(CLI::Option& opt, std::vector<std::string>& choices) {
    if (opt.nonpositional() && opt.get_expected_max() == 0) return Value::flag;  // add_flag: expected(0)
    choices = choices_of(opt);
    if (!choices.empty()) return Value::choice;
    const std::string type = opt.get_type_name().substr(0, opt.get_type_name().find(':'));
    const std::string name = opt.nonpositional() ? std::string() : opt.get_name(true);
    if (type == "FILE" || name == "FILE" || name == "OUTPUT") return Value::file;
    if (type == "DIR") return Value::dir;
    if (name == "CMD") return Value::command;
    return Value::text;
}

Arg arg_of(CLI::Option& opt) {
    Arg a;
    for (const auto& s : opt.get_snames()) a.names.push_back("-" + s);
    for (const auto& l : opt.get_lnames()) a.names.push_back("--" + l);
    if (!opt.nonpositional()) {
        a.names.push_back(opt.get_name(true));
        const int max = opt.get_items_expected_max();
        a.count = max >= CLI::detail::expected_max_vector_size ? -1 : max;
    }
    a.description = opt.get_description();
    a.value = value_of(opt, a.choices);
    return a;
}

void collect(CLI::App& app, const std::string& path, const std::vector<Arg>& inherited,
             std::vector<Command>& out) {
    Command c;
    c.path = path;
    for (CLI::Option* opt : app.get_options()) {
        if (opt->get_group().empty()) continue;  // hidden
        Arg a = arg_of(*opt);
        (opt->nonpositional() ? c.options : c.positionals).push_back(std::move(a));
    }
    // Options of the commands above stay valid here when CLI11 passes
    // unknown ones up (fallthrough): khoctl's --json after the command.
    if (app.get_fallthrough())
        for (const Arg& a : inherited) {
            bool shadowed = false;  // -h/--help: every command has its own
            for (const Arg& own : c.options) shadowed = shadowed || own.names == a.names;
            if (!shadowed) c.options.push_back(a);
        }
    const std::vector<Arg> visible = c.options;
    std::vector<CLI::App*> subs = app.get_subcommands([](CLI::App* s) { return !s->get_group().empty(); });
    for (CLI::App* s : subs) c.subcommands.emplace_back(s->get_name(), s->get_description());
    out.push_back(std::move(c));
    for (CLI::App* s : subs)
        collect(*s, path.empty() ? s->get_name() : path + " " + s->get_name(), visible, out);
}

std::string sh_quote(const std::string& s) {
    std::string out = "'";
    for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    return out + "'";
}

std::string fish_quote(const std::string& s) {
    std::string out = "'";
    for (char ch : s) {
        if (ch == '\'' || ch == '\\') out += '\\';
        out += ch;
    }
    return out + "'";
}

std::string join(const std::vector<std::string>& words, const char* sep = " ") {
    std::string out;
    for (const auto& w : words) out += (out.empty() ? "" : sep) + w;
    return out;
}

// The value kind as the scripts' tables spell it; choices carry their words.
std::string kind_word(const Arg& a) {
    switch (a.value) {
        case Value::flag: return "flag";
        case Value::text: return "text";
        case Value::file: return "file";
        case Value::dir: return "dir";
        case Value::command: return "command";
        case Value::choice: return "choice:" + join(a.choices);
    }
    return "text";
}

// The arms of a case/switch mapping "PATH|N" to the kind of the Nth
// positional word: bounded positionals by index, an unbounded last one by
// wildcard; a command's arguments after its name complete as files.
std::vector<std::pair<std::string, std::string>> positional_arms(const Command& c) {
    std::vector<std::pair<std::string, std::string>> arms;
    int index = 0;
    for (const Arg& p : c.positionals) {
        const int n = p.count < 0 ? 1 : p.count;
        for (int i = 0; i < n; ++i, ++index)
            arms.emplace_back(c.path + "|" + std::to_string(index), kind_word(p));
        if (p.count < 0) {
            arms.emplace_back(c.path + "|*", p.value == Value::command ? "file" : kind_word(p));
            break;
        }
    }
    return arms;
}

const char* const generated_note =
    "# Generated at build time by `khoctl --generate-completion %s` from khoctl's own\n"
    "# command table: change the commands, not this file.\n";

void note(std::ostream& out, const char* shell) {
    std::string text = generated_note;
    text.replace(text.find("%s"), 2, shell);
    out << text;
}

// The tables both POSIX-style scripts (bash, zsh) share: case statements
// setting REPLY, so nothing global is left behind when the script is loaded
// inside a function (bash-completion's loader does that).
void sh_tables(const std::vector<Command>& commands, std::ostream& out) {
    out << "\n# The subcommands of command path $1 (\"\" is khoctl itself).\n"
           "_khoctl_subcommands() {\n    case $1 in\n";
    for (const Command& c : commands) {
        std::vector<std::string> names;
        for (const auto& s : c.subcommands) names.push_back(s.first);
        if (!names.empty())
            out << "    " << sh_quote(c.path) << ") REPLY=" << sh_quote(join(names)) << " ;;\n";
    }
    out << "    *) REPLY='' ;;\n    esac\n}\n";

    out << "\n# Every option accepted at command path $1.\n_khoctl_options() {\n    case $1 in\n";
    for (const Command& c : commands) {
        std::vector<std::string> names;
        for (const Arg& a : c.options) names.insert(names.end(), a.names.begin(), a.names.end());
        out << "    " << sh_quote(c.path) << ") REPLY=" << sh_quote(join(names)) << " ;;\n";
    }
    out << "    *) REPLY='' ;;\n    esac\n}\n";

    out << "\n# What option $2 at command path $1 takes: flag, text, file, dir or choice:WORDS.\n"
           "_khoctl_option_value() {\n    case \"$1|$2\" in\n";
    for (const Command& c : commands)
        for (const Arg& a : c.options)
            if (a.value != Value::flag)
                for (const auto& n : a.names)
                    out << "    " << sh_quote(c.path + "|" + n) << ") REPLY=" << sh_quote(kind_word(a))
                        << " ;;\n";
    out << "    *) REPLY=flag ;;\n    esac\n}\n";

    out << "\n# What positional word $2 (from 0) at command path $1 is: as above, command, or none.\n"
           "_khoctl_positional() {\n    case \"$1|$2\" in\n";
    for (const Command& c : commands)
        for (const auto& [pattern, kind] : positional_arms(c)) {
            // The wildcard arm must stay unquoted to match.
            const bool wild = pattern.back() == '*';
            out << "    " << sh_quote(wild ? pattern.substr(0, pattern.size() - 1) : pattern)
                << (wild ? "*" : "") << ") REPLY=" << sh_quote(kind) << " ;;\n";
        }
    out << "    *) REPLY=none ;;\n    esac\n}\n";
}

// Walks the words before the cursor as CLI11 would: sets path (the
// subcommands), npos (positional words at that path) and expect (the kind
// of value the word at the cursor is, when an option asked for one). Shared
// by bash and zsh, which run it on their own word arrays.
const char* const sh_walk = R"(
# Sets cmdpath, npos and expect from the words before the cursor ($@).
# (Not "path": zsh ties that name to $PATH.)
_khoctl_walk() {
    local word dashdash=0
    cmdpath='' npos=0 expect=''
    for word in "$@"; do
        if ((dashdash)); then
            npos=$((npos + 1))
        elif [[ -n $expect ]]; then
            # '=' joins an option to its value (bash splits --kernel=F at it).
            [[ $word == '=' ]] || expect=''
        elif [[ $word == -- ]]; then
            dashdash=1
        elif [[ $word == --*=* ]]; then
            :
        elif [[ $word == -* ]]; then
            _khoctl_option_value "$cmdpath" "$word"
            [[ $REPLY == flag ]] || expect=$REPLY
        else
            _khoctl_subcommands "$cmdpath"
            if ((npos == 0)) && [[ " $REPLY " == *" $word "* ]]; then
                cmdpath=${cmdpath:+$cmdpath }$word
            else
                npos=$((npos + 1))
            fi
        fi
    done
    ((dashdash)) && dashdash_seen=1
    return 0
}
)";

void write_bash(const std::vector<Command>& commands, std::ostream& out) {
    out << "# bash completion for khoctl(1).\n";
    note(out, "bash");
    sh_tables(commands, out);
    out << sh_walk;
    out << R"(
# Adds to COMPREPLY the completions of a value of kind $1 for the word $2.
_khoctl_value() {
    local kind=$1 cur=$2
    case $kind in
    file) compopt -o filenames 2>/dev/null
          mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -f -- "$cur") ;;
    dir) compopt -o filenames 2>/dev/null
         mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -d -- "$cur") ;;
    command) mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -c -- "$cur") ;;
    choice:*) mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -W "${kind#choice:}" -- "$cur") ;;
    esac
}

_khoctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} cmdpath npos expect dashdash_seen=0 REPLY
    COMPREPLY=()
    _khoctl_walk "${COMP_WORDS[@]:1:COMP_CWORD-1}"
    if [[ -n $expect ]]; then
        [[ $cur == '=' ]] && cur=''
        _khoctl_value "$expect" "$cur"
        return 0
    fi
    if [[ $cur == -* ]] && ((!dashdash_seen)); then
        _khoctl_options "$cmdpath"
        mapfile -t COMPREPLY < <(compgen -W "$REPLY" -- "$cur")
        return 0
    fi
    if ((npos == 0)); then
        _khoctl_subcommands "$cmdpath"
        mapfile -t COMPREPLY < <(compgen -W "$REPLY" -- "$cur")
    fi
    _khoctl_positional "$cmdpath" "$npos"
    _khoctl_value "$REPLY" "$cur"
    return 0
}
complete -F _khoctl khoctl
)";
}

// zsh: the same walk over $words; subcommands and options with their
// descriptions through _describe, values through zsh's own completers.
void write_zsh(const std::vector<Command>& commands, std::ostream& out) {
    out << "#compdef khoctl\n# zsh completion for khoctl(1).\n";
    note(out, "zsh");
    sh_tables(commands, out);

    out << "\n# \"name:description\" for each subcommand (as reply) of command path $1.\n"
           "_khoctl_described_subcommands() {\n    case $1 in\n";
    for (const Command& c : commands) {
        if (c.subcommands.empty()) continue;
        out << "    " << sh_quote(c.path) << ") reply=(";
        for (const auto& [name, description] : c.subcommands)
            out << "\n        " << sh_quote(name + ":" + description);
        out << ") ;;\n";
    }
    out << "    *) reply=() ;;\n    esac\n}\n";

    out << "\n# \"name:description\" for each option (as reply) of command path $1.\n"
           "_khoctl_described_options() {\n    case $1 in\n";
    for (const Command& c : commands) {
        out << "    " << sh_quote(c.path) << ") reply=(";
        for (const Arg& a : c.options)
            for (const auto& n : a.names) out << "\n        " << sh_quote(n + ":" + a.description);
        out << ") ;;\n";
    }
    out << "    *) reply=() ;;\n    esac\n}\n";

    out << sh_walk;
    out << R"(
# Completes a value of kind $1.
_khoctl_value() {
    case $1 in
    file) _files ;;
    dir) _files -/ ;;
    command) _command_names -e ;;
    choice:*) local -a choices=(${=1#choice:}); compadd -a choices ;;
    esac
}

_khoctl() {
    local cmdpath npos expect dashdash_seen=0 REPLY
    local -a reply
    local cur=${words[CURRENT]}
    # zsh arrays count from 1: words[1] is khoctl, the cursor's word is words[CURRENT].
    _khoctl_walk "${(@)words[2,CURRENT-1]}"
    if [[ -n $expect ]]; then
        _khoctl_value "$expect"
        return
    fi
    if [[ $cur == -* ]] && ((!dashdash_seen)); then
        _khoctl_described_options "$cmdpath"
        _describe -t options 'khoctl option' reply
        return
    fi
    if ((npos == 0)); then
        _khoctl_described_subcommands "$cmdpath"
        ((${#reply})) && _describe -t commands 'khoctl command' reply
    fi
    _khoctl_positional "$cmdpath" "$npos"
    _khoctl_value "$REPLY"
}

# Autoloaded from $fpath by compinit, this file is _khoctl's body: it defines
# the functions above and completes. Sourced by hand, it registers itself.
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _khoctl "$@"
else
    compdef _khoctl khoctl
fi
)";
}

// The `complete` lines of one command path: its subcommands, its options
// (with their values) and its positionals.
void fish_completions(const Command& c, std::ostream& out) {
    // -n runs fish code: the path is quoted once for that code, once for the option.
    const std::string cond = fish_quote("__khoctl_at " + fish_quote(c.path));
    for (const auto& [name, description] : c.subcommands)
        out << "complete -c khoctl -n " << cond << " -a " << fish_quote(name) << " -d "
            << fish_quote(description) << '\n';
    for (const Arg& a : c.options) {
        out << "complete -c khoctl -n " << cond;
        for (const auto& n : a.names)
            out << (n.rfind("--", 0) == 0 ? " -l " + fish_quote(n.substr(2))
                                          : " -s " + fish_quote(n.substr(1)));
        out << " -d " << fish_quote(a.description);
        switch (a.value) {
            case Value::flag: break;
            case Value::file: out << " -r -F"; break;
            case Value::dir: out << " -x -a '(__fish_complete_directories)'"; break;
            case Value::choice: out << " -x -a " << fish_quote(join(a.choices)); break;
            case Value::text:
            case Value::command: out << " -x"; break;
        }
        out << '\n';
    }
    std::vector<std::string> kinds;
    for (const auto& arm : positional_arms(c)) {
        bool seen = false;
        for (const auto& k : kinds) seen = seen || k == arm.second;
        if (!seen) kinds.push_back(arm.second);
    }
    for (const std::string& kind : kinds) {
        const std::string pcond = fish_quote("__khoctl_at " + fish_quote(c.path) + " " + fish_quote(kind));
        if (kind == "file")
            out << "complete -c khoctl -n " << pcond << " -F\n";
        else if (kind == "command")
            out << "complete -c khoctl -n " << pcond << " -a '(__fish_complete_command)'\n";
        else if (kind.rfind("choice:", 0) == 0)
            out << "complete -c khoctl -n " << pcond << " -a " << fish_quote(kind.substr(7)) << '\n';
    }
}

// fish: a walk over `commandline -opc` gives the command path and positional
// index; every `complete` line is conditioned on them. fish completes an
// option's value itself from the option's -r/-x and -a.
void write_fish(const std::vector<Command>& commands, std::ostream& out) {
    out << "# fish completion for khoctl(1).\n";
    note(out, "fish");
    out << "\nfunction __khoctl_subcommands\n    switch $argv[1]\n";
    for (const Command& c : commands) {
        if (c.subcommands.empty()) continue;
        out << "        case " << fish_quote(c.path) << "\n            printf '%s\\n'";
        for (const auto& s : c.subcommands) out << ' ' << fish_quote(s.first);
        out << '\n';
    }
    out << "    end\nend\n";

    out << "\n# Options that take a value as the next word, at command path $argv[1].\n"
           "function __khoctl_takes_value\n    switch \"$argv[1]|$argv[2]\"\n";
    std::vector<std::string> valued;
    for (const Command& c : commands)
        for (const Arg& a : c.options)
            if (a.value != Value::flag)
                for (const auto& n : a.names) valued.push_back(fish_quote(c.path + "|" + n));
    if (!valued.empty()) out << "        case " << join(valued) << "\n            return 0\n";
    out << "    end\n    return 1\nend\n";

    out << "\nfunction __khoctl_positional\n    switch \"$argv[1]|$argv[2]\"\n";
    for (const Command& c : commands)
        for (const auto& [pattern, kind] : positional_arms(c)) {
            // fish matches a quoted '*' in a case as a wildcard (unquoted, it would glob files).
            out << "        case " << fish_quote(pattern) << "\n            echo " << fish_quote(kind)
                << '\n';
        }
    out << "        case '*'\n            echo none\n    end\nend\n";

    out << R"(
# Prints the command path and the positional's kind at the cursor.
function __khoctl_state
    set -l path ''
    set -l npos 0
    set -l skip 0
    set -l dashdash 0
    for word in (commandline -opc)[2..-1]
        if test $dashdash = 1
            set npos (math $npos + 1)
        else if test $skip = 1
            set skip 0
        else if test "$word" = --
            set dashdash 1
        else if string match -q -- '--*=*' $word
            continue
        else if string match -q -- '-*' $word
            __khoctl_takes_value "$path" $word; and set skip 1
        else if test $npos = 0; and contains -- $word (__khoctl_subcommands "$path")
            set path (string trim -- "$path $word")
        else
            set npos (math $npos + 1)
        end
    end
    echo $path
    __khoctl_positional "$path" $npos
end

# True at command path $argv[1] (and, given, where the next positional is of kind $argv[2]).
function __khoctl_at
    set -l state (__khoctl_state)
    test "$state[1]" = "$argv[1]"; or return 1
    test (count $argv) -lt 2; or test "$state[2]" = "$argv[2]"
end

complete -c khoctl -f
)";
    for (const Command& c : commands) fish_completions(c, out);
}

}  // namespace

bool write_completion(CLI::App& app, std::string_view shell, std::ostream& out) {
    std::vector<Command> commands;
    collect(app, "", {}, commands);
    if (shell == "bash")
        write_bash(commands, out);
    else if (shell == "zsh")
        write_zsh(commands, out);
    else if (shell == "fish")
        write_fish(commands, out);
    else
        return false;
    return static_cast<bool>(out.flush());
}

int print_completion(CLI::App& app, std::string_view shell) {
    if (write_completion(app, shell, std::cout)) return 0;
    std::cerr << "khoctl: no completion for the shell '" << shell << "' (bash, zsh, fish)\n";
    return 2;
}

}  // namespace khoctl
