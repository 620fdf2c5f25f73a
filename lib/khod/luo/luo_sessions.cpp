#include "khod/luo/luo_sessions.hpp"

#include <algorithm>
#include <cerrno>

#include "khod/luo/memfd.hpp"

namespace khod {

namespace {

constexpr const char* out_prefix = "luo-out-";
constexpr const char* in_prefix = "luo-in-";
constexpr const char* state_name = "luo-state";

Failure fail(Errc kind, std::string path, std::string message) {
    return Failure{kind, plain_error(std::move(path), std::move(message))};
}

Failure from_kernel(Errc kind, const Error& e, std::string message) {
    Error out = e;
    out.message = e.message.empty() ? std::move(message) : e.message + ": " + message;
    return Failure{kind, std::move(out)};
}

// The kernel's refusals common to every LUO ioctl, in the kinds callers act on.
Failure map_common(const Error& e, const std::string& what) {
    switch (e.code) {
        case EBUSY:
            return from_kernel(Errc::busy, e,
                               "/dev/liveupdate is open in another process (systemd, or another LUO client: "
                               "see fuser /dev/liveupdate); try again once it is closed");
        case EIO:
            return from_kernel(Errc::incoming_lost, e,
                               "the kernel could not restore the previous kernel's LUO data; LUO is unusable "
                               "until the next cold boot");
        case ENODEV: return from_kernel(Errc::not_supported, e, "boot with liveupdate=on (it needs kho=on)");
        default: return from_kernel(Errc::kernel_refused, e, what);
    }
}

Failure map_create(const Error& e, const std::string& name) {
    if (e.code == EEXIST)
        return from_kernel(Errc::session_exists, e,
                           "another process holds an outgoing session \"" + name + "\"; pick another name");
    if (e.code == EINVAL) return from_kernel(Errc::invalid_argument, e, "the kernel refused the name");
    return map_common(e, "creating session \"" + name + "\"");
}

std::string seal_names(std::uint32_t seals) {
    static constexpr std::pair<std::uint32_t, const char*> known[] = {{0x1, "SEAL"},          {0x2, "SHRINK"},
                                                                      {0x4, "GROW"},          {0x8, "WRITE"},
                                                                      {0x10, "FUTURE_WRITE"}, {0x20, "EXEC"}};
    std::string out;
    for (auto [bit, name] : known)
        if (seals & bit) out += std::string(out.empty() ? "" : "|") + name;
    if (std::uint32_t rest = seals & ~0x3fU) out += (out.empty() ? "" : "|") + std::to_string(rest);
    return out.empty() ? "none" : out;
}

Failure map_preserve(const Error& e, std::uint64_t token, int fd) {
    const std::string t = "token " + std::to_string(token);
    switch (e.code) {
        case EEXIST:
            return from_kernel(Errc::session_exists, e, t + " is used in this session already; pick another");
        case EBUSY:
            return from_kernel(Errc::busy, e,
                               "the file is preserved already (in this or another session), or retrieved "
                               "and not yet finished");
        case ENOENT:
            return from_kernel(Errc::invalid_argument, e,
                               "not a shmem memfd (hugetlb and ordinary files cannot be preserved); copy the "
                               "data into a memfd_create() file without MFD_HUGETLB");
        case EBADF: return from_kernel(Errc::invalid_argument, e, "not an open file descriptor");
        case EOPNOTSUPP: {
            auto facts = memfd_facts(fd);
            std::string seals = facts ? seal_names(facts->seals) : "unknown";
            return from_kernel(Errc::invalid_argument, e,
                               "the file's seals (" + seals +
                                   ") include one memfd_luo does not carry (it carries SEAL, SHRINK, GROW, "
                                   "WRITE, FUTURE_WRITE, EXEC); preserve a copy without it");
        }
        default: return map_common(e, "preserving " + t);
    }
}

Failure map_retrieve_fd(const Error& e, const std::string& name, std::uint64_t token) {
    const std::string t = "token " + std::to_string(token);
    if (e.code == ENOENT)
        return from_kernel(Errc::no_such_session, e, "session \"" + name + "\" has no " + t);
    if (e.code == EINVAL) return from_kernel(Errc::wrong_state, e, "session \"" + name + "\" is finished");
    return map_common(e, "retrieving " + t + " of \"" + name + "\"");
}

Failure map_finish(const Error& e, const std::string& name) {
    if (e.code == EBUSY)
        return from_kernel(Errc::busy, e,
                           "a file handler refused to finish \"" + name +
                               "\"; close what was retrieved from it and try again");
    return map_common(e, "finishing \"" + name + "\"");
}

bool may_act(const LuoOwner& owner, uid_t caller) {
    return caller == 0 || caller == owner.uid;
}

Result<void, Failure> owner_check(const LuoSession& s, uid_t caller) {
    if (may_act(s.owner, caller)) return {};
    return fail(
        Errc::not_owner, s.name,
        "the session belongs to uid " + std::to_string(s.owner.uid) + "; only that user or root may use it");
}

LuoSession* find(std::vector<LuoSession>& list, const std::string& name) {
    auto it = std::find_if(list.begin(), list.end(), [&](const LuoSession& s) { return s.name == name; });
    return it == list.end() ? nullptr : &*it;
}

void erase(std::vector<LuoSession>& list, const std::string& name) {
    list.erase(std::remove_if(list.begin(), list.end(), [&](const LuoSession& s) { return s.name == name; }),
               list.end());
}

LuoSessionEntry entry_of(const LuoSession& s, bool incoming) {
    return LuoSessionEntry{s.name, s.owner, s.files, incoming};
}

}  // namespace

Result<void, Failure> check_session_name(const std::string& name) {
    if (name.empty() || name.size() > luo_max_session_name)
        return fail(Errc::invalid_argument, name,
                    "a session name is 1 to " + std::to_string(luo_max_session_name) + " bytes");
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  std::string_view("_.@+-").find(c) != std::string_view::npos;
        if (!ok) return fail(Errc::invalid_argument, name, "a session name is made of A-Z a-z 0-9 _ . @ + -");
    }
    if (name == luo_manifest_session || name == "systemd")
        return fail(Errc::invalid_argument, name,
                    "\"khod\" (khod's manifest) and \"systemd\" (systemd's fd store) are reserved");
    return {};
}

LuoSessions::LuoSessions(LuoKernel& kernel, LuoFdStore& store, std::string release)
    : kernel_(kernel), store_(store), release_(std::move(release)) {}

std::uint64_t LuoSessions::outgoing_bytes() const {
    std::uint64_t total = 0;
    for (const LuoSession& s : outgoing_)
        for (const LuoFileEntry& f : s.files) total += f.size;
    return total;
}

void LuoSessions::notify(std::vector<std::string> what) {
    if (listener_) listener_(what);
}

void LuoSessions::refresh_state() {
    if (!store_.available()) return;
    LuoManifest m;
    m.release = release_;
    for (const LuoSession& s : outgoing_) m.sessions.push_back(entry_of(s, false));
    for (const LuoSession& s : incoming_) m.sessions.push_back(entry_of(s, true));
    store_.remove(state_name);
    // Without the state a restarted khod still has the sessions (their fds are
    // stored on their own), only their owners fall back to root.
    auto fd = sealed_memfd(state_name, encode_manifest(m));
    if (fd) store_.store(state_name, fd->get());
}

Result<void, Failure> LuoSessions::check_caps(uid_t uid) const {
    if (outgoing_.size() >= max_sessions)
        return fail(Errc::busy, {},
                    "khod holds " + std::to_string(max_sessions) + " sessions, its most; destroy one first");
    auto mine = std::count_if(outgoing_.begin(), outgoing_.end(),
                              [&](const LuoSession& s) { return s.owner.uid == uid; });
    if (static_cast<std::size_t>(mine) >= max_sessions_per_uid)
        return fail(Errc::busy, {},
                    "uid " + std::to_string(uid) + " holds " + std::to_string(max_sessions_per_uid) +
                        " sessions, the most khod holds for one user; destroy one first");
    return {};
}

Result<void, Failure> LuoSessions::create(const std::string& name, const LuoOwner& caller) {
    if (auto ok = check_session_name(name); !ok) return ok;
    if (find(outgoing_, name))
        return fail(Errc::session_exists, name, "khod holds an outgoing session of that name already");
    if (auto ok = check_caps(caller.uid); !ok) return ok;
    auto fd = kernel_.create_session(name);
    if (!fd) return map_create(fd.error(), name);
    store_.store(out_prefix + name, fd->get());
    outgoing_.push_back(LuoSession{name, caller, {}, std::move(*fd)});
    refresh_state();
    notify({"Outgoing"});
    return {};
}

Result<void, Failure> LuoSessions::preserve(const std::string& name, std::uint64_t token, int fd,
                                            uid_t caller) {
    LuoSession* s = find(outgoing_, name);
    if (!s) return fail(Errc::no_such_session, name, "no outgoing session of that name; create it first");
    if (auto ok = owner_check(*s, caller); !ok) return ok;
    auto same = [&](const LuoFileEntry& f) { return f.token == token; };
    if (std::any_of(s->files.begin(), s->files.end(), same))
        return fail(Errc::session_exists, name, "token " + std::to_string(token) + " is used already");
    if (s->files.size() >= max_files_per_session)
        return fail(Errc::busy, name,
                    "the session holds " + std::to_string(max_files_per_session) + " files, the most it may");
    auto facts = memfd_facts(fd);
    if (!facts) return Failure{Errc::invalid_argument, facts.error()};
    if (auto ok = check_bytes(caller, facts->size); !ok) return ok;
    if (auto ok = kernel_.preserve_fd(s->fd.get(), token, fd); !ok)
        return map_preserve(ok.error(), token, fd);
    s->files.push_back(LuoFileEntry{token, facts->size, facts->seals, false});
    refresh_state();
    notify({"Outgoing"});
    return {};
}

Result<void, Failure> LuoSessions::check_bytes(uid_t uid, std::uint64_t more) const {
    if (uid == 0) return {};
    std::uint64_t held = 0;
    for (const LuoSession& s : outgoing_)
        if (s.owner.uid == uid)
            for (const LuoFileEntry& f : s.files) held += f.size;
    if (more <= max_bytes_per_unprivileged_uid && held <= max_bytes_per_unprivileged_uid - more) return {};
    return fail(Errc::busy, "uid " + std::to_string(uid),
                "preserving " + std::to_string(more) + " more bytes would pass the " +
                    std::to_string(max_bytes_per_unprivileged_uid >> 20) +
                    " MiB a non-root user may preserve (" + std::to_string(held) +
                    " held); root has no such limit");
}

Result<void, Failure> LuoSessions::destroy(const std::string& name, uid_t caller) {
    LuoSession* s = find(outgoing_, name);
    if (!s) {
        std::string hint = find(incoming_, name) ? "; an incoming session is let go with Finish" : "";
        return fail(Errc::no_such_session, name, "no outgoing session of that name" + hint);
    }
    if (auto ok = owner_check(*s, caller); !ok) return ok;
    // Closing the last fd unpreserves: the fd store's copy goes too.
    store_.remove(out_prefix + name);
    erase(outgoing_, name);
    refresh_state();
    notify({"Outgoing"});
    return {};
}

Result<UniqueFd, Failure> LuoSessions::retrieve(const std::string& name, std::uint64_t token, uid_t caller) {
    LuoSession* s = find(incoming_, name);
    if (!s) return fail(Errc::no_such_session, name, "no incoming session of that name");
    if (auto ok = owner_check(*s, caller); !ok) return ok.error();
    auto fd = kernel_.retrieve_fd(s->fd.get(), token);
    if (!fd) return map_retrieve_fd(fd.error(), name, token);
    auto it = std::find_if(s->files.begin(), s->files.end(),
                           [&](const LuoFileEntry& f) { return f.token == token; });
    if (it == s->files.end()) {
        // Not in the manifest (written by a khod that did not know it): learn it now.
        auto facts = memfd_facts(fd->get());
        s->files.push_back(LuoFileEntry{token, facts ? facts->size : 0, facts ? facts->seals : 0, true});
    } else {
        it->retrieved = true;
    }
    refresh_state();
    notify({"Incoming"});
    return std::move(*fd);
}

Result<void, Failure> LuoSessions::finish(const std::string& name, uid_t caller) {
    LuoSession* s = find(incoming_, name);
    if (!s) return fail(Errc::no_such_session, name, "no incoming session of that name");
    if (auto ok = owner_check(*s, caller); !ok) return ok;
    if (auto ok = kernel_.finish(s->fd.get()); !ok) return map_finish(ok.error(), name);
    store_.remove(in_prefix + name);
    erase(incoming_, name);
    refresh_state();
    notify({"Incoming"});
    return {};
}

std::vector<LuoSessionEntry> LuoSessions::finish_all_incoming() {
    std::vector<LuoSessionEntry> names;
    for (LuoSession& s : incoming_) {
        // A failed FINISH is not retried: closing a retrieved session implies
        // FINISH, and what a handler still refuses is freed at the next kexec.
        (void)kernel_.finish(s.fd.get());
        store_.remove(in_prefix + s.name);
        names.push_back(entry_of(s, true));
    }
    incoming_.clear();
    if (!names.empty()) {
        refresh_state();
        notify({"Incoming"});
    }
    return names;
}

Result<void, Failure> LuoSessions::write_manifest(const LuoPhases& phases) {
    drop_manifest();
    LuoManifest m;
    m.release = release_;
    m.phases = phases;
    for (const LuoSession& s : outgoing_) m.sessions.push_back(entry_of(s, false));
    auto memfd = sealed_memfd("khod-manifest", encode_manifest(m));
    if (!memfd) return Failure{Errc::io_error, memfd.error()};
    auto session = kernel_.create_session(luo_manifest_session);
    if (!session) return map_create(session.error(), luo_manifest_session);
    // The kernel keeps its own reference to the file; the memfd fd may close.
    if (auto ok = kernel_.preserve_fd(session->get(), luo_manifest_token, memfd->get()); !ok)
        return map_preserve(ok.error(), luo_manifest_token, memfd->get());
    manifest_session_ = std::move(*session);
    return {};
}

void LuoSessions::drop_manifest() {
    manifest_session_.reset();
}

}  // namespace khod
