// Opening a file a caller named (a kernel, an initrd) without letting it
// stall khod: a FIFO, a device node or a directory is refused, not read.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "khod/base/fd.hpp"
#include "khod/base/result.hpp"

namespace khod {

struct RegularFile {
    UniqueFd fd;
    std::uint64_t size = 0;
};

// Opens path read-only and non-blocking (so a FIFO with no writer or a device
// cannot hang the open), then refuses anything that is not a regular file:
// "<path>: is a FIFO, not a regular file". Symlinks are followed, so
// /boot/vmlinuz -> vmlinuz-6.x is fine. what ("the kernel") goes into the
// message of a failed open. The fd is blocking again on success.
Result<RegularFile> open_regular_file(const std::filesystem::path& path, const std::string& what);

// A caller's file held open from its check to its load: the kernel loads
// the file that was checked, whatever is done to the path meanwhile.
// Copies share the one fd.
class HeldFile {
public:
    // open_regular_file(), kept.
    static Result<HeldFile> open(const std::filesystem::path& path, const std::string& what);
    int fd() const { return fd_->get(); }
    const std::filesystem::path& path() const { return path_; }
    // Checks that read by path read this file: the path still names it
    // (renamed over, or a symlink re-pointed, is an error saying so).
    Result<void> still_named_by_path() const;

private:
    HeldFile() = default;
    std::shared_ptr<const UniqueFd> fd_;
    std::filesystem::path path_;
    std::string what_;
    std::uint64_t dev_ = 0;
    std::uint64_t ino_ = 0;
};

// "a FIFO", "a character device", ... for a st_mode that is not S_IFREG.
const char* file_type_name(unsigned mode);

}  // namespace khod
