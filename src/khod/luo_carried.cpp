#include "luo_carried.hpp"

#include <cerrno>

#include "khod/luo/luo_manifest.hpp"

namespace khod {

namespace {

constexpr const char* out_prefix = "luo-out-";  // LuoSessions' names for outgoing sessions

}  // namespace

bool CarriedLuo::is_incoming(int session_fd) {
    auto r = kernel_.preserve_fd(session_fd, luo_manifest_token, -1);
    return !r && r.error().code == EINVAL;
}

std::vector<std::string> CarriedLuo::take_carried(std::vector<std::pair<std::string, UniqueFd>>& stored) {
    std::vector<std::string> notes;
    std::vector<std::pair<std::string, UniqueFd>> rest;
    for (auto& [fdname, fd] : stored) {
        const bool manifest = fdname == manifest_fdname;
        if (!manifest && fdname.rfind(out_prefix, 0) != 0) {
            rest.emplace_back(std::move(fdname), std::move(fd));
            continue;
        }
        auto name = kernel_.session_name(fd.get());
        if (!name || !is_incoming(fd.get())) {
            if (manifest) {
                // This boot's own: khod stopped between its manifest and a
                // reboot that then did not happen. Kept, it would hold the
                // name "khod" and fail the next exec's manifest.
                store_.remove(fdname);
                notes.push_back("dropped the manifest session of an exec that did not happen");
            } else {
                rest.emplace_back(std::move(fdname), std::move(fd));  // a restart in this boot
            }
            continue;
        }
        notes.push_back("LUO session " + *name + " came through the kexec in the fd store (" + fdname + ")");
        carried_.insert_or_assign(*name, Carried{fdname, std::move(fd)});
    }
    stored = std::move(rest);
    return notes;
}

std::vector<std::string> CarriedLuo::release_unclaimed() {
    std::vector<std::string> names;
    for (auto& [name, c] : carried_) {
        // Closing a retrieved session finishes it: its memory is freed.
        store_.remove(c.fdname);
        names.push_back(name);
    }
    carried_.clear();
    return names;
}

void CarriedLuo::forget_manifest() {
    store_.remove(manifest_fdname);
}

Result<UniqueFd> CarriedLuo::create_session(const std::string& name) {
    auto fd = kernel_.create_session(name);
    if (fd && name == luo_manifest_session && store_.available()) {
        store_.remove(manifest_fdname);
        store_.store(manifest_fdname, fd->get());
    }
    return fd;
}

Result<UniqueFd> CarriedLuo::retrieve_session(const std::string& name) {
    auto it = carried_.find(name);
    if (it == carried_.end()) return kernel_.retrieve_session(name);
    // The broker stores what it holds under its own name.
    store_.remove(it->second.fdname);
    UniqueFd fd = std::move(it->second.fd);
    carried_.erase(it);
    return fd;
}

}  // namespace khod
