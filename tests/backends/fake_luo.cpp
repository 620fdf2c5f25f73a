#include "backends/fake_luo.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <optional>
#include <sstream>
#include <system_error>

#include "khod/luo/memfd.hpp"

namespace khod {

namespace {

constexpr std::uint32_t memfd_luo_all_seals = 0x3f;  // include/linux/kho/abi/memfd.h, SEAL..EXEC

Error fake_error(int code, const std::string& what) {
    return errno_error(code, "/dev/liveupdate", what + " (fake)");
}

std::optional<std::uint64_t> token_of(const std::string& name) {
    auto n = parse_u64(name, name);
    if (!n) return std::nullopt;
    return *n;
}

std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

FakeLuo::FakeLuo(const Sysroot& root) : root_(root) {
    std::error_code ec;
    for (const auto& session : std::filesystem::directory_iterator(dir("incoming"), ec)) {
        if (!session.is_directory()) continue;
        auto& files = incoming_[session.path().filename().string()];
        for (const auto& file : std::filesystem::directory_iterator(session.path(), ec))
            if (auto t = token_of(file.path().filename().string())) files[*t] = slurp(file.path());
    }
    load_live();
}

// Someone holds a copy of the session fd: its shared lock blocks ours.
bool FakeLuo::held(const std::filesystem::path& path) {
    UniqueFd probe(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!probe.valid()) return false;
    if (::flock(probe.get(), LOCK_EX | LOCK_NB) == 0) return false;
    return errno == EWOULDBLOCK;
}

void FakeLuo::load_live() {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir("live"), ec)) {
        std::string file = entry.path().filename().string();
        bool out = file.rfind("out-", 0) == 0, in = file.rfind("in-", 0) == 0;
        if (!entry.is_regular_file() || (!out && !in)) continue;
        if (!held(entry.path())) continue;  // pruned below
        struct stat st {};
        if (::stat(entry.path().c_str(), &st) != 0) continue;
        Session s{file.substr(out ? 4 : 3), in, false, entry.path(), st.st_ino, {}};
        for (const auto& f : std::filesystem::directory_iterator(entry.path().string() + ".d", ec))
            if (auto t = token_of(f.path().filename().string()))
                if (auto copy = sealed_memfd("fake-luo-" + s.name, slurp(f.path())))
                    s.files.emplace(*t, std::move(*copy));
        sessions_.push_back(std::move(s));
    }
    prune();
}

std::filesystem::path FakeLuo::dir(const std::string& rel) const {
    return root_.resolve("/fake-luo/" + rel).host;
}

Result<void> FakeLuo::open_device() const {
    if (root_.is_live()) return fake_error(EPERM, "the fake LUO never runs against the live system");
    if (exists(root_.resolve("/fake-luo/busy"))) return fake_error(EBUSY, "open");
    if (exists(root_.resolve("/fake-luo/lost"))) return fake_error(EIO, "open");
    return {};
}

void FakeLuo::drop_incoming(const std::string& name) {
    incoming_.erase(name);
    std::error_code ec;
    std::filesystem::remove_all(dir("incoming/" + name), ec);
}

// Sessions whose fds are all closed: outgoing ones are unpreserved, retrieved
// incoming ones finished, as the kernel does on the last close.
void FakeLuo::prune() {
    auto closed = [](const Session& s) { return !held(s.path); };
    std::error_code ec;
    for (Session& s : sessions_) {
        if (!closed(s)) continue;
        if (s.incoming && !s.finished) drop_incoming(s.name);
        std::filesystem::remove_all(s.path.string() + ".d", ec);
        std::filesystem::remove(s.path, ec);
    }
    sessions_.erase(std::remove_if(sessions_.begin(), sessions_.end(), closed), sessions_.end());
}

Result<UniqueFd> FakeLuo::new_session(const std::string& name, bool incoming) {
    std::error_code ec;
    std::filesystem::create_directories(dir("live"), ec);
    auto path = dir(std::string("live/") + (incoming ? "in-" : "out-") + name);
    std::filesystem::remove_all(path.string() + ".d", ec);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.valid()) return errno_error(errno, path.string(), "open (fake LUO session)");
    if (::flock(fd.get(), LOCK_SH) != 0) return errno_error(errno, path.string(), "flock (fake LUO session)");
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return errno_error(errno, path.string(), "fstat (fake LUO session)");
    sessions_.push_back(Session{name, incoming, false, path, st.st_ino, {}});
    return fd;
}

FakeLuo::Session* FakeLuo::lookup(int session_fd) {
    struct stat st {};
    if (::fstat(session_fd, &st) != 0) return nullptr;
    for (Session& s : sessions_)
        if (S_ISREG(st.st_mode) && s.ino == st.st_ino) return &s;
    return nullptr;
}

Result<UniqueFd> FakeLuo::create_session(const std::string& name) {
    if (auto ok = open_device(); !ok) return ok.error();
    prune();
    if (name.empty() || name.size() > luo_max_session_name) return fake_error(EINVAL, "CREATE_SESSION");
    for (const Session& s : sessions_)
        if (!s.incoming && s.name == name) return fake_error(EEXIST, "CREATE_SESSION");
    return new_session(name, false);
}

Result<UniqueFd> FakeLuo::retrieve_session(const std::string& name) {
    if (auto ok = open_device(); !ok) return ok.error();
    prune();
    for (const Session& s : sessions_)
        if (s.incoming && s.name == name) return fake_error(EINVAL, "RETRIEVE_SESSION");
    if (!incoming_.count(name)) return fake_error(ENOENT, "RETRIEVE_SESSION");
    return new_session(name, true);
}

// As memfd_luo's can_preserve(): a shmem file with no links (a memfd), and
// only the seals memfd_luo knows.
Result<void> FakeLuo::check_preservable(int fd) const {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return fake_error(EBADF, "PRESERVE_FD");
    struct statfs fs {};
    if (::fstatfs(fd, &fs) != 0 || fs.f_type != TMPFS_MAGIC || st.st_nlink != 0 || !S_ISREG(st.st_mode))
        return fake_error(ENOENT, "PRESERVE_FD");
    int seals = ::fcntl(fd, F_GET_SEALS);
    if (seals > 0 && (static_cast<std::uint32_t>(seals) & ~memfd_luo_all_seals))
        return fake_error(EOPNOTSUPP, "PRESERVE_FD");
    for (const Session& s : sessions_)
        for (const auto& [token, file] : s.files) {
            struct stat other {};
            if (::fstat(file.get(), &other) == 0 && other.st_dev == st.st_dev && other.st_ino == st.st_ino)
                return fake_error(EBUSY, "PRESERVE_FD");
        }
    return {};
}

Result<void> FakeLuo::preserve_fd(int session_fd, std::uint64_t token, int fd) {
    prune();
    Session* s = lookup(session_fd);
    if (!s) return fake_error(ENOTTY, "PRESERVE_FD");
    if (s->incoming) return fake_error(EINVAL, "PRESERVE_FD");
    if (s->files.count(token)) return fake_error(EEXIST, "PRESERVE_FD");
    if (auto ok = check_preservable(fd); !ok) return ok;
    UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!copy.valid()) return fake_error(errno, "PRESERVE_FD");
    auto bytes = read_whole(copy.get(), std::size_t{1} << 30);
    if (!bytes) return bytes.error();
    std::error_code ec;
    std::filesystem::create_directories(s->path.string() + ".d", ec);
    std::ofstream(s->path.string() + ".d/" + std::to_string(token), std::ios::binary) << *bytes;
    s->files.emplace(token, std::move(copy));
    return {};
}

Result<UniqueFd> FakeLuo::retrieve_fd(int session_fd, std::uint64_t token) {
    Session* s = lookup(session_fd);
    if (!s) return fake_error(ENOTTY, "RETRIEVE_FD");
    if (!s->incoming || s->finished) return fake_error(EINVAL, "RETRIEVE_FD");
    auto session = incoming_.find(s->name);
    if (session == incoming_.end()) return fake_error(EINVAL, "RETRIEVE_FD");
    auto file = session->second.find(token);
    if (file == session->second.end()) return fake_error(ENOENT, "RETRIEVE_FD");
    return sealed_memfd("luo-" + s->name + "-" + std::to_string(token), file->second);
}

Result<void> FakeLuo::finish(int session_fd) {
    Session* s = lookup(session_fd);
    if (!s) return fake_error(ENOTTY, "FINISH");
    if (!s->incoming) return fake_error(EINVAL, "FINISH");
    if (!s->finished) drop_incoming(s->name);
    s->finished = true;
    return {};
}

Result<std::string> FakeLuo::session_name(int session_fd) {
    Session* s = lookup(session_fd);
    if (!s) return fake_error(ENOTTY, "GET_NAME");
    return s->name;
}

std::vector<std::string> FakeLuo::live_outgoing() {
    prune();
    std::vector<std::string> names;
    for (const Session& s : sessions_)
        if (!s.incoming) names.push_back(s.name);
    return names;
}

Result<void> FakeLuo::freeze() {
    if (root_.is_live()) return fake_error(EPERM, "the fake LUO never writes to the live system");
    prune();
    std::error_code ec;
    std::filesystem::remove_all(dir("outgoing"), ec);
    for (const Session& s : sessions_) {
        if (s.incoming) continue;
        std::filesystem::create_directories(dir("outgoing/" + s.name), ec);
        if (ec) return errno_error(ec.value(), dir("outgoing/" + s.name).string(), "mkdir (fake LUO freeze)");
        for (const auto& [token, fd] : s.files) {
            auto bytes = read_whole(fd.get(), std::size_t{1} << 30);
            if (!bytes) return bytes.error();
            std::ofstream out(dir("outgoing/" + s.name + "/" + std::to_string(token)), std::ios::binary);
            out << *bytes;
            if (!out) return plain_error(s.name, "writing the fake LUO freeze");
        }
    }
    return {};
}

}  // namespace khod
