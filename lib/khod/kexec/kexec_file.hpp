// Loading and unloading a kexec image with kexec_file_load(2), what decides
// whether the kernel lets us, and the next kernel's command line.
//
// With KHO on, kexec_file_load of a non-crash image is what hands KHO over:
// the kernel adds a copy of the scratch array and a SETUP_KEXEC_KHO
// setup_data pointing at the KHO root FDT (kexec_load has no KHO support).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "khod/base/cmdline.hpp"
#include "khod/base/probe.hpp"
#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"

namespace khod {

// include/uapi/linux/kexec.h
inline constexpr unsigned long kKexecFileUnload = 0x1;
inline constexpr unsigned long kKexecFileOnCrash = 0x2;
inline constexpr unsigned long kKexecFileNoInitramfs = 0x4;
inline constexpr unsigned long kKexecFileDebug = 0x8;
inline constexpr unsigned long kKexecFileNoCma = 0x10;

// What decides whether kexec_file_load is allowed, as far as userspace can see it.
struct KexecPolicy {
    // The selected level in /sys/kernel/security/lockdown: "none", "integrity"
    // or "confidentiality". Unsupported when securityfs is not mounted or the
    // lockdown LSM is not built.
    Probe<std::string> lockdown;
    Probe<bool> load_disabled;         // /proc/sys/kernel/kexec_load_disabled (one-way switch)
    Probe<std::int64_t> limit_reboot;  // /proc/sys/kernel/kexec_load_limit_reboot, -1 unlimited
    Probe<std::int64_t> limit_panic;   // /proc/sys/kernel/kexec_load_limit_panic
    Probe<bool> cap_sys_boot;          // CAP_SYS_BOOT in this process's CapEff (/proc/self/status)
    Probe<bool> secure_boot;           // the EFI SecureBoot variable, through efivarfs
    // CONFIG_KEXEC_SIG / CONFIG_KEXEC_SIG_FORCE are not visible at run time;
    // they are taken from /boot/config-<release> when that file exists.
    std::optional<std::string> config_path;
    std::optional<bool> kexec_sig;
    std::optional<bool> kexec_sig_force;
};

KexecPolicy read_kexec_policy(const Sysroot& root);

// The selected level in a lockdown file's text ("none [integrity] confidentiality").
std::optional<std::string> parse_lockdown(const std::string& text);

// A value from a kernel .config text: "y", "64", "\"text\"" as written; "n" for
// "# CONFIG_X is not set"; nullopt when the option is not mentioned.
std::optional<std::string> kernel_config_value(const std::string& config, const std::string& name);

enum class KexecOp { load, unload };

// Why kexec_file_load failed with err, for a person: what the kernel checks
// that returns this errno and what to do about it, using what the policy and
// KHO state say. crash: the image is (or was meant as) a crash kernel.
std::string explain_kexec_file_errno(int err, KexecOp op, bool crash, const KexecPolicy& policy,
                                     std::optional<bool> kho_active);

struct KexecFileLoad {
    std::filesystem::path kernel;
    std::optional<std::filesystem::path> initrd;  // nullopt: KEXEC_FILE_NO_INITRAMFS
    std::string cmdline;                          // passed with its NUL
    bool crash = false;                           // KEXEC_FILE_ON_CRASH
    bool debug = false;   // KEXEC_FILE_DEBUG: the kernel logs every segment's placement
    bool no_cma = false;  // KEXEC_FILE_NO_CMA
    // Open already (held since they were checked): loaded instead of opening the paths.
    int kernel_fd = -1;
    int initrd_fd = -1;
};

// The flags word for a load request.
unsigned long kexec_file_flags(const KexecFileLoad& request);

// kexec_file_load(2) through syscall(SYS_kexec_file_load). Refuses a sysroot
// that is not the live system. On failure the Error carries the errno, the
// kernel path, and explain_kexec_file_errno()'s text; kho_active is used only
// for that text.
Result<void> kexec_file_load(const Sysroot& root, const KexecFileLoad& request,
                             std::optional<bool> kho_active = std::nullopt);
// KEXEC_FILE_UNLOAD (| KEXEC_FILE_ON_CRASH). Unloading when nothing is loaded succeeds.
Result<void> kexec_file_unload(const Sysroot& root, bool crash = false);

// The next kernel's command line.
struct NextCmdlineRequest {
    bool reuse = false;                         // start from the running kernel's /proc/cmdline
    std::optional<std::string> append;          // words added after it (alone: the whole line)
    bool keep_kho = true;                       // make sure kho=on and the scratch parameter are there
    std::string scratch_param = "kho_scratch";  // "kho_bootmem" on 7.4+ (KhoStatus::scratch_param_name)
};

struct NextCmdline {
    std::string text;
    std::vector<std::string> dropped;  // words taken out, as they were
    std::vector<std::string> added;    // words put in
};

// Words that describe the boot that produced them and must not reach the
// next kernel: the boot loader's BOOT_IMAGE= and initrd=, and the crash
// kernel's elfcorehdr= and dmcryptkeys= (kexec prepends fresh ones for crash images).
bool is_boot_specific(const CmdlineParam& param);

// running: the running kernel's command line (used for reuse and to copy the
// scratch parameter from).
NextCmdline build_next_cmdline(const Cmdline& running, const NextCmdlineRequest& request);

}  // namespace khod
