#include "introspect.hpp"

#include <sys/socket.h>

#include <atomic>
#include <thread>

#include "bus_handover.hpp"
#include "bus_kdump.hpp"
#include "bus_liveupdate.hpp"
#include "bus_scratch.hpp"
#include "khod/base/fd.hpp"
#include "sd_ptr.hpp"

namespace khod {

namespace {

Result<SdBusPtr> direct_bus(int fd, bool server) {
    sd_bus* raw = nullptr;
    int r = sd_bus_new(&raw);
    if (r < 0) return errno_error(-r, "", "sd_bus_new");
    SdBusPtr bus(raw);
    if ((r = sd_bus_set_fd(bus.get(), fd, fd)) < 0) return errno_error(-r, "", "sd_bus_set_fd");
    if (server) {
        sd_id128_t id{};
        if ((r = sd_id128_randomize(&id)) < 0) return errno_error(-r, "", "sd_id128_randomize");
        if ((r = sd_bus_set_server(bus.get(), 1, id)) < 0) return errno_error(-r, "", "sd_bus_set_server");
    }
    if ((r = sd_bus_set_anonymous(bus.get(), 1)) < 0) return errno_error(-r, "", "sd_bus_set_anonymous");
    if ((r = sd_bus_start(bus.get())) < 0) return errno_error(-r, "", "sd_bus_start");
    return bus;
}

}  // namespace

Result<std::string> introspect_exported_objects() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
        return errno_error(errno, "", "socketpair");
    UniqueFd server_fd(fds[0]), client_fd(fds[1]);

    auto server = direct_bus(server_fd.release(), true);
    if (!server) return server.error();
    HandoverObject handover(server->get(), nullptr, nullptr, nullptr, nullptr);
    if (int r = handover.attach(); r < 0) return errno_error(-r, "", "adding the Handover vtable");
    ScratchObject scratch(server->get(), nullptr);
    if (int r = scratch.attach(); r < 0) return errno_error(-r, "", "adding the Scratch vtable");
    KdumpObject kdump(server->get(), nullptr, "none", CrashLoader::file, nullptr, nullptr, nullptr);
    if (int r = kdump.attach(); r < 0) return errno_error(-r, "", "adding the Kdump vtable");
    LiveUpdateObject liveupdate(server->get(), nullptr, nullptr, nullptr, nullptr, LiveUpdateConfig{},
                                nullptr);
    if (int r = liveupdate.attach(); r < 0) return errno_error(-r, "", "adding the LiveUpdate vtable");

    // The server answers on its own thread while this one makes the call.
    std::atomic<bool> stop{false};
    std::thread serve([&] {
        while (!stop) {
            int r = sd_bus_process(server->get(), nullptr);
            if (r < 0) break;
            if (r == 0) sd_bus_wait(server->get(), 100000);
        }
    });
    std::string xml;
    Result<void> outcome;
    {
        auto client = direct_bus(client_fd.release(), false);
        if (!client) {
            outcome = client.error();
        } else {
            SdBusError error;
            sd_bus_message* raw = nullptr;
            int r = sd_bus_call_method(client->get(), nullptr, khod1::object_path,
                                       "org.freedesktop.DBus.Introspectable", "Introspect", error.get(), &raw,
                                       "");
            SdBusMessagePtr reply(raw);
            const char* text = nullptr;
            if (r >= 0) r = sd_bus_message_read(reply.get(), "s", &text);
            if (r < 0)
                outcome = errno_error(-r, "",
                                      std::string("Introspect: ") + (error.message() ? error.message() : ""));
            else
                xml = text;
        }
    }
    stop = true;
    serve.join();
    if (!outcome) return outcome.error();
    return xml;
}

}  // namespace khod
