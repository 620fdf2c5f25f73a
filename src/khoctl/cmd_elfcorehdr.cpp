// khoctl elfcorehdr build|show: the ELF core header a crash kernel gets,
// built from this system as the kernel builds it, and any such header (or
// /proc/vmcore in a capture kernel) read back. Local: no khod, no D-Bus.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <memory>
#include <string>

#include "commands.hpp"
#include "khod/base/fd.hpp"
#include "khod/base/hex.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/base/units.hpp"
#include "khod/crash/core_header.hpp"
#include "khod/crash/core_layout.hpp"

namespace khoctl {

namespace {

// CONFIG_CRASH_MAX_MEMORY_RANGES' default: room for hot-added memory where
// the kernel does not say how much it would write.
constexpr unsigned kDefaultMaxRanges = 8192;

void print_json(const nlohmann::json& j) {
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

int fail(const khod::Error& e, bool json) {
    if (json)
        print_json({{"ok", false}, {"error", e.describe()}, {"errno", e.code}});
    else
        std::cerr << "khoctl: " << e.describe() << '\n';
    return 1;
}

khod::Result<void> write_all(int fd, const std::vector<std::uint8_t>& bytes, const std::string& name) {
    std::size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return khod::errno_error(errno, name, "cannot write");
        done += static_cast<std::size_t>(n);
    }
    return {};
}

// Mode 0600: the header gives away where the kernel is (KASLR) and its memory map.
khod::Result<void> write_file(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    khod::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600));
    if (!fd.valid()) return khod::errno_error(errno, path, "cannot create");
    if (auto r = write_all(fd.get(), bytes, path); !r) return r;
    if (::close(fd.release()) != 0) return khod::errno_error(errno, path, "cannot write (close)");
    return {};
}

struct BuildOptions {
    std::string output;
    unsigned max_cpus = 0;  // 0: the possible CPUs
    unsigned max_ranges = kDefaultMaxRanges;
};

int run_build(const GlobalOptions& global, const BuildOptions& o) {
    khod::Sysroot root(global.sysroot);
    auto layout = khod::read_core_layout(root);
    if (!layout) return fail(layout.error(), global.json);
    auto bytes = khod::build_elfcorehdr(*layout);
    if (!bytes) return fail(bytes.error(), global.json);
    const unsigned possible =
        static_cast<unsigned>(layout->cpu_notes.size() + layout->cpus_without_notes.size());
    const bool from_kernel = khod::exists(root.sys("kernel/crash_elfcorehdr_size")) ||
                             khod::exists(root.sys("kernel/kexec/crash_elfcorehdr_size"));
    auto capacity = khod::elfcorehdr_capacity(root, o.max_cpus ? o.max_cpus : possible, o.max_ranges);
    if (!capacity) return fail(capacity.error(), global.json);
    // What the kernel reads back, the same way a capture kernel's header is read.
    auto header = khod::read_core_header(*bytes, "elfcorehdr");
    if (!header) return fail(header.error(), global.json);

    const std::uint64_t used = khod::elfcorehdr_bytes(header->elf.phdrs.size());
    const bool fits = used <= *capacity;
    if (!fits)
        std::cerr << "khoctl: the header (" << used << " bytes) is larger than the room for it (" << *capacity
                  << " bytes)\n";
    const bool to_stdout = o.output == "-" || (o.output.empty() && !global.json && !::isatty(STDOUT_FILENO));
    if (to_stdout) {
        std::cout.flush();
        if (auto r = write_all(STDOUT_FILENO, *bytes, "standard output"); !r) return fail(r.error(), false);
        return fits ? 0 : 1;
    }
    if (!o.output.empty())
        if (auto r = write_file(o.output, *bytes); !r) return fail(r.error(), global.json);

    if (global.json) {
        print_json({{"ok", true},
                    {"output", o.output.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.output)},
                    {"bytes", bytes->size()},
                    {"header_bytes", used},
                    {"capacity", *capacity},
                    {"capacity_from", from_kernel ? "crash_elfcorehdr_size" : "max_cpus_ranges"},
                    {"fits", fits},
                    {"layout", khod::to_json(*layout)},
                    {"header", khod::to_json(*header)}});
    } else {
        std::cout << khod::format_core_layout(*layout);
        std::cout << "\nelfcorehdr  " << header->elf.phdrs.size() << " program headers, " << used
                  << " bytes (" << bytes->size()
                  << " padded); room for in-place updates: " << khod::human_size(*capacity)
                  << (from_kernel ? " (crash_elfcorehdr_size)" : " (--max-cpus, --max-ranges)") << '\n';
        if (o.output.empty())
            std::cout << "not written: standard output is a terminal (use -o FILE, or a pipe)\n";
        else
            std::cout << "written to " << o.output << '\n';
    }
    return fits ? 0 : 1;
}

int run_show(const GlobalOptions& global, const std::string& file) {
    // Kernel files (/proc/vmcore, /proc/kcore) are looked up under --sysroot.
    khod::Sysroot root(global.sysroot);
    const std::filesystem::path path =
        file.rfind("/proc/", 0) == 0 ? root.resolve(file).host : std::filesystem::path(file);
    auto info = khod::read_core_header(path);
    if (!info) return fail(info.error(), global.json);
    if (global.json)
        print_json(khod::to_json(*info));
    else
        std::cout << khod::format_core_header(*info);
    return 0;
}

}  // namespace

void add_elfcorehdr_commands(CLI::App& app, const GlobalOptions& global, Runner& selected) {
    CLI::App* group = app.add_subcommand(
        "elfcorehdr",
        "The ELF core header of a crash kernel: build it from this system, or read one (works without khod)");
    group->require_subcommand(1);

    auto b = std::make_shared<BuildOptions>();
    CLI::App* build = group->add_subcommand(
        "build", "Build the elfcorehdr the kernel would build for a crash kernel now (needs root)");
    build->add_option("-o,--output", b->output, "Write the header to FILE (- for standard output)")
        ->type_name("FILE");
    build
        ->add_option(
            "--max-cpus", b->max_cpus,
            "Room for N CPUs where the kernel has no crash_elfcorehdr_size (default: the possible CPUs)")
        ->type_name("N")
        ->check(CLI::Range(1u, 65000u));
    build
        ->add_option("--max-ranges", b->max_ranges,
                     "Room for N memory ranges where the kernel has no crash_elfcorehdr_size (default 8192)")
        ->type_name("N")
        ->check(CLI::Range(1u, 65000u));
    build->callback([&global, &selected, b] { selected = [&global, b] { return run_build(global, *b); }; });

    auto file = std::make_shared<std::string>();
    CLI::App* show = group->add_subcommand(
        "show", "Read an elfcorehdr, or /proc/vmcore in a capture kernel: program headers, CPUs, VMCOREINFO");
    show->add_option("FILE", *file, "The header, a dump, or /proc/vmcore")->required();
    show->callback(
        [&global, &selected, file] { selected = [&global, file] { return run_show(global, *file); }; });
}

}  // namespace khoctl
