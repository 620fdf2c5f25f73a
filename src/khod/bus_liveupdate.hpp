// org.kexec.khod1.LiveUpdate on /org/kexec/khod1: a thin sd-bus shell over
// the LUO broker (khod::LuoSessions) and the exec barrier. The members are
// defined in dbus/org.kexec.khod1.LiveUpdate.xml. It is also the gate that
// Handover.Exec passes through: the session checks before the reboot, the
// barrier, and the manifest written at the last moment.
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "bus_object.hpp"
#include "exec_barrier.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kho/handover.hpp"
#include "khod/khod_config.hpp"
#include "khod/luo/luo_sessions.hpp"
#include "khod/metrics/metrics.hpp"
#include "luo_carried.hpp"
#include "polkit.hpp"
#include "sd_ptr.hpp"

namespace khod {

class LiveUpdateObject {
public:
    // sessions and barrier may be null only for --bus-introspect.
    LiveUpdateObject(sd_bus* bus, sd_event* event, const Sysroot* root, LuoSessions* sessions,
                     ExecBarrier* barrier, LiveUpdateConfig config, PolkitAuthorizer* authorizer);
    LiveUpdateObject(const LiveUpdateObject&) = delete;
    LiveUpdateObject& operator=(const LiveUpdateObject&) = delete;

    int attach();
    bool serving() const { return sessions_ != nullptr; }
    // khod answers on the bus from now: the khod-ready phase, and the
    // RetrieveTimeoutSec= timer for sessions held for their owners.
    void mark_ready();

    // Exec's gate. check_exec: refuses when held sessions could not survive
    // the reboot, and returns the flags Handover gets: through kexec.target
    // where systemd keeps khod's fd store, and so the sessions, open until
    // its reboot(2); else a direct reboot, since kexec.target would stop khod
    // and close them.
    Result<std::uint64_t, Failure> check_exec(std::uint64_t flags, const HandoverTarget& target) const;
    // What check_exec asks whether systemd keeps the sessions through a
    // kexec (systemd_carries_fd_store() in khod); carried takes the manifest
    // session out of the fd store when an exec is abandoned. Without this,
    // sessions always mean a direct reboot.
    void carry_through_systemd(std::function<Result<std::string>()> probe, CarriedLuo* carried) {
        systemd_carries_ = std::move(probe);
        carried_ = carried;
    }
    // PrepareForKexec(true), the barrier, then the manifest; then(ok) means
    // reboot now, then(failure) that the reboot must not happen.
    void before_reboot(std::function<void(const Result<void, Failure>&)> then);
    // The reboot did not happen: no manifest, PrepareForKexec(false).
    void abandoned();

    // LastUpdatePhases: the marks of the live update that led to this boot
    // (empty when no manifest came).
    std::vector<PhaseMark> last_update_phases() const;
    const LuoSessions* sessions() const { return sessions_; }
    // Runs after the properties changed (the metrics file follows them).
    void on_change(std::function<void()> listener) { changed_ = std::move(listener); }

private:
    Result<void, Failure> write_manifest_now();
    // Between the manifest and the reboot sessions must not change: the next
    // kernel's khod holds what the manifest names.
    std::optional<Failure> refuse_after_manifest() const;
    // Every method needs manage-sessions (the sessions are then checked to be the caller's own).
    std::optional<int> authorize(sd_bus_message* m, sd_bus_error* error) {
        return authorizer_->check(m, khod1::action::manage_sessions, error);
    }
    struct Properties;  // one getter per property (bus_liveupdate.cpp)
    struct Methods;     // one handler per method
    static const sd_bus_vtable vtable_[];

    void emit_changed(const std::vector<std::string>& properties);
    void emit_prepare_for_kexec(bool start);
    void arm_retrieve_timeout();
    static int on_retrieve_timeout(sd_event_source* source, uint64_t usec, void* userdata);

    sd_bus* bus_;
    sd_event* event_;
    const Sysroot* root_;
    LuoSessions* sessions_;
    ExecBarrier* barrier_;
    LiveUpdateConfig config_;
    PolkitAuthorizer* authorizer_;
    LuoPhases exec_phases_;
    std::uint64_t kernel_start_usec_ = 0;
    std::uint64_t ready_usec_ = 0;
    std::uint64_t first_retrieve_usec_ = 0;
    bool manifest_written_ = false;
    std::function<Result<std::string>()> systemd_carries_;
    CarriedLuo* carried_ = nullptr;
    SdBusSlotPtr slot_;
    SdEventSourcePtr retrieve_timer_;
    std::function<void()> changed_;
};

}  // namespace khod
