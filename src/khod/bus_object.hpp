// What every khod bus interface does the same way: register its vtable on
// /org/kexec/khod1 and announce changed properties.
#pragma once

#include <systemd/sd-bus.h>

#include <string>
#include <vector>

#include "sd_ptr.hpp"

namespace khod {

inline constexpr const char* bus_name = "org.kexec.khod1";
inline constexpr const char* bus_object_path = "/org/kexec/khod1";
inline constexpr const char* bus_error_prefix = "org.kexec.khod1.Error.";

// Adds interface's vtable on bus_object_path; slot owns the registration.
// Negative errno on failure.
int add_interface(sd_bus* bus, SdBusSlotPtr& slot, const char* interface, const sd_bus_vtable* vtable,
                  void* userdata);

// PropertiesChanged for these properties of interface; failures are logged.
void emit_properties_changed(sd_bus* bus, const char* interface, const std::vector<std::string>& properties);

}  // namespace khod
