#include "bus_client.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <iostream>

namespace khoctl {

std::unique_ptr<KhodClient> KhodClient::connect(BusFailure& failure) {
    sd_bus* bus = nullptr;
    int r = sd_bus_open_system(&bus);
    if (r < 0) {
        failure = {SD_BUS_ERROR_NO_SERVER, std::string("cannot connect to the system bus: ") +
                                               std::strerror(-r) + " (is dbus running? khod needs it)"};
        return nullptr;
    }
    // At a terminal polkit may ask the user to authenticate (through an agent
    // of their session), as systemctl lets it; in scripts it must not wait.
    (void)sd_bus_set_allow_interactive_authorization(bus, isatty(STDIN_FILENO));
    return std::unique_ptr<KhodClient>(new KhodClient(bus));
}

KhodClient::~KhodClient() {
    sd_bus_flush_close_unref(bus_);
}

bool KhodClient::check(int r, sd_bus_error* error, const char* what, BusFailure& failure) {
    if (r >= 0) return true;
    std::string name = error->name ? error->name : "";
    std::string message = error->message ? error->message : std::strerror(-r);
    if (name == SD_BUS_ERROR_SERVICE_UNKNOWN || name == SD_BUS_ERROR_NAME_HAS_NO_OWNER) {
        message = std::string("khod is not running (nothing owns ") + khod1::bus_name +
                  " on the system bus); start it with `systemctl start khod`";
    } else if (name == SD_BUS_ERROR_ACCESS_DENIED) {
        message = std::string(what) + " was refused (root, or a user polkit allows): " + message;
    }
    failure = {name.empty() ? SD_BUS_ERROR_FAILED : name, message};
    return false;
}

khod::UniqueFd KhodClient::take_fd(sd_bus_message* reply, BusFailure& failure) {
    int fd = -1;
    int r = sd_bus_message_read_basic(reply, 'h', &fd);
    khod::UniqueFd own(r > 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1);
    int saved = errno;
    sd_bus_message_unref(reply);
    if (r <= 0)
        failure = {SD_BUS_ERROR_INVALID_ARGS,
                   std::string("malformed reply: no fd in it (") + std::strerror(r < 0 ? -r : EBADMSG) + ")"};
    else if (!own.valid())
        failure = {SD_BUS_ERROR_FAILED, std::string("duplicating the fd khod sent: ") + std::strerror(saved)};
    return own;
}

namespace {

// Reads one variant's content into JSON; handles the types khod exports.
int read_value(sd_bus_message* m, nlohmann::json& out) {
    char type = 0;
    const char* contents = nullptr;
    int r = sd_bus_message_peek_type(m, &type, &contents);
    if (r <= 0) return r;
    switch (type) {
        case 's': {
            const char* s = nullptr;
            r = sd_bus_message_read_basic(m, 's', &s);
            out = s ? s : "";
            return r;
        }
        case 't': {
            std::uint64_t v = 0;
            r = sd_bus_message_read_basic(m, 't', &v);
            out = v;
            return r;
        }
        case 'u': {
            std::uint32_t v = 0;
            r = sd_bus_message_read_basic(m, 'u', &v);
            out = v;
            return r;
        }
        case 'b': {
            int v = 0;
            r = sd_bus_message_read_basic(m, 'b', &v);
            out = v != 0;
            return r;
        }
        case 'a':
        case 'r':
        case 'v': {
            r = sd_bus_message_enter_container(m, type, contents);
            if (r < 0) return r;
            out = nlohmann::json::array();
            for (;;) {
                nlohmann::json item;
                r = read_value(m, item);
                if (r < 0) return r;
                if (r == 0) break;
                if (type == 'v') {
                    out = item;
                } else {
                    out.push_back(item);
                }
            }
            return sd_bus_message_exit_container(m) < 0 ? -EBADMSG : 1;
        }
        default: return sd_bus_message_skip(m, nullptr) < 0 ? -EBADMSG : 1;
    }
}

}  // namespace

bool KhodClient::properties(const char* interface, nlohmann::json& out, BusFailure& failure) {
    sd_bus_error error{};  // SD_BUS_ERROR_NULL, without its C compound literal
    sd_bus_message* reply = nullptr;
    int r = sd_bus_call_method(bus_, khod1::bus_name, khod1::object_path, "org.freedesktop.DBus.Properties",
                               "GetAll", &error, &reply, "s", interface);
    bool ok = check(r, &error, "reading properties", failure);
    sd_bus_error_free(&error);
    if (!ok) return false;
    out = nlohmann::json::object();
    r = sd_bus_message_enter_container(reply, 'a', "{sv}");
    while (r > 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
        const char* name = nullptr;
        if ((r = sd_bus_message_read_basic(reply, 's', &name)) < 0) break;
        nlohmann::json value;
        if ((r = read_value(reply, value)) < 0) break;
        out[name] = value;
        if ((r = sd_bus_message_exit_container(reply)) < 0) break;
        r = 1;
    }
    sd_bus_message_unref(reply);
    if (r < 0) {
        failure = {SD_BUS_ERROR_INVALID_ARGS, std::string("malformed reply: ") + std::strerror(-r)};
        return false;
    }
    return true;
}

bool KhodClient::property(const char* interface, const char* name, nlohmann::json& out, BusFailure& failure) {
    sd_bus_error error{};  // SD_BUS_ERROR_NULL, without its C compound literal
    sd_bus_message* reply = nullptr;
    int r = sd_bus_call_method(bus_, khod1::bus_name, khod1::object_path, "org.freedesktop.DBus.Properties",
                               "Get", &error, &reply, "ss", interface, name);
    bool ok = check(r, &error, "reading a property", failure);
    sd_bus_error_free(&error);
    if (!ok) return false;
    r = read_value(reply, out);
    sd_bus_message_unref(reply);
    if (r < 0) {
        failure = {SD_BUS_ERROR_INVALID_ARGS, std::string("malformed reply: ") + std::strerror(-r)};
        return false;
    }
    return true;
}

int report_failure(const BusFailure& failure, bool json) {
    if (json) {
        std::cout << nlohmann::json{{"ok", false},
                                    {"error", {{"name", failure.name}, {"message", failure.message}}}}
                         .dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
                  << '\n';
    } else {
        std::string shortname = failure.name;
        if (auto dot = shortname.rfind('.'); dot != std::string::npos) shortname = shortname.substr(dot + 1);
        std::cerr << "khoctl: " << shortname << ": " << failure.message << '\n';
    }
    return 1;
}

int show_after_call(KhodClient& client, const InterfaceView& view, bool json, const char* done) {
    BusFailure failure;
    nlohmann::json props;
    if (!client.properties(view.interface, props, failure)) return report_failure(failure, json);
    if (json) {
        std::cout << nlohmann::json{{"ok", true}, {view.json_key, view.to_json ? view.to_json(props) : props}}
                         .dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
                  << '\n';
    } else {
        if (*done) std::cout << done << '\n';
        view.print(props);
    }
    return 0;
}

}  // namespace khoctl
