// bench/crash-bench: the in-process half of bench/crash_build.py (issue 12's
// first two benchmarks). It times khod's own code against a baseline in the
// same process, interleaved, and prints the raw figures as JSON on standard
// output; the driver derives the sysroot and the data and prints the ratios.
//
//   crash-bench elfcorehdr --sysroot DIR [--iterations N] [--warmup N] [--max-ranges N]
//     Per iteration, in this order: the elfcorehdr part of a native crash
//     load as khod does it (native_loader.cpp: read_core_layout(),
//     build_elfcorehdr(), elfcorehdr_capacity()), each call timed; the
//     kernel's way of writing the same header from the layout just read
//     (crash_prepare_elf64_headers(): a zeroed buffer, the ELF header and each
//     program header stored in place, no libelf); and the read floor, every
//     file read_core_layout() and elfcorehdr_capacity() read, opened, read to
//     its end and closed, nothing parsed. The two headers must be equal byte
//     for byte and the header must fit its capacity, or the run fails.
//
//   crash-bench sha256 --file F [--segments A,B,...] [--rounds N] [--sha256sum PROG]
//     F is read into separate buffers of the given sizes (the last may be
//     "rest"), as a crash image's digested segments are (boot_params, kernel,
//     initrd). Per round, in alternating order: PROG F (fork to exit, its
//     digest read from a pipe), sha256_of() over the buffers, and the same
//     with the buffers read from F first; also PROG /dev/null (its start-up).
//     The digests must agree, or the run fails.
//
// Times are CLOCK_MONOTONIC (std::chrono::steady_clock) around each call.
#include <elf.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "khod/base/fd.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/crash/core_layout.hpp"
#include "khod/crash/purgatory.hpp"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr std::uint64_t kElfCoreHeaderAlign = 4096;  // ELF_CORE_HEADER_ALIGN

double seconds(Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double>(to - from).count();
}

[[noreturn]] void die(const std::string& what) {
    std::cerr << "crash-bench: " << what << '\n';
    std::exit(1);
}

template <class T>
T must(khod::Result<T> r, const std::string& what) {
    if (!r) die(what + ": " + r.error().describe());
    return std::move(*r);
}

// Median, minimum, maximum and the 90th percentile of a sample, in seconds.
json summary(std::vector<double> v) {
    if (v.empty()) return json(nullptr);
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    const double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return {{"n", n}, {"median", median}, {"min", v.front()}, {"max", v.back()}, {"p90", v[(n * 9) / 10]}};
}

std::uint64_t parse_number(std::string_view s, const std::string& what) {
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size())
        die(what + ": not a number: \"" + std::string(s) + "\"");
    return v;
}

// "--name value" pairs after the mode.
struct Args {
    std::vector<std::pair<std::string, std::string>> pairs;
    std::optional<std::string> get(std::string_view name) const {
        for (const auto& [k, v] : pairs)
            if (k == name) return v;
        return std::nullopt;
    }
};

Args parse_args(int argc, char** argv, std::initializer_list<std::string_view> known) {
    Args a;
    for (int i = 2; i < argc; i += 2) {
        const std::string_view key = argv[i];
        if (std::find(known.begin(), known.end(), key) == known.end())
            die("unknown option " + std::string(key));
        if (i + 1 >= argc) die(std::string(key) + " needs a value");
        a.pairs.emplace_back(std::string(key), argv[i + 1]);
    }
    return a;
}

// ---- elfcorehdr ------------------------------------------------------------

// The kernel's crash_prepare_elf64_headers() (kernel/crash_core.c) for the
// same layout: one zeroed buffer of ALIGN(size, ELF_CORE_HEADER_ALIGN), the
// ELF header and every program header stored into it in the kernel's order.
std::vector<std::uint8_t> kernel_style_elfcorehdr(const khod::CoreLayout& l) {
    const std::uint64_t phnum =
        l.cpu_notes.size() + 1 + (l.kernel_text ? 1 : 0) + static_cast<std::uint64_t>(l.ram.size());
    const std::uint64_t size = sizeof(Elf64_Ehdr) + phnum * sizeof(Elf64_Phdr);
    std::vector<std::uint8_t> buf(
        (size + kElfCoreHeaderAlign - 1) / kElfCoreHeaderAlign * kElfCoreHeaderAlign, 0);
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_ident[EI_OSABI] = ELFOSABI_NONE;
    eh.e_type = ET_CORE;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = static_cast<Elf64_Half>(phnum);
    std::memcpy(buf.data(), &eh, sizeof eh);
    std::uint8_t* at = buf.data() + sizeof eh;
    auto put = [&at](const Elf64_Phdr& p) {
        std::memcpy(at, &p, sizeof p);
        at += sizeof p;
    };
    auto note = [](const khod::CoreNote& n) {
        Elf64_Phdr p{};
        p.p_type = PT_NOTE;
        p.p_offset = p.p_paddr = n.paddr;
        p.p_filesz = p.p_memsz = n.size;
        return p;
    };
    auto load = [](std::uint64_t vaddr, std::uint64_t paddr, std::uint64_t size) {
        Elf64_Phdr p{};
        p.p_type = PT_LOAD;
        p.p_flags = PF_R | PF_W | PF_X;
        p.p_offset = p.p_paddr = paddr;
        p.p_vaddr = vaddr;
        p.p_filesz = p.p_memsz = size;
        return p;
    };
    for (const auto& cpu : l.cpu_notes) put(note(cpu.second));
    put(note(l.vmcoreinfo));
    if (l.kernel_text) put(load(l.kernel_text->vaddr, l.kernel_text->paddr, l.kernel_text->size));
    for (const auto& r : l.ram) put(load(l.page_offset + r.start, r.start, r.size()));
    return buf;
}

// Every file the timed calls open, for the read floor.
std::vector<std::string> layout_files(const khod::Sysroot& root, const khod::CoreLayout& l) {
    std::vector<std::string> out;
    out.push_back(root.sys("devices/system/cpu/possible").host);
    for (const auto& cpu : l.cpu_notes) {
        const std::string dir = "devices/system/cpu/cpu" + std::to_string(cpu.first);
        out.push_back(root.sys(dir + "/crash_notes").host);
        out.push_back(root.sys(dir + "/crash_notes_size").host);
    }
    out.push_back(root.sys("kernel/vmcoreinfo").host);
    out.push_back(root.proc("iomem").host);
    out.push_back(root.sys("kernel/kexec/crash_cma_ranges").host);
    out.push_back(root.proc("kcore").host);
    out.push_back(root.sys("kernel/crash_elfcorehdr_size").host);
    return out;
}

std::uint64_t read_floor(const std::vector<std::string>& files) {
    static char buf[8192];
    std::uint64_t total = 0;
    for (const auto& f : files) {
        khod::UniqueFd fd(::open(f.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
        if (!fd.valid()) die(f + ": cannot open: " + std::strerror(errno));
        for (;;) {
            const ssize_t n = ::read(fd.get(), buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) die(f + ": cannot read: " + std::strerror(errno));
            if (n == 0) break;
            total += static_cast<std::uint64_t>(n);
        }
    }
    return total;
}

int run_elfcorehdr(const Args& args) {
    const auto sysroot = args.get("--sysroot");
    if (!sysroot) die("elfcorehdr needs --sysroot DIR");
    const std::uint64_t iterations = parse_number(args.get("--iterations").value_or("1000"), "--iterations");
    const std::uint64_t warmup = parse_number(args.get("--warmup").value_or("50"), "--warmup");
    const unsigned max_ranges =
        static_cast<unsigned>(parse_number(args.get("--max-ranges").value_or("8192"), "--max-ranges"));
    const khod::Sysroot root(*sysroot);

    // One build outside the clock, to check it and to learn the files.
    const auto layout = must(khod::read_core_layout(root), "read_core_layout");
    const auto header = must(khod::build_elfcorehdr(layout), "build_elfcorehdr");
    const unsigned possible =
        static_cast<unsigned>(layout.cpu_notes.size() + layout.cpus_without_notes.size());
    const auto capacity = must(khod::elfcorehdr_capacity(root, possible, max_ranges), "elfcorehdr_capacity");
    const auto direct = kernel_style_elfcorehdr(layout);
    if (direct != header)
        die("the kernel-style header differs from build_elfcorehdr()'s: no like-for-like baseline");
    const std::uint64_t phnum =
        layout.cpu_notes.size() + 1 + (layout.kernel_text ? 1 : 0) + layout.ram.size();
    if (khod::elfcorehdr_bytes(phnum) > capacity) die("the header does not fit its capacity");
    const auto files = layout_files(root, layout);
    const std::uint64_t file_bytes = read_floor(files);

    // khod keeps a CoreLayoutCache between loads (native_loader.hpp): every
    // load after its first in a boot reads memory and the CPU list only.
    khod::CoreLayoutCache cache;
    must(khod::read_core_layout(root, -1, &cache), "read_core_layout (cache)");

    std::vector<double> t_load, t_read, t_build, t_capacity, t_kernel, t_floor, t_warm;
    std::uint64_t sink = 0;  // keeps the results observable
    for (std::uint64_t i = 0; i < warmup + iterations; ++i) {
        const auto t0 = Clock::now();
        auto l = khod::read_core_layout(root);
        const auto t1 = Clock::now();
        if (!l) die("read_core_layout: " + l.error().describe());
        auto h = khod::build_elfcorehdr(*l);
        const auto t2 = Clock::now();
        if (!h) die("build_elfcorehdr: " + h.error().describe());
        auto c = khod::elfcorehdr_capacity(root, possible, max_ranges);
        const auto t3 = Clock::now();
        if (!c) die("elfcorehdr_capacity: " + c.error().describe());
        sink += h->size() + *c;

        const auto t4 = Clock::now();
        auto k = kernel_style_elfcorehdr(*l);
        const auto t5 = Clock::now();
        sink += k.size() + k[64];

        const auto t6 = Clock::now();
        sink += read_floor(files);
        const auto t7 = Clock::now();

        const auto t8 = Clock::now();
        auto wl = khod::read_core_layout(root, -1, &cache);
        if (!wl) die("read_core_layout (cached): " + wl.error().describe());
        auto wh = khod::build_elfcorehdr(*wl);
        if (!wh) die("build_elfcorehdr (cached): " + wh.error().describe());
        auto wc = khod::elfcorehdr_capacity(root, possible, max_ranges);
        if (!wc) die("elfcorehdr_capacity (cached): " + wc.error().describe());
        const auto t9 = Clock::now();
        if (*wh != *h) die("the header built with the cache differs from the one without");
        sink += wh->size() + *wc;

        if (i < warmup) continue;
        t_read.push_back(seconds(t0, t1));
        t_build.push_back(seconds(t1, t2));
        t_capacity.push_back(seconds(t2, t3));
        t_load.push_back(seconds(t0, t3));
        t_kernel.push_back(seconds(t4, t5));
        t_floor.push_back(seconds(t6, t7));
        t_warm.push_back(seconds(t8, t9));
    }

    json out = {
        {"mode", "elfcorehdr"},
        {"sysroot", *sysroot},
        {"iterations", iterations},
        {"warmup", warmup},
        {"cpu_notes", layout.cpu_notes.size()},
        {"cpus_without_notes", layout.cpus_without_notes.size()},
        {"ram_ranges", layout.ram.size()},
        {"kernel_text", layout.kernel_text.has_value()},
        {"program_headers", phnum},
        {"header_bytes", khod::elfcorehdr_bytes(phnum)},
        {"buffer_bytes", header.size()},
        {"capacity", capacity},
        {"files_read", files.size()},
        {"file_bytes", file_bytes},
        {"kernel_style_equal", true},
        {"seconds",
         {{"load", summary(t_load)},
          {"load_cached", summary(t_warm)},
          {"read_core_layout", summary(t_read)},
          {"build_elfcorehdr", summary(t_build)},
          {"elfcorehdr_capacity", summary(t_capacity)},
          {"kernel_style_write", summary(t_kernel)},
          {"read_floor", summary(t_floor)}}},
        {"sink", sink},
    };
    std::cout << out.dump(2) << '\n';
    return 0;
}

// ---- sha256 ----------------------------------------------------------------

// Runs prog on path with its standard output in a pipe: the first word it
// prints (sha256sum's digest) and the time from the spawn to its exit.
std::pair<std::string, double> run_sum(const std::string& prog, const std::string& path) {
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0) die(std::string("pipe2: ") + std::strerror(errno));
    khod::UniqueFd rd(pipefd[0]), wr(pipefd[1]);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, wr.get(), STDOUT_FILENO);
    std::string arg0 = prog, arg1 = path;
    char* argv[] = {arg0.data(), arg1.data(), nullptr};
    pid_t pid = -1;
    const auto t0 = Clock::now();
    const int rc = ::posix_spawnp(&pid, prog.c_str(), &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) die(prog + ": cannot run: " + std::strerror(rc));
    wr.reset();
    std::string text;
    char buf[256];
    for (;;) {
        const ssize_t n = ::read(rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) die(std::string("waitpid: ") + std::strerror(errno));
    const auto t1 = Clock::now();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die(prog + " " + path + " failed");
    return {text.substr(0, text.find_first_of(" \n")), seconds(t0, t1)};
}

void read_segments(const std::string& path, std::vector<std::vector<std::uint8_t>>& segments) {
    khod::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd.valid()) die(path + ": cannot open: " + std::strerror(errno));
    off_t at = 0;
    for (auto& s : segments) {
        std::size_t done = 0;
        while (done < s.size()) {
            const ssize_t n = ::pread(fd.get(), s.data() + done, s.size() - done, at);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) die(path + ": short read");
            done += static_cast<std::size_t>(n);
            at += n;
        }
    }
}

std::string hex_of(const khod::Sha256Digest& d) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (std::uint8_t b : d) {
        out += kDigits[b >> 4];
        out += kDigits[b & 15];
    }
    return out;
}

std::string digest_of(const std::vector<std::vector<std::uint8_t>>& segments) {
    std::vector<std::span<const std::uint8_t>> parts(segments.begin(), segments.end());
    const auto d = must(khod::sha256_of(parts), "sha256_of");
    return hex_of(d);
}

int run_sha256(const Args& args) {
    const auto file = args.get("--file");
    if (!file) die("sha256 needs --file F");
    const std::uint64_t rounds = parse_number(args.get("--rounds").value_or("15"), "--rounds");
    const std::string prog = args.get("--sha256sum").value_or("sha256sum");
    struct stat st {};
    if (::stat(file->c_str(), &st) != 0) die(*file + ": cannot stat: " + std::strerror(errno));
    const auto file_size = static_cast<std::uint64_t>(st.st_size);

    // Segment sizes: numbers, the last one may be "rest".
    std::vector<std::vector<std::uint8_t>> segments;
    std::uint64_t used = 0;
    const std::string spec = args.get("--segments").value_or("4096,8388608,rest");
    for (std::size_t from = 0; from <= spec.size();) {
        const std::size_t comma = std::min(spec.find(',', from), spec.size());
        const std::string_view word = std::string_view(spec).substr(from, comma - from);
        const bool last = comma == spec.size();
        const std::uint64_t size =
            word == "rest" && last ? file_size - std::min(used, file_size) : parse_number(word, "--segments");
        if (size == 0 || used + size > file_size) die("--segments " + spec + " does not fit the file");
        segments.emplace_back(size);
        used += size;
        from = comma + 1;
    }
    if (used != file_size) die("--segments " + spec + " leaves part of the file out");
    read_segments(*file, segments);

    // The digests must agree before anything is timed, and stay so.
    const std::string ours = digest_of(segments);
    const std::string theirs = run_sum(prog, *file).first;
    if (ours != theirs) die("digests differ: sha256_of " + ours + ", " + prog + " " + theirs);

    std::vector<double> t_sum, t_khod, t_khod_read, t_start;
    for (std::uint64_t r = 0; r < rounds; ++r) {
        auto sum = [&] {
            auto [d, t] = run_sum(prog, *file);
            if (d != ours) die(prog + " gave " + d + " in round " + std::to_string(r));
            t_sum.push_back(t);
        };
        auto khod_hash = [&] {
            const auto t0 = Clock::now();
            std::vector<std::span<const std::uint8_t>> parts(segments.begin(), segments.end());
            const auto d = khod::sha256_of(parts);
            const auto t1 = Clock::now();
            if (!d || hex_of(*d) != ours) die("sha256_of changed its answer in round " + std::to_string(r));
            t_khod.push_back(seconds(t0, t1));
        };
        auto khod_read_hash = [&] {
            const auto t0 = Clock::now();
            read_segments(*file, segments);
            std::vector<std::span<const std::uint8_t>> parts(segments.begin(), segments.end());
            const auto d = khod::sha256_of(parts);
            const auto t1 = Clock::now();
            if (!d || hex_of(*d) != ours) die("sha256_of changed its answer in round " + std::to_string(r));
            t_khod_read.push_back(seconds(t0, t1));
        };
        auto start = [&] { t_start.push_back(run_sum(prog, "/dev/null").second); };
        if (r % 2 == 0) {
            sum();
            khod_hash();
            khod_read_hash();
            start();
        } else {
            start();
            khod_read_hash();
            khod_hash();
            sum();
        }
    }

    std::vector<std::uint64_t> sizes;
    for (const auto& s : segments) sizes.push_back(s.size());
    json out = {
        {"mode", "sha256"},
        {"file", *file},
        {"bytes", file_size},
        {"segments", sizes},
        {"rounds", rounds},
        {"sha256sum", prog},
        {"digest", ours},
        {"digests_agree", true},
        {"seconds",
         {{"sha256sum", summary(t_sum)},
          {"sha256_of", summary(t_khod)},
          {"read_and_sha256_of", summary(t_khod_read)},
          {"sha256sum_dev_null", summary(t_start)}}},
    };
    std::cout << out.dump(2) << '\n';
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string_view mode = argc > 1 ? argv[1] : "";
    if (mode == "elfcorehdr")
        return run_elfcorehdr(
            parse_args(argc, argv, {"--sysroot", "--iterations", "--warmup", "--max-ranges"}));
    if (mode == "sha256")
        return run_sha256(parse_args(argc, argv, {"--file", "--segments", "--rounds", "--sha256sum"}));
    std::cerr
        << "usage: crash-bench elfcorehdr --sysroot DIR [--iterations N] [--warmup N] [--max-ranges N]\n"
           "       crash-bench sha256 --file F [--segments A,B,...|rest] [--rounds N] [--sha256sum PROG]\n";
    return 2;
}
