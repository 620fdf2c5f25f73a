#include "khod/kho/preflight.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <sstream>

#include "khod/base/caller_file.hpp"
#include "khod/base/debugfs.hpp"
#include "khod/base/fd.hpp"
#include "khod/base/hex.hpp"
#include "khod/base/units.hpp"
#include "khod/kho/scratch_area_json.hpp"

namespace khod {

namespace {

constexpr std::uint64_t kKexecFileSizeMax = 4ull << 30;
// x86 firmware reports 48-byte EFI memory descriptors almost everywhere; the
// kernel's desc_size is not exported, so the runtime map size is an estimate.
constexpr std::uint64_t kEfiDescSizeGuess = 48;
constexpr std::uint64_t kImaKexecHdr = 24;  // sizeof(struct ima_kexec_hdr)

void add(PreflightReport& r, const char* name, CheckStatus status, std::string message,
         std::optional<Error> error = std::nullopt) {
    r.checks.push_back({name, status, std::move(message), std::move(error)});
}

std::string xloadflag_names(std::uint16_t x) {
    static const std::pair<std::uint16_t, const char*> names[] = {
        {kXlfKernel64, "KERNEL_64"},
        {kXlfCanBeLoadedAbove4G, "CAN_BE_LOADED_ABOVE_4G"},
        {kXlfEfiHandover32, "EFI_HANDOVER_32"},
        {kXlfEfiHandover64, "EFI_HANDOVER_64"},
        {kXlfEfiKexec, "EFI_KEXEC"},
        {kXlfFiveLevel, "5LEVEL"},
        {kXlfFiveLevelEnabled, "5LEVEL_ENABLED"},
        {kXlfMemEncryption, "MEM_ENCRYPTION"},
    };
    std::string out;
    for (const auto& [bit, name] : names)
        if (x & bit) out += (out.empty() ? "" : "|") + std::string(name);
    return out;
}

// The same things kernel_read_file() requires of the initrd, plus readability.
void check_initrd(PreflightReport& r, const std::filesystem::path& path) {
    const std::string p = path.string();
    auto file = open_regular_file(path, "the initrd");
    if (!file) {
        add(r, check::initrd, CheckStatus::failed, file.error().describe(), file.error());
        return;
    }
    const UniqueFd fd = std::move(file->fd);
    const std::uint64_t size = file->size;
    if (size == 0) {
        add(r, check::initrd, CheckStatus::failed,
            p + ": empty; kexec_file_load would fail with EINVAL (leave the initrd out instead)");
        return;
    }
    if (size > kKexecFileSizeMax) {
        add(r, check::initrd, CheckStatus::failed,
            p + ": " + human_size(size) + ", more than the 4 GiB kexec_file_load reads (EFBIG)");
        return;
    }
    char byte = 0;
    if (::pread(fd.get(), &byte, 1, static_cast<off_t>(size - 1)) < 0) {
        Error e = errno_error(errno, p, "cannot read the initrd");
        add(r, check::initrd, CheckStatus::failed, e.describe(), e);
        return;
    }
    r.initrd_size = size;
    add(r, check::initrd, CheckStatus::ok,
        p + ": " + human_size(size) + " (" + std::to_string(size) + " bytes)");
}

void adjust_model(PreflightReport& r, const Sysroot& root) {
    r.model_notes.push_back("purgatory " + human_size(r.model.purgatory_size) +
                            ": the size measured for Linux 7.2 x86_64 (the running kernel's purgatory is not "
                            "visible from userspace)");
    if (auto entries = list_dir(root.sys("firmware/efi/runtime-map"))) {
        r.model.efi_runtime_map_size = entries->size() * kEfiDescSizeGuess;
        r.model_notes.push_back("EFI runtime map: " + std::to_string(entries->size()) +
                                " entries x 48 bytes (descriptor size assumed)");
    }
    if (!r.policy.config_path) {
        r.model_notes.push_back("no /boot/config-<release>: assuming no IMA_KEXEC measurement segment");
        return;
    }
    auto config = read_file(root.resolve(*r.policy.config_path));
    if (!config) return;
    if (kernel_config_value(*config, "CONFIG_IMA_KEXEC") != "y") return;
    r.model.ima_kexec = true;
    std::uint64_t extra = 2048;  // half a page when CONFIG_IMA_KEXEC_EXTRA_MEMORY_KB is 0
    if (auto kb = kernel_config_value(*config, "CONFIG_IMA_KEXEC_EXTRA_MEMORY_KB"))
        if (auto v = parse_u64(*kb, "CONFIG_IMA_KEXEC_EXTRA_MEMORY_KB"); v && *v > 0) extra = *v * 1024;
    KernelPath list = root.sys("kernel/security/ima/binary_runtime_measurements");
    if (auto text = read_file(list)) {
        r.model.ima_buffer_size = text->size() + 2 * kImaKexecHdr + extra;
        r.model_notes.push_back("IMA measurement segment estimated at " +
                                human_size(r.model.ima_buffer_size) + " from " + list.kernel);
    } else {
        r.model_notes.push_back("IMA_KEXEC is set but " + list.kernel +
                                " is unreadable: the IMA segment is left out of the placement");
    }
}

void check_scratch_fit(PreflightReport& r) {
    if (r.kho_active != true) {
        add(r, check::scratch_fit, CheckStatus::skipped,
            "KHO is not active: segments are not limited to scratch areas");
        return;
    }
    if (!r.kernel) {
        add(r, check::scratch_fit, CheckStatus::skipped, "needs a loadable kernel image");
        return;
    }
    if (r.initrd && !r.initrd_size) {
        add(r, check::scratch_fit, CheckStatus::skipped, "needs a readable initrd");
        return;
    }
    if (r.scratch.empty() && r.kho_without_debugfs) {
        add(r, check::scratch_fit, CheckStatus::warning,
            "the scratch areas are not visible without KHO's debugfs: the kernel checks the placement at "
            "the load and refuses a segment outside them (EADDRNOTAVAIL) with nothing loaded");
        return;
    }
    if (r.scratch.empty()) {
        add(r, check::scratch_fit, CheckStatus::failed,
            "the kernel lists no KHO scratch areas; kexec_file_load would fail with EADDRNOTAVAIL");
        return;
    }
    auto sizes = image_sizes(*r.kernel, r.initrd_size, r.cmdline.text.size() + 1, r.scratch.size());
    r.placement = place_segments(r.scratch, kho_kexec_segments(sizes, r.model));
    add(r, check::scratch_fit, r.placement->fits ? CheckStatus::ok : CheckStatus::failed,
        r.placement->message);
}

void check_allowed(PreflightReport& r) {
    const KexecPolicy& p = r.policy;
    std::vector<std::string> problems;
    std::vector<std::string> unknown;
    if (p.cap_sys_boot.ok() && !*p.cap_sys_boot.value)
        problems.emplace_back("this process lacks CAP_SYS_BOOT (run as root)");
    else if (!p.cap_sys_boot.ok())
        unknown.push_back(p.cap_sys_boot.path);
    if (p.load_disabled.ok() && *p.load_disabled.value)
        problems.push_back(p.load_disabled.path +
                           " is 1: kexec is disabled until the next cold boot (the switch is one-way)");
    else if (p.load_disabled.state == ProbeState::error)
        unknown.push_back(p.load_disabled.error.describe());
    if (p.limit_reboot.ok() && *p.limit_reboot.value == 0)
        problems.push_back(p.limit_reboot.path +
                           " is 0: no kexec_file_load or unload is allowed any more until a cold boot");
    if (!problems.empty()) {
        std::string msg = "kexec_file_load would fail with EPERM: ";
        for (std::size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
        add(r, check::kexec_allowed, CheckStatus::failed, msg);
        return;
    }
    std::vector<std::string> facts;
    if (p.cap_sys_boot.ok()) facts.emplace_back("CAP_SYS_BOOT held");
    if (p.load_disabled.ok()) facts.emplace_back("kexec_load_disabled 0");
    if (p.limit_reboot.ok()) {
        const auto v = *p.limit_reboot.value;
        facts.push_back(
            v < 0 ? "no load limit"
                  : std::to_string(v) +
                        " loads/unloads left (kexec_load_limit_reboot; each load and unload uses one)");
    }
    std::string msg;
    for (std::size_t i = 0; i < facts.size(); ++i) msg += (i ? ", " : "") + facts[i];
    if (msg.empty()) msg = "nothing known";
    if (!unknown.empty()) {
        std::string u;
        for (const auto& s : unknown) u += (u.empty() ? "" : ", ") + s;
        add(r, check::kexec_allowed, CheckStatus::warning, msg + "; could not read " + u);
        return;
    }
    add(r, check::kexec_allowed, CheckStatus::ok, msg);
}

void check_signature(PreflightReport& r, const Cmdline& running) {
    const KexecPolicy& p = r.policy;
    std::string facts;
    bool locked = false;
    if (p.lockdown.ok()) {
        locked = *p.lockdown.value != "none";
        facts = "lockdown " + *p.lockdown.value;
    } else if (auto word = running.value("lockdown");
               word && (*word == "integrity" || *word == "confidentiality")) {
        // securityfs is not mounted here, but the command line asked for it.
        locked = true;
        facts = "lockdown " + *word + " (from the command line; " + p.lockdown.path + " not readable)";
    } else {
        facts = "lockdown unknown (" + p.lockdown.path +
                " not readable: securityfs not mounted or no lockdown LSM)";
    }
    const bool secure_boot = p.secure_boot.ok() && *p.secure_boot.value;
    if (p.secure_boot.ok()) facts += secure_boot ? ", EFI secure boot on" : ", EFI secure boot off";
    if (p.kexec_sig_force)
        facts += *p.kexec_sig_force ? ", KEXEC_SIG_FORCE=y" : ", KEXEC_SIG_FORCE not set";
    else
        facts += ", KEXEC_SIG_FORCE not visible (no /boot/config-<release>)";
    const bool enforced = locked || p.kexec_sig_force.value_or(false);
    if (!r.kernel) {
        add(r, check::signature, CheckStatus::skipped, facts + "; needs a readable kernel image");
        return;
    }
    const std::string image = r.kernel->pe_signed ? "the image carries a PE signature"
                              : r.kernel->pe_image
                                  ? "the image is a PE file without a signature"
                                  : "the image is not a PE file (no EFI stub), so it cannot be signed";
    if (enforced && !r.kernel->pe_signed) {
        add(r, check::signature, CheckStatus::failed,
            facts + "; " + image +
                ": the kernel loads only verified images and would refuse it (EPERM or EKEYREJECTED); "
                "use a kernel signed with a key in the kernel's keyrings");
        return;
    }
    if (enforced) {
        add(r, check::signature, CheckStatus::warning,
            facts + "; " + image +
                ": whether its key is trusted is decided only when the kernel verifies it");
        return;
    }
    if (secure_boot && !r.kernel->pe_signed) {
        add(r, check::signature, CheckStatus::warning,
            facts + "; " + image + ": an IMA secure-boot policy, if loaded, enforces kexec signatures");
        return;
    }
    add(r, check::signature, CheckStatus::ok, facts + "; " + image + "; no signature is required");
}

template <class T>
nlohmann::json policy_probe(const Probe<T>& p) {
    nlohmann::json j;
    j["status"] = to_string(p.state);
    j["path"] = p.path;
    j["value"] = p.value ? nlohmann::json(*p.value) : nlohmann::json(nullptr);
    if (p.state == ProbeState::error) {
        j["errno"] = p.error.code;
        j["error"] = p.error.describe();
    }
    return j;
}

nlohmann::json optional_bool(const std::optional<bool>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

std::string pad(std::string s, std::size_t n) {
    if (s.size() < n) s.append(n - s.size(), ' ');
    return s;
}

}  // namespace

const char* to_string(CheckStatus s) {
    switch (s) {
        case CheckStatus::ok: return "ok";
        case CheckStatus::warning: return "warning";
        case CheckStatus::failed: return "failed";
        case CheckStatus::skipped: break;
    }
    return "skipped";
}

bool PreflightReport::ok() const {
    for (const auto& c : checks)
        if (c.status == CheckStatus::failed) return false;
    return true;
}

const PreflightCheck* PreflightReport::find(const std::string& name) const {
    for (const auto& c : checks)
        if (c.name == name) return &c;
    return nullptr;
}

PreflightReport run_preflight(const Sysroot& sysroot, const PreflightRequest& request) {
    Sysroot root = sysroot;  // ensure_debugfs() points it at the debugfs it finds
    PreflightReport r;
    r.sysroot = root.root().string();
    auto running_text = read_trimmed(root.proc("cmdline"));
    Cmdline running = Cmdline::parse(running_text ? *running_text : "");

    // debugfs and KHO
    DebugfsState debugfs = ensure_debugfs(root, request.may_mount_debugfs);
    KhoStatus kho = probe_kho(root, running, debugfs);
    if (debugfs.mounted) {
        add(r, check::debugfs, CheckStatus::ok,
            "mounted at " + debugfs.mountpoint + (debugfs.mounted_now ? " (mounted by this check)" : ""));
    } else {
        std::string why = debugfs.error ? debugfs.error->describe() : "not mounted";
        add(r, check::debugfs, kho.without_debugfs ? CheckStatus::warning : CheckStatus::failed,
            "debugfs is not reachable (" + why + "); KHO's state and scratch areas live there",
            debugfs.error);
    }
    r.kho_active = kho.active;
    r.kho_abi = kho.abi;
    r.kho_without_debugfs = kho.without_debugfs;
    if (kho.scratch.ok()) r.scratch = *kho.scratch.value;
    if (kho.active == true && kho.scratch.state == ProbeState::error) {
        add(r, check::kho, CheckStatus::failed,
            "KHO is active but its scratch areas cannot be read: " + kho.scratch.error.describe(),
            kho.scratch.error);
    } else if (kho.active == true) {
        std::string msg = "KHO is active (" + kho.active_reason + "), ABI " + to_string(kho.abi);
        if (kho.scratch.ok()) msg += ", " + std::to_string(r.scratch.size()) + " scratch areas";
        if (kho.abi == KhoAbi::finalize)
            msg += "; 6.16-6.18 kernels also need kho/out/finalize written before the load";
        add(r, check::kho, CheckStatus::ok, msg);
    } else if (kho.active == false) {
        add(r, check::kho, CheckStatus::failed,
            "KHO is not active in this kernel (" + kho.active_reason +
                "); boot it with kho=on (and a KEXEC_HANDOVER kernel) to hand memory over");
    } else {
        add(r, check::kho, CheckStatus::failed, "cannot tell whether KHO is active: " + kho.active_reason);
    }

    // the target kernel
    if (auto image = read_bzimage(request.kernel)) {
        if (auto host = check_bzimage_host(*image, read_bzimage_host(root)); !host) {
            add(r, check::kernel, CheckStatus::failed, host.error().describe(), host.error());
        } else {
            r.kernel = *image;
            const BzImageInfo& k = *r.kernel;
            std::string msg = k.path + ": bzImage, boot protocol " + k.protocol_string() + ", ";
            msg +=
                k.version ? "version \"" + *k.version + "\"" : "no version string (" + k.version_note + ")";
            msg += ", init_size " + human_size(k.init_size) + ", alignment " + human_size(k.kernel_alignment);
            add(r, check::kernel, CheckStatus::ok, msg);
        }
    } else {
        add(r, check::kernel, CheckStatus::failed, image.error().describe(), image.error());
    }

    // the initrd
    r.initrd = request.initrd;
    if (request.initrd)
        check_initrd(r, *request.initrd);
    else
        add(r, check::initrd, CheckStatus::skipped, "no initrd: the load uses KEXEC_FILE_NO_INITRAMFS");

    // the next command line
    NextCmdlineRequest cl = request.cmdline;
    cl.scratch_param = kho.scratch_param_name;
    r.cmdline = build_next_cmdline(running, cl);
    const std::uint64_t len = r.cmdline.text.size() + 1;
    if (r.kernel) {
        r.cmdline_max = max_cmdline_len(*r.kernel);
        if (auto ok = check_cmdline_len(*r.kernel, len); !ok)
            add(r, check::cmdline, CheckStatus::failed, ok.error().describe());
        else
            add(r, check::cmdline, CheckStatus::ok,
                std::to_string(len - 1) + " characters (at most " + std::to_string(r.cmdline_max - 1) +
                    "): " + r.cmdline.text);
    } else {
        add(r, check::cmdline, CheckStatus::skipped,
            "the limit comes from the kernel image: " + r.cmdline.text);
    }
    if (r.kho_active == true && request.cmdline.keep_kho) {
        const Cmdline next = Cmdline::parse(r.cmdline.text);
        auto v = next.value("kho");
        if (v && kstrtobool(*v) == false)
            r.checks.back().message += " (note: kho=" + *v + " turns KHO off in the next kernel)";
    }

    r.policy = read_kexec_policy(root);
    r.model = request.model.value_or(KexecLoaderModel{});
    if (!request.model) adjust_model(r, root);
    check_scratch_fit(r);
    check_allowed(r);
    check_signature(r, running);
    return r;
}

namespace {

nlohmann::json checks_json(const std::vector<PreflightCheck>& list) {
    using nlohmann::json;
    json checks = json::array();
    for (const auto& c : list) {
        json cj = {{"name", c.name}, {"status", to_string(c.status)}, {"message", c.message}};
        if (c.error) {
            cj["errno"] = c.error->code;
            cj["errno_name"] = c.error->code ? json(errno_name(c.error->code)) : json(nullptr);
            cj["path"] = c.error->path;
        }
        checks.push_back(std::move(cj));
    }
    return checks;
}

nlohmann::json kernel_json(const BzImageInfo& k) {
    using nlohmann::json;
    return {
        {"path", k.path},
        {"file_size", k.file_size},
        {"protocol", k.protocol_string()},
        {"version", k.version ? json(*k.version) : json(nullptr)},
        {"release", k.release ? json(*k.release) : json(nullptr)},
        {"setup_sects", k.setup_sects},
        {"loadflags", k.loadflags},
        {"xloadflags", k.xloadflags},
        {"xloadflags_names", xloadflag_names(k.xloadflags)},
        {"kernel_alignment", k.kernel_alignment},
        {"relocatable", k.relocatable},
        {"pref_address", k.pref_address},
        {"pref_address_hex", hex(k.pref_address)},
        {"init_size", k.init_size},
        {"init_size_human", human_size(k.init_size)},
        {"cmdline_size", k.cmdline_size},
        {"payload_offset", k.payload_offset},
        {"payload_length", k.payload_length},
        {"pe_image", k.pe_image},
        {"pe_signed", k.pe_signed},
    };
}

nlohmann::json placement_json(const Placement& p) {
    using nlohmann::json;
    json segs = json::array();
    for (const auto& s : p.segments) {
        segs.push_back({{"name", s.request.name},
                        {"origin", s.request.origin},
                        {"size", s.request.size},
                        {"memsz", s.memsz},
                        {"align", s.align},
                        {"min_addr", s.request.min_addr},
                        {"required", s.request.required},
                        {"attempted", s.attempted},
                        {"addr", s.addr ? json(*s.addr) : json(nullptr)},
                        {"addr_hex", s.addr ? json(hex(*s.addr)) : json(nullptr)},
                        {"area", s.area ? json(*s.area) : json(nullptr)}});
    }
    return {{"fits", p.fits},
            {"segments", std::move(segs)},
            {"failed", p.failed ? json(p.segments[*p.failed].request.name) : json(nullptr)},
            {"largest_area", p.largest_area ? to_json(*p.largest_area) : json(nullptr)},
            {"needed", p.needed},
            {"best_free", p.best_free},
            {"shortfall", p.shortfall},
            {"suggested_area_size", p.suggested_area_size},
            {"message", p.message}};
}

nlohmann::json policy_json(const KexecPolicy& pol) {
    using nlohmann::json;
    return {{"lockdown", policy_probe(pol.lockdown)},
            {"kexec_load_disabled", policy_probe(pol.load_disabled)},
            {"kexec_load_limit_reboot", policy_probe(pol.limit_reboot)},
            {"kexec_load_limit_panic", policy_probe(pol.limit_panic)},
            {"cap_sys_boot", policy_probe(pol.cap_sys_boot)},
            {"secure_boot", policy_probe(pol.secure_boot)},
            {"config", pol.config_path ? json(*pol.config_path) : json(nullptr)},
            {"kexec_sig", optional_bool(pol.kexec_sig)},
            {"kexec_sig_force", optional_bool(pol.kexec_sig_force)}};
}

}  // namespace

nlohmann::json to_json(const PreflightReport& r) {
    using nlohmann::json;
    json j;
    j["schema"] = preflight_schema_version;
    j["sysroot"] = r.sysroot;
    j["ok"] = r.ok();
    j["checks"] = checks_json(r.checks);
    j["kho"] = {{"active", optional_bool(r.kho_active)}, {"abi", to_string(r.kho_abi)}};
    json scratch = json::array();
    for (const auto& a : r.scratch) scratch.push_back(to_json(a));
    j["kho"]["scratch"] = std::move(scratch);

    j["kernel"] = r.kernel ? kernel_json(*r.kernel) : json(nullptr);
    j["initrd"] = r.initrd ? json{{"path", r.initrd->string()},
                                  {"size", r.initrd_size ? json(*r.initrd_size) : json(nullptr)}}
                           : json(nullptr);
    j["cmdline"] = {{"text", r.cmdline.text},
                    {"length", r.cmdline.text.size() + 1},
                    {"max_length", r.cmdline_max ? json(r.cmdline_max) : json(nullptr)},
                    {"dropped", r.cmdline.dropped},
                    {"added", r.cmdline.added}};
    j["model"] = {{"purgatory_size", r.model.purgatory_size},
                  {"efi_runtime_map_size", r.model.efi_runtime_map_size},
                  {"ima_kexec", r.model.ima_kexec},
                  {"ima_buffer_size", r.model.ima_buffer_size},
                  {"notes", r.model_notes}};
    j["placement"] = r.placement ? placement_json(*r.placement) : json(nullptr);
    j["policy"] = policy_json(r.policy);
    return j;
}

std::string format_preflight(const PreflightReport& r) {
    std::ostringstream out;
    for (const auto& c : r.checks) out << pad(c.name, 14) << pad(to_string(c.status), 9) << c.message << '\n';
    if (r.placement) {
        out << "\nplacement (" << (r.placement->fits ? "fits" : "does not fit") << "):\n";
        out << "  " << pad("segment", 13) << pad("memsz", 12) << pad("align", 10) << pad("area", 6)
            << "address\n";
        for (const auto& s : r.placement->segments) {
            std::string where = s.addr        ? hex(*s.addr) + "-" + hex(*s.addr + s.memsz - 1)
                                : s.attempted ? "NO ROOM"
                                              : "(not tried)";
            out << "  " << pad(s.request.name, 13) << pad(human_size(s.memsz), 12)
                << pad(human_size(s.align), 10) << pad(s.area ? std::to_string(*s.area) : "-", 6) << where
                << '\n';
        }
        out << "  scratch areas:";
        for (const auto& a : r.scratch)
            out << " [" << a.index << "] " << to_string(a.kind) << " " << human_size(a.size) << " at "
                << hex(a.phys);
        out << '\n';
    }
    out << (r.ok() ? "\nall checks passed\n" : "\nsome checks failed\n");
    return out.str();
}

}  // namespace khod
