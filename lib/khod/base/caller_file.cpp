#include "khod/base/caller_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <utility>

namespace khod {

const char* file_type_name(unsigned mode) {
    switch (mode & S_IFMT) {
        case S_IFIFO: return "a FIFO";
        case S_IFCHR: return "a character device";
        case S_IFBLK: return "a block device";
        case S_IFDIR: return "a directory";
        case S_IFSOCK: return "a socket";
        case S_IFLNK: return "a symbolic link";
        default: return "of an unknown file type";
    }
}

Result<RegularFile> open_regular_file(const std::filesystem::path& path, const std::string& what) {
    // No O_NOFOLLOW: distributions point /boot/vmlinuz at the real image.
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
    if (!fd.valid()) return errno_error(errno, path.string(), "cannot open " + what);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return errno_error(errno, path.string(), "cannot stat " + what);
    if (!S_ISREG(st.st_mode))
        return plain_error(path.string(), std::string("is ") + file_type_name(st.st_mode) +
                                              ", not a regular file (" + what + " must be one)");
    // Regular files ignore O_NONBLOCK; cleared so the fd is what a plain open gives.
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
        return errno_error(errno, path.string(), "fcntl(F_SETFL) on " + what);
    return RegularFile{std::move(fd), static_cast<std::uint64_t>(st.st_size)};
}

Result<HeldFile> HeldFile::open(const std::filesystem::path& path, const std::string& what) {
    auto file = open_regular_file(path, what);
    if (!file) return file.error();
    struct stat st {};
    if (::fstat(file->fd.get(), &st) != 0) return errno_error(errno, path.string(), "cannot stat " + what);
    HeldFile held;
    held.fd_ = std::make_shared<const UniqueFd>(std::move(file->fd));
    held.path_ = path;
    held.what_ = what;
    held.dev_ = st.st_dev;
    held.ino_ = st.st_ino;
    return held;
}

Result<void> HeldFile::still_named_by_path() const {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0)
        return errno_error(errno, path_.string(), what_ + " went away while it was checked");
    if (st.st_dev != dev_ || st.st_ino != ino_)
        return plain_error(path_.string(), "names another file than the one checked (" + what_ +
                                               " was replaced meanwhile); try again once it stays put");
    return {};
}

}  // namespace khod
