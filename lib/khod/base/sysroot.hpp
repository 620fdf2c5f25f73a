// The one place that knows where the kernel's filesystems live. Every read of
// /sys, /proc, /dev or debugfs goes through a Sysroot, so tests can point the
// whole program at a fixture tree copied from a real kernel.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "khod/base/fd.hpp"
#include "khod/base/result.hpp"

namespace khod {

// A kernel file as the kernel names it, and where it is found under the sysroot.
struct KernelPath {
    std::string kernel;          // e.g. "/sys/kernel/kexec/loaded"
    std::filesystem::path host;  // e.g. "<sysroot>/sys/kernel/kexec/loaded"
};

class Sysroot {
public:
    static constexpr std::string_view default_debugfs_mountpoint = "/sys/kernel/debug";

    explicit Sysroot(std::filesystem::path root = "/");

    const std::filesystem::path& root() const { return root_; }
    // True when the sysroot is the running system, so mounting and syscalls
    // that change kernel state make sense. False for fixture trees.
    bool is_live() const { return live_; }

    KernelPath sys(std::string_view rel) const;
    KernelPath proc(std::string_view rel) const;
    KernelPath dev(std::string_view rel) const;
    KernelPath debugfs(std::string_view rel) const;
    // Configuration under /etc (khod.conf, kdump-tools' defaults): not a kernel path,
    // but resolved the same way so a fixture tree can carry it.
    KernelPath etc(std::string_view rel) const;
    // Any absolute kernel path (e.g. one read from /proc/self/mounts).
    KernelPath resolve(std::string_view kernel_path) const;

    const std::string& debugfs_mountpoint() const { return debugfs_mountpoint_; }
    void set_debugfs_mountpoint(std::string kernel_path) { debugfs_mountpoint_ = std::move(kernel_path); }

private:
    KernelPath under(std::string_view base, std::string_view rel) const;

    std::filesystem::path root_;
    bool live_;
    std::string debugfs_mountpoint_{default_debugfs_mountpoint};
};

// Whole file, byte-exact. sysfs and debugfs report fake sizes, so this reads to EOF.
Result<std::string> read_file(const KernelPath& path);
// One value of at most a page, in one read(): a sysfs attribute's show()
// hands over all of it at once, so the read() that would see EOF is skipped
// (a load reads two attributes for each of up to thousands of CPUs).
Result<std::string> read_value(const KernelPath& path);
// The file's text with trailing whitespace removed.
Result<std::string> read_trimmed(const KernelPath& path);
// An unsigned number written in decimal, or hex with 0x ("%llu", "0x%llx").
Result<std::uint64_t> read_u64(const KernelPath& path);
// An unsigned number written in hex without 0x ("%lx", as block_size_bytes).
Result<std::uint64_t> read_hex_u64(const KernelPath& path);
// A 0/1 flag.
Result<bool> read_flag(const KernelPath& path);

// A kernel directory held open, to read many attributes below it with
// openat(): its path is walked once, not once per file (a crash load reads
// an attribute of each of up to thousands of CPUs).
class KernelDir {
public:
    static Result<KernelDir> open(KernelPath path);
    // What `rel` below it is called, for messages.
    KernelPath below(std::string_view rel) const;
    int fd() const { return fd_.get(); }

private:
    KernelDir(KernelPath path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
    KernelPath path_;
    UniqueFd fd_;
};

// read_value() and read_hex_u64() of the file `rel` below `dir`.
Result<std::string> read_value(const KernelDir& dir, std::string_view rel);
Result<std::uint64_t> read_hex_u64(const KernelDir& dir, std::string_view rel);
// Replaces a file's content the way `echo data > file` does (O_TRUNC, no O_CREAT):
// for sysfs/debugfs attributes the kernel's errno comes back from write().
Result<void> write_file(const KernelPath& path, std::string_view data);
// Names in a directory, sorted.
Result<std::vector<std::string>> list_dir(const KernelPath& path);
// lstat-free existence test that follows symlinks; errors other than ENOENT count as present.
bool exists(const KernelPath& path);

// Parses "%llu" or "0x%llx" text (whitespace trimmed). Rejects signs, garbage and overflow.
Result<std::uint64_t> parse_u64(std::string_view text, const std::string& what);
// Parses a kernel cpulist/nodelist ("0-3,5"). Rejects malformed and reversed ranges.
Result<std::vector<unsigned>> parse_list(std::string_view text, const std::string& what);

}  // namespace khod
