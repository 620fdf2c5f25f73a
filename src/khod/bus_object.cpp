#include "bus_object.hpp"

#include <cstring>

#include "log.hpp"

namespace khod {

int add_interface(sd_bus* bus, SdBusSlotPtr& slot, const char* interface, const sd_bus_vtable* vtable,
                  void* userdata) {
    // Who may call what is the bus policy's job (dbus/org.kexec.khod1.conf),
    // so the vtables mark their methods UNPRIVILEGED.
    sd_bus_slot* raw = nullptr;
    int r = sd_bus_add_object_vtable(bus, &raw, khod1::object_path, interface, vtable, userdata);
    if (r < 0) return r;
    slot.reset(raw);
    return 0;
}

const char* bus_error_name(std::string_view kind) {
    static constexpr const char* names[] = {
        khod1::error::wrong_state,      khod1::error::not_supported, khod1::error::preflight_failed,
        khod1::error::invalid_argument, khod1::error::no_recipe,     khod1::error::kernel_refused,
        khod1::error::io_error,
    };
    for (const char* name : names) {
        std::string_view n = name;
        if (n.substr(n.rfind('.') + 1) == kind) return name;
    }
    return khod1::error::io_error;
}

void emit_properties_changed(sd_bus* bus, const char* interface, const std::vector<std::string>& properties) {
    std::vector<char*> names;
    for (const auto& p : properties) names.push_back(const_cast<char*>(p.c_str()));
    names.push_back(nullptr);
    int r = sd_bus_emit_properties_changed_strv(bus, khod1::object_path, interface, names.data());
    if (r < 0) log(LOG_WARNING, "cannot emit PropertiesChanged on %s: %s", interface, std::strerror(-r));
}

}  // namespace khod
