#include "khod/kexec/kexec_file.hpp"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <cstring>
#include <sstream>
#include <utility>

#include "khod/base/caller_file.hpp"
#include "khod/base/fd.hpp"

namespace khod {

namespace {

constexpr unsigned kCapSysBoot = 22;  // include/uapi/linux/capability.h
constexpr const char* kSecureBootVar = "firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

// A proc_dointvec value: a decimal int, possibly negative.
Result<std::int64_t> read_int(const KernelPath& path) {
    auto text = read_file(path);
    if (!text) return text.error();
    std::string_view t = trim(*text);
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || ec != std::errc() || end != t.data() + t.size())
        return plain_error(path.host.string(), "expected a decimal number, found \"" + std::string(t) + "\"");
    return v;
}

Result<std::string> read_lockdown(const KernelPath& path) {
    auto text = read_file(path);
    if (!text) return text.error();
    auto level = parse_lockdown(*text);
    if (!level)
        return plain_error(path.host.string(), "no [selected] level in \"" + std::string(trim(*text)) + "\"");
    return *level;
}

Result<bool> read_cap_sys_boot(const KernelPath& path) {
    auto text = read_file(path);
    if (!text) return text.error();
    std::istringstream in(*text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("CapEff:", 0) != 0) continue;
        std::string_view hex = trim(std::string_view(line).substr(7));
        std::uint64_t caps = 0;
        auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), caps, 16);
        if (hex.empty() || ec != std::errc() || end != hex.data() + hex.size())
            return plain_error(path.host.string(), "cannot parse CapEff \"" + std::string(hex) + "\"");
        return (caps >> kCapSysBoot & 1) != 0;
    }
    return plain_error(path.host.string(), "has no CapEff line");
}

// efivarfs: 4 bytes of attributes, then the variable's data (one byte, 1 = on).
Result<bool> read_secure_boot(const KernelPath& path) {
    auto data = read_file(path);
    if (!data) return data.error();
    if (data->size() < 5) return plain_error(path.host.string(), "is shorter than 5 bytes");
    return (*data)[4] == 1;
}

std::optional<bool> config_flag(const std::string& config, const std::string& name) {
    auto v = kernel_config_value(config, name);
    if (!v) return std::nullopt;
    return *v == "y";
}

std::string policy_hint_eperm(bool crash, const KexecPolicy& policy) {
    std::vector<std::string> causes;
    if (policy.cap_sys_boot.ok() && !*policy.cap_sys_boot.value)
        causes.emplace_back("this process lacks CAP_SYS_BOOT (run as root)");
    if (policy.load_disabled.ok() && *policy.load_disabled.value)
        causes.emplace_back(policy.load_disabled.path +
                            " is 1: kexec loading is disabled until the next reboot (it cannot be reset)");
    const auto& limit = crash ? policy.limit_panic : policy.limit_reboot;
    if (limit.ok() && *limit.value == 0)
        causes.emplace_back(limit.path + " is 0: the allowed number of loads and unloads is used up");
    if (policy.lockdown.ok() && *policy.lockdown.value != "none")
        causes.emplace_back("the kernel is locked down (" + *policy.lockdown.value +
                            "): it loads only images whose signature it can verify" +
                            (policy.kexec_sig == false ? ", and this kernel has no KEXEC_SIG, so none" : ""));
    if (causes.empty())
        return "the kernel refused the load (EPERM): needs CAP_SYS_BOOT, kexec_load_disabled 0, a "
               "non-zero kexec_load_limit, and under lockdown a signed image; none of these shows a "
               "cause, so an LSM policy may have refused it (see dmesg)";
    std::string out = "the kernel refused the load (EPERM): ";
    for (std::size_t i = 0; i < causes.size(); ++i) out += (i ? "; " : "") + causes[i];
    return out;
}

}  // namespace

std::optional<std::string> parse_lockdown(const std::string& text) {
    auto open = text.find('[');
    auto close = text.find(']', open == std::string::npos ? 0 : open);
    if (open == std::string::npos || close == std::string::npos || close <= open + 1) return std::nullopt;
    return text.substr(open + 1, close - open - 1);
}

std::optional<std::string> kernel_config_value(const std::string& config, const std::string& name) {
    std::istringstream in(config);
    std::string line;
    const std::string set = name + "=";
    const std::string unset = "# " + name + " is not set";
    while (std::getline(in, line)) {
        if (line.rfind(set, 0) == 0) return line.substr(set.size());
        if (line == unset) return "n";
    }
    return std::nullopt;
}

KexecPolicy read_kexec_policy(const Sysroot& root) {
    KexecPolicy p;
    KernelPath lockdown = root.sys("kernel/security/lockdown");
    p.lockdown = make_probe<std::string>(lockdown, read_lockdown(lockdown));
    KernelPath disabled = root.proc("sys/kernel/kexec_load_disabled");
    p.load_disabled = make_probe<bool>(disabled, read_flag(disabled));
    KernelPath reboot = root.proc("sys/kernel/kexec_load_limit_reboot");
    p.limit_reboot = make_probe<std::int64_t>(reboot, read_int(reboot));
    KernelPath panic = root.proc("sys/kernel/kexec_load_limit_panic");
    p.limit_panic = make_probe<std::int64_t>(panic, read_int(panic));
    KernelPath status = root.proc("self/status");
    p.cap_sys_boot = make_probe<bool>(status, read_cap_sys_boot(status));
    KernelPath sb = root.sys(kSecureBootVar);
    p.secure_boot = make_probe<bool>(sb, read_secure_boot(sb));

    if (auto release = read_trimmed(root.proc("sys/kernel/osrelease"))) {
        KernelPath config = root.resolve("/boot/config-" + *release);
        if (auto text = read_file(config)) {
            p.config_path = config.kernel;
            p.kexec_sig = config_flag(*text, "CONFIG_KEXEC_SIG");
            p.kexec_sig_force = config_flag(*text, "CONFIG_KEXEC_SIG_FORCE");
        }
    }
    return p;
}

std::string explain_kexec_file_errno(int err, KexecOp op, bool crash, const KexecPolicy& policy,
                                     std::optional<bool> kho_active) {
    const std::string image = crash ? "crash kernel" : "kexec image";
    switch (err) {
        case EPERM: return policy_hint_eperm(crash, policy);
        case EBUSY:
            return "another kexec load or unload holds the kexec lock, or a kexec is under way; retry "
                   "when it is done";
        case ENOSYS: return "this kernel has no kexec_file_load (built without KEXEC_FILE)";
        case EINVAL:
            if (op == KexecOp::unload) return "the kernel rejected the unload flags";
            return "the kernel rejected the request (EINVAL): the command line is longer than the new "
                   "kernel's cmdline_size allows (30 bytes are kept for elfcorehdr=) or lacks its NUL; "
                   "the kernel or initrd is empty or not a regular file; or the segments would use more "
                   "than half of RAM. dmesg names which (kexec_file:, kexec-bzImage64:)";
        default: break;
    }
    if (op == KexecOp::unload) return "unloading the " + image + " failed";
    switch (err) {
        case EADDRNOTAVAIL:
            if (crash)
                return "the crash kernel's segments do not fit in the crashkernel= reservation; "
                       "reserve more memory with crashkernel=";
            if (kho_active.value_or(false))
                return "a segment does not fit in any KHO scratch area: with KHO on, the kernel puts each "
                       "segment (kernel init_size, initrd, boot params, purgatory) wholly inside one scratch "
                       "area and uses no other memory; `khoctl check` names the segment and the shortfall. "
                       "Scratch areas are sized at a cold boot (kho_scratch=)";
            return "the kernel found no free memory range for a segment";
        case ENOEXEC:
            return "the kernel file is not a bzImage this kernel can load (no HdrS/0xAA55, boot "
                   "protocol < 2.12, not 64-bit or not loadable above 4 GiB, truncated, or no "
                   "XLF_5LEVEL under 5-level paging); `khoctl check` says which";
        case EKEYREJECTED:
            return "the image's signature was rejected, or this kernel cannot verify signatures while "
                   "signature enforcement (lockdown, KEXEC_SIG_FORCE, secure boot IMA policy) requires it";
        case ENOKEY:
            return "the image is signed by a key that is in none of the kernel's keyrings (add the key "
                   "to the secondary or platform keyring, or use an image signed by a trusted key)";
        case EBADMSG:
        case EMSGSIZE: return "the image's signature is malformed";
        case ENODATA:
        case ELIBBAD:
            return "the image carries no usable PE signature and the kernel enforces signed kexec images";
        case ENOMEM:
            return "the kernel ran out of memory while reading the files or allocating the " + image +
                   "'s pages; free memory or use a smaller initrd";
        case EFBIG: return "the kernel or initrd is larger than 4 GiB, the most kexec_file_load reads";
        case ETXTBSY: return "the kernel or initrd file is open for writing by another process";
        case EBADF: return "the kernel or initrd file descriptor is not open for reading";
        case EACCES:
            return "a security module (IMA appraisal, LoadPin, SELinux) denied reading the kernel or "
                   "initrd; see the audit log";
        case EFAULT: return "the command line buffer could not be read";
        default: break;
    }
    return "kexec_file_load failed";
}

unsigned long kexec_file_flags(const KexecFileLoad& request) {
    unsigned long flags = 0;
    if (request.crash) flags |= kKexecFileOnCrash;
    if (!request.initrd) flags |= kKexecFileNoInitramfs;
    if (request.debug) flags |= kKexecFileDebug;
    if (request.no_cma) flags |= kKexecFileNoCma;
    return flags;
}

Result<void> kexec_file_load(const Sysroot& root, const KexecFileLoad& request,
                             std::optional<bool> kho_active) {
    if (!root.is_live())
        return plain_error(request.kernel.string(),
                           "kexec_file_load needs the live system, not the sysroot " + root.root().string());
    UniqueFd opened_kernel;
    int kernel = request.kernel_fd;
    if (kernel < 0) {
        auto file = open_regular_file(request.kernel, "the kernel");
        if (!file) return file.error();
        opened_kernel = std::move(file->fd);
        kernel = opened_kernel.get();
    }
    UniqueFd opened_initrd;
    int initrd = request.initrd ? request.initrd_fd : -1;
    if (request.initrd && initrd < 0) {
        auto file = open_regular_file(*request.initrd, "the initrd");
        if (!file) return file.error();
        opened_initrd = std::move(file->fd);
        initrd = opened_initrd.get();
    }
    // cmdline_len counts the NUL; std::string's c_str() provides it.
    const unsigned long cmdline_len = request.cmdline.size() + 1;
    long rc = ::syscall(SYS_kexec_file_load, kernel, initrd, cmdline_len, request.cmdline.c_str(),
                        kexec_file_flags(request));
    if (rc == 0) return {};
    const int err = errno;
    return errno_error(err, request.kernel.string(),
                       "kexec_file_load: " + explain_kexec_file_errno(err, KexecOp::load, request.crash,
                                                                      read_kexec_policy(root), kho_active));
}

Result<void> kexec_file_unload(const Sysroot& root, bool crash) {
    if (!root.is_live())
        return plain_error(root.root().string(), "kexec_file_load needs the live system, not a sysroot");
    unsigned long flags = kKexecFileUnload | (crash ? kKexecFileOnCrash : 0);
    long rc = ::syscall(SYS_kexec_file_load, -1, -1, 0UL, nullptr, flags);
    if (rc == 0) return {};
    const int err = errno;
    return errno_error(
        err, crash ? "crash kernel" : "kexec image",
        "kexec_file_load(KEXEC_FILE_UNLOAD): " +
            explain_kexec_file_errno(err, KexecOp::unload, crash, read_kexec_policy(root), std::nullopt));
}

bool is_boot_specific(const CmdlineParam& p) {
    static const char* const keys[] = {"BOOT_IMAGE", "initrd", "elfcorehdr", "dmcryptkeys"};
    for (const char* k : keys)
        if (same_param_key(p.key, k)) return true;
    return false;
}

NextCmdline build_next_cmdline(const Cmdline& running, const NextCmdlineRequest& request) {
    NextCmdline out;
    std::vector<CmdlineParam> words;
    if (request.reuse) {
        for (const auto& p : running.params()) {
            if (is_boot_specific(p)) {
                out.dropped.push_back(render_param(p));
                continue;
            }
            words.push_back(p);
        }
    }
    if (request.append) {
        const Cmdline appended = Cmdline::parse(*request.append);
        for (const auto& p : appended.params()) words.push_back(p);
    }

    auto find = [&words](std::string_view key) -> const CmdlineParam* {
        const CmdlineParam* found = nullptr;
        for (const auto& p : words)
            if (same_param_key(p.key, key)) found = &p;
        return found;
    };
    if (request.keep_kho) {
        // An explicit kho= (for example kho=off in --append) is the caller telling otherwise.
        if (!find("kho")) {
            words.push_back({"kho", "on"});
            out.added.emplace_back("kho=on");
        }
        const CmdlineParam* mine = find(request.scratch_param);
        const CmdlineParam* theirs = running.find(request.scratch_param);
        if (!mine && theirs) {
            words.push_back(*theirs);
            out.added.push_back(render_param(*theirs));
        }
    }
    for (const auto& p : words) {
        if (!out.text.empty()) out.text += ' ';
        out.text += render_param(p);
    }
    return out;
}

}  // namespace khod
