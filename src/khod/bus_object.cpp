#include "bus_object.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <string_view>

#include "guard.hpp"
#include "log.hpp"

namespace khod {

int add_interface(sd_bus* bus, SdBusSlotPtr& slot, const char* interface, const sd_bus_vtable* vtable,
                  void* userdata) {
    // khod decides who may call what (polkit.hpp), so the vtables mark their
    // methods UNPRIVILEGED: sd-bus must not demand CAP_SYS_ADMIN on its own.
    sd_bus_slot* raw = nullptr;
    int r = sd_bus_add_object_vtable(bus, &raw, khod1::object_path, interface, vtable, userdata);
    if (r < 0) return r;
    slot.reset(raw);
    return 0;
}

namespace {

// Each library failure kind on the wire: its D-Bus error name and the errno
// that name stands for, in the order of Errc. The names are the XML files'.
struct BusError {
    Errc kind;
    const char* name;
    int errno_value;
};

constexpr BusError bus_errors[] = {
    {Errc::wrong_state, khod1::error::wrong_state, EBUSY},
    {Errc::not_supported, khod1::error::not_supported, EOPNOTSUPP},
    {Errc::preflight_failed, khod1::error::preflight_failed, ENOEXEC},
    {Errc::invalid_argument, khod1::error::invalid_argument, EINVAL},
    {Errc::no_recipe, khod1::error::no_recipe, ENOENT},
    {Errc::kernel_refused, khod1::error::kernel_refused, EIO},
    {Errc::target_incompatible, khod1::error::target_incompatible, ENOEXEC},
    {Errc::not_owner, khod1::error::not_owner, EPERM},
    {Errc::session_exists, khod1::error::session_exists, EEXIST},
    {Errc::no_such_session, khod1::error::no_such_session, ENOENT},
    {Errc::busy, khod1::error::busy, EBUSY},
    {Errc::incoming_lost, khod1::error::incoming_lost, EIO},
    {Errc::io_error, khod1::error::io_error, EIO},
};

constexpr bool in_errc_order() {
    for (std::size_t i = 0; i < std::size(bus_errors); ++i)
        if (bus_errors[i].kind != static_cast<Errc>(i)) return false;
    return std::size(bus_errors) == static_cast<std::size_t>(Errc::io_error) + 1;
}
static_assert(in_errc_order(), "bus_errors needs one entry per Errc, in order");

// The same table as sd-bus wants it; sd_bus_error_add_map keeps the pointer.
constexpr auto bus_error_map = [] {
    std::array<sd_bus_error_map, std::size(bus_errors) + 1> map{};
    for (std::size_t i = 0; i < std::size(bus_errors); ++i)
        map[i] = sd_bus_error_map{bus_errors[i].name, bus_errors[i].errno_value};
    map.back() = SD_BUS_ERROR_MAP_END;
    return map;
}();

}  // namespace

const char* bus_error_name(Errc kind) {
    return bus_errors[static_cast<std::size_t>(kind)].name;
}

namespace {

// The length of the valid UTF-8 sequence at text[i], or 0 (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF).
std::size_t utf8_sequence(std::string_view text, std::size_t i) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char c = byte(i);
    if (c < 0x80) return 1;
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // the range of the byte after the first
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c == 0xe0)
        n = 3, lo = 0xa0;
    else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
        n = 3;
    else if (c == 0xed)
        n = 3, hi = 0x9f;
    else if (c == 0xf0)
        n = 4, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3)
        n = 4;
    else if (c == 0xf4)
        n = 4, hi = 0x8f;
    else
        return 0;
    if (i + n > text.size()) return 0;
    if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
    for (std::size_t k = 2; k < n; ++k)
        if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
    return n;
}

}  // namespace

std::string bus_string(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        if (const std::size_t n = utf8_sequence(text, i)) {
            out.append(text, i, n);
            i += n;
            continue;
        }
        static constexpr char hex[] = "0123456789abcdef";
        const auto c = static_cast<unsigned char>(text[i++]);
        out += "\\x";
        out += hex[c >> 4];
        out += hex[c & 0xf];
    }
    return out;
}

int reply_failure(sd_bus_message* call, sd_bus_error* error, const Failure& failure) {
    const std::string message = bus_string(failure.describe());
    const char* full_interface = sd_bus_message_get_interface(call);
    std::string_view interface = full_interface ? full_interface : "";
    interface.remove_prefix(interface.rfind('.') + 1);  // "Handover": the log says which object
    log(LOG_ERR, "%.*s.%s: %s", static_cast<int>(interface.size()), interface.data(),
        sd_bus_message_get_member(call), message.c_str());
    return sd_bus_error_set(error, bus_error_name(failure.kind), message.c_str());
}

int reply_exception(sd_bus_message* call, sd_bus_error* error, const char* what) noexcept {
    const char* member = sd_bus_message_get_member(call);
    log(LOG_ERR, "%s: unexpected exception: %s", member ? member : "?", what);
    const int r = sd_bus_error_set(error, khod1::error::io_error, what);
    return r < 0 ? r : -EIO;
}

int register_bus_errors() {
    return sd_bus_error_add_map(bus_error_map.data());
}

void emit_properties_changed(sd_bus* bus, const char* interface, const std::vector<std::string>& properties) {
    std::vector<char*> names;
    for (const auto& p : properties) names.push_back(const_cast<char*>(p.c_str()));
    names.push_back(nullptr);
    int r = sd_bus_emit_properties_changed_strv(bus, khod1::object_path, interface, names.data());
    if (r < 0) log(LOG_WARNING, "cannot emit PropertiesChanged on %s: %s", interface, std::strerror(-r));
}

}  // namespace khod
