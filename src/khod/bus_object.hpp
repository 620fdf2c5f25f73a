// What every khod bus interface does the same way: register its vtable on
// /org/kexec/khod1 and announce changed properties.
#pragma once

#include <systemd/sd-bus.h>

#include <string>
#include <string_view>
#include <vector>

#include "khod1-names.hpp"
#include "sd_ptr.hpp"

namespace khod {

// Adds interface's vtable on khod1::object_path; slot owns the registration.
// Negative errno on failure.
int add_interface(sd_bus* bus, SdBusSlotPtr& slot, const char* interface, const sd_bus_vtable* vtable,
                  void* userdata);

// The khod1 error name whose last part is kind (a library failure kind's
// to_string, e.g. "WrongState"); khod1::error::io_error for an unknown kind.
const char* bus_error_name(std::string_view kind);

// PropertiesChanged for these properties of interface; failures are logged.
void emit_properties_changed(sd_bus* bus, const char* interface, const std::vector<std::string>& properties);

}  // namespace khod
