#include "khod/base/sysroot.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "khod/base/fd.hpp"

namespace khod {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

std::string host_string(const KernelPath& path) {
    return path.host.string();
}

// One read() of at most a page from an open attribute; `name()` names it in
// errors, so a path is only built when something fails.
template <typename Name>
Result<std::string> read_one_value(const UniqueFd& fd, const Name& name) {
    if (!fd.valid()) return errno_error(errno, name(), "cannot open");
    char buf[4096];
    ssize_t n = 0;
    do {
        n = ::read(fd.get(), buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno_error(errno, name(), "cannot read");
    if (static_cast<size_t>(n) == sizeof buf) return plain_error(name(), "a page or more: not one value");
    return std::string(buf, static_cast<size_t>(n));
}

template <typename Name>
Result<std::uint64_t> parse_hex_value(std::string_view text, const Name& name) {
    std::string_view t = trim(text);
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value, 16);
    if (t.empty() || ec != std::errc() || end != t.data() + t.size())
        return plain_error(name(), "expected a hex number, found \"" + std::string(t) + "\"");
    return value;
}

}  // namespace

Sysroot::Sysroot(std::filesystem::path root)
    : root_(root.empty() ? std::filesystem::path("/") : std::move(root)),
      live_(std::filesystem::path(root_).lexically_normal() == "/") {}

KernelPath Sysroot::resolve(std::string_view kernel_path) const {
    std::string kernel(kernel_path);
    if (kernel.empty() || kernel.front() != '/') kernel.insert(kernel.begin(), '/');
    // Join without letting the absolute kernel path replace the root.
    std::filesystem::path host = live_ ? std::filesystem::path(kernel) : root_ / kernel.substr(1);
    return KernelPath{std::move(kernel), std::move(host)};
}

KernelPath Sysroot::under(std::string_view base, std::string_view rel) const {
    std::string kernel(base);
    while (!rel.empty() && rel.front() == '/') rel.remove_prefix(1);
    if (!rel.empty()) {
        kernel += '/';
        kernel += rel;
    }
    return resolve(kernel);
}

KernelPath Sysroot::sys(std::string_view rel) const {
    return under("/sys", rel);
}
KernelPath Sysroot::proc(std::string_view rel) const {
    return under("/proc", rel);
}
KernelPath Sysroot::dev(std::string_view rel) const {
    return under("/dev", rel);
}
KernelPath Sysroot::debugfs(std::string_view rel) const {
    return under(debugfs_mountpoint_, rel);
}
KernelPath Sysroot::etc(std::string_view rel) const {
    return under("/etc", rel);
}

Result<std::string> read_file(const KernelPath& path) {
    UniqueFd fd(::open(path.host.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd.valid()) return errno_error(errno, host_string(path), "cannot open");
    std::string data;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error(errno, host_string(path), "cannot read");
        }
        if (n == 0) break;
        data.append(buf, static_cast<size_t>(n));
    }
    return data;
}

Result<std::string> read_value(const KernelPath& path) {
    UniqueFd fd(::open(path.host.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    return read_one_value(fd, [&] { return host_string(path); });
}

Result<void> write_file(const KernelPath& path, std::string_view data) {
    UniqueFd fd(::open(path.host.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY));
    if (!fd.valid()) return errno_error(errno, host_string(path), "cannot open for writing");
    while (!data.empty()) {
        ssize_t n = ::write(fd.get(), data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error(errno, host_string(path), "write failed");
        }
        data.remove_prefix(static_cast<size_t>(n));
    }
    return {};
}

Result<std::string> read_trimmed(const KernelPath& path) {
    auto data = read_file(path);
    if (!data) return data.error();
    return std::string(trim(*data));
}

Result<std::uint64_t> parse_u64(std::string_view text, const std::string& what) {
    std::string_view t = trim(text);
    int base = 10;
    if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
        base = 16;
        t.remove_prefix(2);
    }
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value, base);
    if (t.empty() || ec != std::errc() || end != t.data() + t.size())
        return plain_error(what, "expected an unsigned number, found \"" + std::string(trim(text)) + "\"");
    return value;
}

Result<std::uint64_t> read_u64(const KernelPath& path) {
    auto text = read_value(path);
    if (!text) return text.error();
    return parse_u64(*text, host_string(path));
}

Result<std::uint64_t> read_hex_u64(const KernelPath& path) {
    auto text = read_value(path);
    if (!text) return text.error();
    return parse_hex_value(*text, [&] { return host_string(path); });
}

Result<KernelDir> KernelDir::open(KernelPath path) {
    UniqueFd fd(::open(path.host.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return errno_error(errno, host_string(path), "cannot open directory");
    return KernelDir(std::move(path), std::move(fd));
}

KernelPath KernelDir::below(std::string_view rel) const {
    std::string kernel = path_.kernel;
    kernel += '/';
    kernel += rel;
    return KernelPath{std::move(kernel), path_.host / rel};
}

Result<std::string> read_value(const KernelDir& dir, std::string_view rel) {
    // openat() needs a terminated name; attribute paths are short.
    char name[256];
    if (rel.size() >= sizeof name) return plain_error(host_string(dir.below(rel)), "name too long");
    rel.copy(name, rel.size());
    name[rel.size()] = '\0';
    UniqueFd fd(::openat(dir.fd(), name, O_RDONLY | O_CLOEXEC | O_NOCTTY));
    return read_one_value(fd, [&] { return host_string(dir.below(rel)); });
}

Result<std::uint64_t> read_hex_u64(const KernelDir& dir, std::string_view rel) {
    auto text = read_value(dir, rel);
    if (!text) return text.error();
    return parse_hex_value(*text, [&] { return host_string(dir.below(rel)); });
}

Result<bool> read_flag(const KernelPath& path) {
    auto text = read_trimmed(path);
    if (!text) return text.error();
    if (*text == "0") return false;
    if (*text == "1") return true;
    return plain_error(host_string(path), "expected 0 or 1, found \"" + *text + "\"");
}

Result<std::vector<std::string>> list_dir(const KernelPath& path) {
    DIR* dir = ::opendir(path.host.c_str());
    if (!dir) return errno_error(errno, host_string(path), "cannot open directory");
    std::vector<std::string> names;
    errno = 0;
    while (const dirent* entry = ::readdir(dir)) {
        std::string_view name(entry->d_name);
        if (name != "." && name != "..") names.emplace_back(name);
    }
    int err = errno;
    ::closedir(dir);
    if (err != 0) return errno_error(err, host_string(path), "cannot read directory");
    std::sort(names.begin(), names.end());
    return names;
}

bool exists(const KernelPath& path) {
    struct stat st {};
    if (::stat(path.host.c_str(), &st) == 0) return true;
    return errno != ENOENT && errno != ENOTDIR;
}

Result<std::vector<unsigned>> parse_list(std::string_view text, const std::string& what) {
    std::vector<unsigned> out;
    std::string_view rest = trim(text);
    auto bad = [&] { return plain_error(what, "malformed list \"" + std::string(trim(text)) + "\""); };
    auto number = [](std::string_view s, unsigned& v) {
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        return !s.empty() && ec == std::errc() && end == s.data() + s.size();
    };
    while (!rest.empty()) {
        size_t comma = rest.find(',');
        std::string_view item = rest.substr(0, comma);
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        if (comma != std::string_view::npos && rest.empty()) return bad();
        size_t dash = item.find('-');
        unsigned lo = 0, hi = 0;
        if (dash == std::string_view::npos) {
            if (!number(item, lo)) return bad();
            hi = lo;
        } else if (!number(item.substr(0, dash), lo) || !number(item.substr(dash + 1), hi) || hi < lo) {
            return bad();
        }
        // A list names at most a few thousand CPUs or nodes; refuse absurd ranges.
        if (hi - lo > 65536) return bad();
        for (unsigned v = lo; v <= hi; ++v) out.push_back(v);
    }
    return out;
}

}  // namespace khod
