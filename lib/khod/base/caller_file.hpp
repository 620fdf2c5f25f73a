// Opening a file a caller named (a kernel, an initrd) without letting it
// stall khod: a FIFO, a device node or a directory is refused, not read.
#pragma once

#include <cstdint>
#include <filesystem>
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

// "a FIFO", "a character device", ... for a st_mode that is not S_IFREG.
const char* file_type_name(unsigned mode);

}  // namespace khod
