// kdump status / load / unload / reload: the crash kernel that khod keeps
// current under CPU and memory hotplug (org.kexec.khod1.Kdump). status also
// shows what the kernel itself says, read here through --sysroot.
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>

#include "bus_client.hpp"
#include "commands.hpp"
#include "khod/kdump/kdump_state.hpp"

namespace khoctl {

namespace {

nlohmann::json probe_json(const khod::Probe<bool>& p) {
    if (p.ok()) return *p.value;
    return nullptr;
}

nlohmann::json kernel_json(const khod::KdumpCapability& c) {
    nlohmann::json j = {
        {"crash_loaded", probe_json(c.kexec.crash_loaded)},
        {"in_place_update", {{"cpu", khod::to_string(c.cpu)}, {"memory", khod::to_string(c.memory)}}},
        {"crash_elfcorehdr_size",
         c.kexec.crash_elfcorehdr_size.ok() ? nlohmann::json(*c.kexec.crash_elfcorehdr_size.value) : nullptr},
        {"crash_size", c.kexec.crash_size.ok() ? nlohmann::json(*c.kexec.crash_size.value) : nullptr},
    };
    nlohmann::json errors = nlohmann::json::array();
    for (const auto* p : {&c.kexec.crash_loaded, &c.kexec.crash_hotplug_cpu, &c.kexec.crash_hotplug_memory})
        if (p->state == khod::ProbeState::error) errors.push_back(p->error.describe());
    if (!errors.empty()) j["errors"] = errors;
    return j;
}

std::string timestamp(std::uint64_t usec) {
    if (usec == 0) return "never";
    std::time_t t = static_cast<std::time_t>(usec / 1000000);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

std::string seconds(std::uint64_t usec) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f s", static_cast<double>(usec) / 1e6);
    return buf;
}

void print_kdump(const nlohmann::json& p) {
    auto str = [&](const char* k) {
        return p.contains(k) && p[k].is_string() ? p[k].get<std::string>() : "";
    };
    auto num = [&](const char* k) {
        return p.contains(k) && p[k].is_number() ? p[k].get<std::uint64_t>() : 0;
    };
    auto flag = [&](const char* k) { return p.contains(k) && p[k].is_boolean() && p[k].get<bool>(); };
    std::cout << "crash kernel:    " << (flag("Loaded") ? "loaded" : "not loaded")
              << (flag("Managed") ? " (khod keeps it loaded)" : "") << '\n';
    if (p.contains("InPlaceUpdate") && p["InPlaceUpdate"].size() == 2)
        std::cout << "in-place update: cpu " << p["InPlaceUpdate"][0].get<std::string>() << ", memory "
                  << p["InPlaceUpdate"][1].get<std::string>() << '\n';
    std::cout << "hotplug events:  " << num("EventsSeen") << " from " << str("EventSource")
              << (flag("Pending") ? " (action pending)" : "") << '\n';
    std::cout << "reloads:         " << num("Reloads") << ", last " << timestamp(num("LastReloadUsec"))
              << "; without a crash kernel " << seconds(num("UnloadedWindowUsecTotal")) << " in total\n";
    if (p.contains("Recipe") && p["Recipe"].size() == 4 && !p["Recipe"][0].get<std::string>().empty()) {
        const auto& r = p["Recipe"];
        std::cout << "recipe:          " << r[0].get<std::string>() << " (from " << r[3].get<std::string>()
                  << ")\n";
        std::cout << "  initrd:        "
                  << (r[1].get<std::string>().empty() ? "(none)" : r[1].get<std::string>()) << '\n';
        std::cout << "  cmdline:       " << r[2].get<std::string>() << '\n';
        if (p.contains("Loader")) std::cout << "  loader:        " << p["Loader"].get<std::string>() << '\n';
    } else {
        std::cout << "recipe:          none (set Kernel= in khod.conf or run khoctl kdump load)\n";
    }
    if (p.contains("UnloadedWindows") && !p["UnloadedWindows"].empty()) {
        std::cout << "windows without a crash kernel (last " << p["UnloadedWindows"].size() << "):\n";
        for (const auto& w : p["UnloadedWindows"])
            if (w.size() == 4)
                std::cout << "  " << timestamp(w[0].get<std::uint64_t>()) << "  "
                          << seconds(w[1].get<std::uint64_t>()) << (w[2].get<bool>() ? " (open)" : "") << "  "
                          << w[3].get<std::string>() << '\n';
    }
    if (!str("LastError").empty()) std::cout << "last error:      " << str("LastError") << '\n';
}

// Properties JSON → the documented JSON shape.
nlohmann::json kdump_json(const nlohmann::json& p) {
    nlohmann::json j = p;
    if (p.contains("InPlaceUpdate") && p["InPlaceUpdate"].size() == 2)
        j["InPlaceUpdate"] = {{"cpu", p["InPlaceUpdate"][0]}, {"memory", p["InPlaceUpdate"][1]}};
    if (p.contains("Recipe") && p["Recipe"].size() == 4)
        j["Recipe"] = {{"kernel", p["Recipe"][0]},
                       {"initrd", p["Recipe"][1]},
                       {"cmdline", p["Recipe"][2]},
                       {"source", p["Recipe"][3]}};
    if (p.contains("UnloadedWindows")) {
        j["UnloadedWindows"] = nlohmann::json::array();
        for (const auto& w : p["UnloadedWindows"])
            if (w.size() == 4)
                j["UnloadedWindows"].push_back(
                    {{"start_usec", w[0]}, {"duration_usec", w[1]}, {"open", w[2]}, {"cause", w[3]}});
    }
    return j;
}

int status(const GlobalOptions& global) {
    khod::Sysroot root(global.sysroot);
    const khod::KdumpCapability cap = khod::probe_kdump_capability(root);
    BusFailure failure;
    nlohmann::json props;
    bool have = false;
    if (auto client = KhodClient::connect(failure))
        have = client->properties(khod1::kdump_interface, props, failure);
    if (global.json) {
        nlohmann::json out = {{"ok", have}, {"kernel", kernel_json(cap)}};
        if (have)
            out["kdump"] = kdump_json(props);
        else
            out["error"] = {{"name", failure.name}, {"message", failure.message}};
        std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
        return have ? 0 : 1;
    }
    std::cout << "kernel:          " << cap.summary() << '\n';
    if (!have) return report_failure(failure, false);
    print_kdump(props);
    return 0;
}

const InterfaceView kdump_view{khod1::kdump_interface, "kdump", kdump_json, print_kdump};

int call_and_show(const GlobalOptions& global, const char* method, const char* done) {
    return khoctl::call_and_show(kdump_view, global.json, method, done, "");
}

}  // namespace

void add_kdump_commands(CLI::App& app, const GlobalOptions& global, Runner& selected) {
    CLI::App* kdump = app.add_subcommand("kdump", "The crash kernel under CPU and memory hotplug (khod)");
    kdump->require_subcommand(1);
    kdump->add_subcommand("status", "What the kernel and khod say about the crash kernel")
        ->callback([&global, &selected] { selected = [&global] { return status(global); }; });

    struct LoadOptions {
        std::string kernel, initrd, append, loader;
    };
    auto o = std::make_shared<LoadOptions>();
    CLI::App* load = kdump->add_subcommand(
        "load",
        "Load a crash kernel (kexec_file_load, or khod's kexec_load image) and reload with it from now on");
    load->add_option("--kernel", o->kernel, "Crash kernel bzImage")->required()->type_name("FILE");
    load->add_option("--initrd", o->initrd, "Its initrd")->type_name("FILE");
    load->add_option("--append", o->append, "Its command line")->type_name("CMDLINE");
    load->add_option("--loader", o->loader,
                     "file: kexec_file_load; native: khod's kexec_load image; auto: file, native where "
                     "refused (default: khod.conf's Loader=)")
        ->check(CLI::IsMember({"file", "native", "auto"}))
        ->type_name("LOADER");
    load->callback([&global, &selected, o] {
        selected = [&global, o] {
            std::string kernel = absolute_path(o->kernel), initrd = absolute_path(o->initrd);
            const std::uint64_t flags = o->loader == "file"     ? khod1::load_loader_file
                                        : o->loader == "native" ? khod1::load_loader_native
                                        : o->loader == "auto"   ? khod1::load_loader_auto
                                                                : 0;
            return khoctl::call_and_show(kdump_view, global.json, "Load", "loaded", "ssst", kernel.c_str(),
                                         initrd.c_str(), o->append.c_str(), flags);
        };
    });
    kdump->add_subcommand("unload", "Unload the crash kernel; khod stops keeping one loaded")
        ->callback([&global, &selected] {
            selected = [&global] { return call_and_show(global, "Unload", "unloaded"); };
        });
    kdump->add_subcommand("reload", "Load the crash kernel recipe again now")->callback([&global, &selected] {
        selected = [&global] { return call_and_show(global, "Reload", "reloaded"); };
    });
}

}  // namespace khoctl
