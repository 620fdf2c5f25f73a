// khod as the holder of LUO sessions for its clients. An outgoing session
// lives as long as its fd and an incoming one is finished when its fd closes,
// so the broker owns every session fd and mirrors each into the service
// manager's fd store: a khod restart must not drop preserved memory. Knows
// nothing of D-Bus; callers are a uid (and unit) only.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "khod/base/errc.hpp"
#include "khod/base/fd.hpp"
#include "khod/base/result.hpp"
#include "khod/luo/luo_kernel.hpp"
#include "khod/luo/luo_manifest.hpp"

namespace khod {

// Where session fds survive a khod restart: systemd's fd store in khod (FDSTORE=1,
// FDNAME=), a map in tests. Names are "luo-out-<session>", "luo-in-<session>"
// and "luo-state" (the broker's sessions in the manifest format).
class LuoFdStore {
public:
    virtual ~LuoFdStore() = default;
    // The store keeps its own copy of fd; false when there is no store.
    virtual bool store(const std::string& fdname, int fd) = 0;
    virtual void remove(const std::string& fdname) = 0;
    virtual bool available() const = 0;
};

struct LuoSession {
    std::string name;
    LuoOwner owner;
    std::vector<LuoFileEntry> files;
    UniqueFd fd;  // outgoing: the session itself; incoming: retrieved by khod
};

// What restore() found at start.
struct LuoRecovery {
    bool manifest_found = false;           // the previous kernel's khod left one
    std::string previous_release;          // from the manifest
    std::vector<std::string> held;         // incoming sessions now held for their owners
    std::vector<LuoSessionEntry> missing;  // in the manifest (owner and files), not in the kernel
    std::vector<std::string> adopted;      // outgoing and incoming sessions back from the fd store
    std::vector<Error> problems;           // each said in the journal; none stops khod
};

// Session names: 1-63 bytes of [A-Za-z0-9_.@+-] (the kernel takes any bytes;
// these also make valid fd store names and D-Bus strings). "khod" and
// "systemd" are refused: khod's manifest and systemd's own fd store.
Result<void, Failure> check_session_name(const std::string& name);

class LuoSessions {
public:
    // Per-uid and total caps, so no caller can make khod hold without bound.
    static constexpr std::size_t max_sessions_per_uid = 16;
    static constexpr std::size_t max_sessions = 256;
    static constexpr std::size_t max_files_per_session = 1024;
    // What one non-root uid may have preserved in all (by file size): the
    // kernel fills a sparse memfd's holes and pins every page at PRESERVE,
    // so an unbounded caller could make khod allocate the host's memory.
    // Root (the VMM of a hypervisor host) has no such bound.
    static constexpr std::uint64_t max_bytes_per_unprivileged_uid = std::uint64_t{1} << 30;

    LuoSessions(LuoKernel& kernel, LuoFdStore& store, std::string release);

    // At start, before serving: sessions held before a restart (from the fd
    // store), then the previous kernel's manifest and the sessions it names.
    LuoRecovery restore(std::vector<std::pair<std::string, UniqueFd>> stored);

    Result<void, Failure> create(const std::string& name, const LuoOwner& caller);
    Result<void, Failure> preserve(const std::string& name, std::uint64_t token, int fd, uid_t caller);
    Result<void, Failure> destroy(const std::string& name, uid_t caller);  // unpreserves all its files
    Result<UniqueFd, Failure> retrieve(const std::string& name, std::uint64_t token, uid_t caller);
    Result<void, Failure> finish(const std::string& name, uid_t caller);
    // Finishes every incoming session (RetrieveTimeoutSec=); returns each as
    // it was (owner, files and which were retrieved), for the journal.
    std::vector<LuoSessionEntry> finish_all_incoming();

    // Right before the reboot: session "khod" with the manifest at token 0.
    // drop_manifest() undoes it when the exec is abandoned.
    Result<void, Failure> write_manifest(const LuoPhases& phases);
    void drop_manifest();

    const std::vector<LuoSession>& outgoing() const { return outgoing_; }
    const std::vector<LuoSession>& incoming() const { return incoming_; }
    std::uint64_t outgoing_bytes() const;
    const LuoPhases& previous_phases() const { return previous_phases_; }
    const std::string& previous_release() const { return previous_release_; }

    // Called with "Outgoing" and/or "Incoming" after each change.
    void on_change(std::function<void(const std::vector<std::string>&)> listener) {
        listener_ = std::move(listener);
    }

private:
    using StateLookup = std::function<const LuoSessionEntry*(bool incoming, const std::string& name)>;
    void notify(std::vector<std::string> what);
    // Mirrors all held sessions as "luo-state" in the fd store.
    void refresh_state();
    Result<void, Failure> check_caps(uid_t uid) const;
    Result<void, Failure> check_bytes(uid_t uid, std::uint64_t more) const;
    void adopt_stored(std::vector<std::pair<std::string, UniqueFd>>& stored, LuoRecovery& rec);
    void adopt_one(const std::string& fdname, UniqueFd fd, const StateLookup& lookup, LuoRecovery& rec);
    std::optional<LuoManifest> take_manifest(LuoRecovery& rec);
    void hold_from_manifest(const LuoManifest& m, LuoRecovery& rec);

    LuoKernel& kernel_;
    LuoFdStore& store_;
    std::string release_;
    std::vector<LuoSession> outgoing_;
    std::vector<LuoSession> incoming_;
    UniqueFd manifest_session_;
    LuoPhases previous_phases_;
    std::string previous_release_;
    std::function<void(const std::vector<std::string>&)> listener_;
};

}  // namespace khod
