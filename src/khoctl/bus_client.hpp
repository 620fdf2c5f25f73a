// khoctl's side of org.kexec.khod1: calls and property reads, with failures
// turned into messages a person can act on.
#pragma once

#include <systemd/sd-bus.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "khod/base/fd.hpp"
#include "khod1-names.hpp"

namespace khoctl {

struct BusFailure {
    std::string name;     // D-Bus error name, e.g. khod1::error::wrong_state
    std::string message;  // for people
};

class KhodClient {
public:
    // Connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS may point elsewhere).
    static std::unique_ptr<KhodClient> connect(BusFailure& failure);
    ~KhodClient();
    KhodClient(const KhodClient&) = delete;
    KhodClient& operator=(const KhodClient&) = delete;

    // Calls interface.method with the given sd-bus signature and arguments.
    template <class... Args>
    bool call(const char* interface, const char* method, BusFailure& failure, const char* signature,
              Args... args);
    // Calls a method that returns one fd ("h"); the fd is ours (close-on-exec).
    template <class... Args>
    khod::UniqueFd call_for_fd(const char* interface, const char* method, BusFailure& failure,
                               const char* signature, Args... args);
    // Every property of an interface as JSON (strings, numbers, arrays of structs as arrays).
    bool properties(const char* interface, nlohmann::json& out, BusFailure& failure);
    // One property: khod computes only that one (GetAll reads files for some).
    bool property(const char* interface, const char* name, nlohmann::json& out, BusFailure& failure);

private:
    explicit KhodClient(sd_bus* bus) : bus_(bus) {}
    bool check(int r, sd_bus_error* error, const char* what, BusFailure& failure);
    // Reads the reply's "h", duplicates it (the message owns its own), unrefs the reply.
    static khod::UniqueFd take_fd(sd_bus_message* reply, BusFailure& failure);
    sd_bus* bus_;
};

template <class... Args>
bool KhodClient::call(const char* interface, const char* method, BusFailure& failure, const char* signature,
                      Args... args) {
    sd_bus_error error{};  // SD_BUS_ERROR_NULL, without its C compound literal
    int r = sd_bus_call_method(bus_, khod1::bus_name, khod1::object_path, interface, method, &error, nullptr,
                               signature, args...);
    bool ok = check(r, &error, method, failure);
    sd_bus_error_free(&error);
    return ok;
}

template <class... Args>
khod::UniqueFd KhodClient::call_for_fd(const char* interface, const char* method, BusFailure& failure,
                                       const char* signature, Args... args) {
    sd_bus_error error{};  // SD_BUS_ERROR_NULL, without its C compound literal
    sd_bus_message* reply = nullptr;
    int r = sd_bus_call_method(bus_, khod1::bus_name, khod1::object_path, interface, method, &error, &reply,
                               signature, args...);
    bool ok = check(r, &error, method, failure);
    sd_bus_error_free(&error);
    if (!ok) return khod::UniqueFd();
    return take_fd(reply, failure);
}

// Prints a failure (human or JSON) and returns the exit status 1.
int report_failure(const BusFailure& failure, bool json);

// How a command shows an interface after calling one of its methods.
struct InterfaceView {
    const char* interface;  // whose properties to read back
    const char* json_key;   // --json puts them under this key, beside "ok"
    std::function<nlohmann::json(const nlohmann::json&)> to_json;  // the documented shape; null: as read
    std::function<void(const nlohmann::json&)> print;              // the human form
};

// After a call succeeded: `done` and the properties as the call left them.
int show_after_call(KhodClient& client, const InterfaceView& view, bool json, const char* done);

// Calls one method of view.interface, then shows what it left; returns the exit status.
template <class... Args>
int call_and_show(const InterfaceView& view, bool json, const char* method, const char* done,
                  const char* signature, Args... args) {
    BusFailure failure;
    auto client = KhodClient::connect(failure);
    if (!client) return report_failure(failure, json);
    if (!client->call(view.interface, method, failure, signature, args...))
        return report_failure(failure, json);
    return show_after_call(*client, view, json, done);
}

}  // namespace khoctl
