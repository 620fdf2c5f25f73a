// LuoSessions::restore(): what a starting khod takes back, first from the fd
// store (a khod restart within one boot), then from the previous kernel's
// manifest (the first khod after a live update).
#include <time.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "khod/luo/luo_sessions.hpp"
#include "khod/luo/memfd.hpp"

namespace khod {

namespace {

// /dev/liveupdate is exclusive: another LUO client opening it at boot makes
// RETRIEVE_SESSION fail with EBUSY for as long as it holds it. A few short
// tries (2 s in all, before khod is ready) ride over an ioctl's worth of
// holding; a session still refused is reported, not dropped in silence.
Result<UniqueFd> retrieve_session_retrying(LuoKernel& kernel, const std::string& name) {
    for (int attempt = 0;; ++attempt) {
        auto fd = kernel.retrieve_session(name);
        if (fd || fd.error().code != EBUSY || attempt == 19) return fd;
        timespec pause{0, 100 * 1000 * 1000};
        nanosleep(&pause, nullptr);
    }
}

constexpr const char* out_prefix = "luo-out-";
constexpr const char* in_prefix = "luo-in-";
constexpr const char* state_name = "luo-state";

using StateKey = std::pair<bool, std::string>;  // incoming, name
using StateMap = std::map<StateKey, LuoSessionEntry>;

bool has_prefix(const std::string& s, const char* prefix) {
    return s.rfind(prefix, 0) == 0;
}

// The owners and tokens the previous khod process left in "luo-state".
StateMap read_state(std::vector<std::pair<std::string, UniqueFd>>& stored, LuoRecovery& rec) {
    StateMap map;
    for (auto& [name, fd] : stored) {
        if (name != state_name) continue;
        auto text = read_whole(fd.get(), luo_manifest_max_bytes);
        auto m = text ? decode_manifest(*text) : Result<LuoManifest>(text.error());
        if (!m) {
            Error e = m.error();
            e.path = "fd store entry luo-state";
            e.message += "; the sessions in the fd store come back owned by root";
            rec.problems.push_back(std::move(e));
            continue;
        }
        for (LuoSessionEntry& s : m->sessions) map[{s.incoming, s.name}] = std::move(s);
    }
    return map;
}

}  // namespace

void LuoSessions::adopt_one(const std::string& fdname, UniqueFd fd, const StateLookup& lookup,
                            LuoRecovery& rec) {
    const bool incoming = has_prefix(fdname, in_prefix);
    const std::string stored_name = fdname.substr(std::strlen(incoming ? in_prefix : out_prefix));
    auto name = kernel_.session_name(fd.get());
    if (!name) {
        rec.problems.push_back(plain_error("fd store entry " + fdname,
                                           "not a LUO session (" + name.error().describe() + "); dropped"));
        store_.remove(fdname);
        return;
    }
    std::vector<LuoSession>& list = incoming ? incoming_ : outgoing_;
    for (const LuoSession& s : list)
        if (s.name == *name) return;  // the same session stored twice: the copy closes harmlessly
    if (*name != stored_name)
        rec.problems.push_back(plain_error("fd store entry " + fdname,
                                           "the kernel names the session \"" + *name + "\"; held as that"));
    LuoSession s{*name, LuoOwner{}, {}, std::move(fd)};
    if (const LuoSessionEntry* e = lookup(incoming, *name)) {
        s.owner = e->owner;
        s.files = e->files;
    } else {
        rec.problems.push_back(plain_error("session " + *name, "no owner recorded; it now belongs to root"));
    }
    rec.adopted.push_back(*name);
    list.push_back(std::move(s));
}

void LuoSessions::adopt_stored(std::vector<std::pair<std::string, UniqueFd>>& stored, LuoRecovery& rec) {
    StateMap state = read_state(stored, rec);
    StateLookup lookup = [&state](bool incoming, const std::string& name) -> const LuoSessionEntry* {
        auto it = state.find({incoming, name});
        return it == state.end() ? nullptr : &it->second;
    };
    for (auto& [fdname, fd] : stored)
        if (has_prefix(fdname, out_prefix) || has_prefix(fdname, in_prefix))
            adopt_one(fdname, std::move(fd), lookup, rec);
}

// The previous kernel's manifest, or nothing; problems where there should have been one.
std::optional<LuoManifest> LuoSessions::take_manifest(LuoRecovery& rec) {
    auto session = retrieve_session_retrying(kernel_, luo_manifest_session);
    if (!session) {
        const Error& e = session.error();
        // ENOENT: a cold boot, or a kexec without khod. ENODEV: no LUO at all.
        // EINVAL: retrieved already in this boot, by a khod that then stopped.
        if (e.code == ENOENT || e.code == ENODEV || e.code == EINVAL) return std::nullopt;
        Error p = e;
        if (e.code == EIO) p.message += ": the kernel lost the previous kernel's LUO data (incoming_lost)";
        rec.problems.push_back(std::move(p));
        return std::nullopt;
    }
    std::optional<LuoManifest> out;
    auto memfd = kernel_.retrieve_fd(session->get(), luo_manifest_token);
    auto text = memfd ? read_whole(memfd->get(), luo_manifest_max_bytes) : Result<std::string>(memfd.error());
    auto m = text ? decode_manifest(*text) : Result<LuoManifest>(text.error());
    if (m) {
        out = std::move(*m);
    } else {
        Error e = m.error();
        e.path = "LUO session khod, token 0";
        rec.problems.push_back(std::move(e));
    }
    manifest_session_ = std::move(*session);  // finished once the sessions it names are held
    return out;
}

void LuoSessions::hold_from_manifest(const LuoManifest& m, LuoRecovery& rec) {
    for (const LuoSessionEntry& e : m.sessions) {
        // Only names khod could have made: never another program's session.
        if (e.incoming || !check_session_name(e.name)) continue;
        auto fd = retrieve_session_retrying(kernel_, e.name);
        if (!fd) {
            if (fd.error().code != ENOENT) rec.problems.push_back(fd.error());
            rec.missing.push_back(e);
            continue;
        }
        LuoSession s{e.name, e.owner, e.files, std::move(*fd)};
        for (LuoFileEntry& f : s.files) f.retrieved = false;
        store_.store(in_prefix + e.name, s.fd.get());
        rec.held.push_back(e.name);
        incoming_.push_back(std::move(s));
    }
}

LuoRecovery LuoSessions::restore(std::vector<std::pair<std::string, UniqueFd>> stored) {
    LuoRecovery rec;
    adopt_stored(stored, rec);
    if (incoming_.empty()) {
        if (auto m = take_manifest(rec)) {
            rec.manifest_found = true;
            rec.previous_release = m->release;
            previous_release_ = m->release;
            previous_phases_ = m->phases;
            hold_from_manifest(*m, rec);
        }
        // Done with it either way; closing would imply FINISH, asked for here to see a refusal.
        if (manifest_session_.valid())
            if (auto f = kernel_.finish(manifest_session_.get()); !f) rec.problems.push_back(f.error());
        manifest_session_.reset();
    }
    refresh_state();
    if (!outgoing_.empty() || !incoming_.empty()) notify({"Outgoing", "Incoming"});
    return rec;
}

}  // namespace khod
