#include "khod/luo/memfd.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>

namespace khod {

namespace {

Result<void> write_all(int fd, std::string_view bytes, const std::string& what) {
    while (!bytes.empty()) {
        ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error(errno, what, "writing the memfd");
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}

Result<UniqueFd> new_memfd(const std::string& name) {
    // Plain shmem: memfd_luo refuses MFD_HUGETLB files.
    UniqueFd fd(::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd.valid()) return errno_error(errno, name, "memfd_create");
    return fd;
}

Result<UniqueFd> seal(UniqueFd fd, const std::string& name) {
    if (::fcntl(fd.get(), F_ADD_SEALS, static_cast<int>(khod_memfd_seals())) != 0)
        return errno_error(errno, name, "sealing the memfd (F_ADD_SEALS)");
    return fd;
}

}  // namespace

std::uint32_t khod_memfd_seals() {
    // A subset of MEMFD_LUO_ALL_SEALS (include/linux/kho/abi/memfd.h, checked by
    // memfd_luo_preserve() in mm/memfd_luo.c: SEAL, SHRINK, GROW, WRITE,
    // FUTURE_WRITE, EXEC), so the kernel carries every seal khod sets.
    return F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
}

Result<UniqueFd> sealed_memfd(const std::string& name, std::string_view bytes) {
    auto fd = new_memfd(name);
    if (!fd) return fd.error();
    if (auto w = write_all(fd->get(), bytes, name); !w) return w.error();
    return seal(std::move(*fd), name);
}

Result<UniqueFd> sealed_memfd_copy(const std::string& name, int from) {
    auto fd = new_memfd(name);
    if (!fd) return fd.error();
    std::array<char, 65536> buf{};
    for (;;) {
        ssize_t n = ::read(from, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error(errno, name, "reading the file to copy");
        if (n == 0) break;
        auto w = write_all(fd->get(), std::string_view(buf.data(), static_cast<std::size_t>(n)), name);
        if (!w) return w.error();
    }
    return seal(std::move(*fd), name);
}

Result<MemfdFacts> memfd_facts(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return errno_error(errno, "", "fstat");
    MemfdFacts facts;
    facts.size = static_cast<std::uint64_t>(st.st_size);
    int seals = ::fcntl(fd, F_GET_SEALS);
    // EINVAL: a file that cannot carry seals (not shmem or hugetlbfs).
    if (seals < 0 && errno != EINVAL) return errno_error(errno, "", "F_GET_SEALS");
    facts.seals = seals < 0 ? 0 : static_cast<std::uint32_t>(seals);
    return facts;
}

Result<std::string> read_whole(int fd, std::size_t max) {
    std::string out;
    std::array<char, 65536> buf{};
    for (;;) {
        ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(out.size()));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error(errno, "", "pread");
        if (n == 0) return out;
        if (out.size() + static_cast<std::size_t>(n) > max)
            return plain_error("", "more than " + std::to_string(max) + " bytes, the most khod reads here");
        out.append(buf.data(), static_cast<std::size_t>(n));
    }
}

}  // namespace khod
