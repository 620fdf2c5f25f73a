// What every khod bus interface does the same way: register its vtable on
// /org/kexec/khod1, answer failed calls and announce changed properties.
#pragma once

#include <systemd/sd-bus.h>

#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "khod/base/errc.hpp"
#include "khod1-names.hpp"
#include "sd_ptr.hpp"

namespace khod {

// Adds interface's vtable on khod1::object_path; slot owns the registration.
// Negative errno on failure.
int add_interface(sd_bus* bus, SdBusSlotPtr& slot, const char* interface, const sd_bus_vtable* vtable,
                  void* userdata);

// The D-Bus error name of a library failure kind (khod1::error::*).
const char* bus_error_name(Errc kind);

// Answers a method call that failed in the library: logs it, and sets error
// to the kind's khod1 error name with the failure's message. The handler
// returns what this returns (negative), so sd-bus sends that error.
int reply_failure(sd_bus_message* call, sd_bus_error* error, const Failure& failure);

// Tells sd-bus the errno of each khod1 error name, so sd_bus_error_set() and
// sd_bus_error_get_errno() give it rather than EIO. Once, before serving.
int register_bus_errors();

// A vtable entry's property getter: Append(object, reply) appends one
// property of the Object that is the vtable's userdata, so each entry names
// its own small getter instead of one getter comparing names. Object::serving()
// is false only under --bus-introspect, where no property is read.
template <class Object, int (*Append)(const Object&, sd_bus_message*)>
int property_getter(sd_bus* /*bus*/, const char* /*path*/, const char* /*interface*/,
                    const char* /*property*/, sd_bus_message* reply, void* userdata, sd_bus_error* error) {
    const auto& self = *static_cast<const Object*>(userdata);
    if (!self.serving()) return sd_bus_error_set(error, SD_BUS_ERROR_FAILED, "not serving");
    // Called from sd-bus's C frames: no exception may leave (guard.hpp).
    try {
        return Append(self, reply);
    } catch (const std::exception& e) {
        return sd_bus_error_set(error, SD_BUS_ERROR_FAILED, e.what());
    } catch (...) {
        return sd_bus_error_set(error, SD_BUS_ERROR_FAILED, "unexpected exception");
    }
}

// text as a D-Bus string may carry it: D-Bus strings must be UTF-8 (sd-bus
// refuses to append anything else, which would fail a whole GetAll), while
// command lines, paths and the messages naming them are bytes. Each byte
// that is not part of valid UTF-8 becomes "\xNN"; valid text is unchanged.
std::string bus_string(std::string_view text);

// PropertiesChanged for these properties of interface; failures are logged.
void emit_properties_changed(sd_bus* bus, const char* interface, const std::vector<std::string>& properties);

}  // namespace khod
