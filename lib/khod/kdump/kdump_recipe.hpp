// The crash kernel recipe (kernel, initrd, command line) khod loads with
// kexec_file_load(KEXEC_FILE_ON_CRASH), and where it comes from when khod's
// own config does not give one: Debian's /etc/default/kdump-tools or
// kdumpctl's /etc/sysconfig/kdump, read the way those tools read them.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "khod/base/cmdline.hpp"
#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"

namespace khod {

// Which syscall loads the crash kernel: kexec_file_load (the kernel builds
// the image), khod's own kexec_load image (lib/khod/crash/native_loader.hpp),
// or kexec_file_load with kexec_load where the kernel refuses the file load.
enum class CrashLoader { file, native, automatic };
const char* to_string(CrashLoader loader);  // "file", "native", "auto"
std::optional<CrashLoader> parse_crash_loader(std::string_view text);

struct CrashRecipe {
    std::string kernel;
    std::string initrd;   // empty: none (KEXEC_FILE_NO_INITRAMFS)
    std::string cmdline;  // as the crash kernel gets it, before the loader prepends elfcorehdr=
    std::string source;   // where it came from, for people: a file, "khoctl kdump load", ...
    CrashLoader loader = CrashLoader::file;

    bool operator==(const CrashRecipe& o) const {
        return kernel == o.kernel && initrd == o.initrd && cmdline == o.cmdline && loader == o.loader;
    }
};

// KEY=value lines as a POSIX shell reads simple assignments: optional
// `export`, '#' comments, values bare, '...' or "..." (with \" \\ \$ \`
// escapes inside double quotes). A value that needs the shell to compute it
// ($VAR, $(...), `...`) is refused with an Error naming the file and line,
// since guessing would load the wrong kernel.
Result<std::map<std::string, std::string>> parse_shell_assignments(std::string_view text,
                                                                   const std::string& path);

// The running command line minus what must not reach a crash kernel (boot
// loader words, crashkernel=, and every key in `remove`; keys compare as the
// kernel compares them), with `append` added.
std::string crash_cmdline_from(const Cmdline& running, const std::vector<std::string>& remove,
                               std::string_view append);

// /etc/default/kdump-tools, as kdump-config (kdump-tools 1.8) builds its
// `kexec -p` command: KDUMP_KERNEL (default /var/lib/kdump/vmlinuz),
// KDUMP_INITRD (default /var/lib/kdump/initrd.img), KDUMP_CMDLINE (default
// /proc/cmdline minus crashkernel= and the other words kdump-config strips on
// x86_64) plus KDUMP_CMDLINE_APPEND (default "reset_devices
// systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb").
// nullopt when the file does not exist; an Error when it cannot be read or
// parsed, or says USE_KDUMP=0.
Result<std::optional<CrashRecipe>> import_kdump_tools(const Sysroot& root);

// /etc/sysconfig/kdump, as kdumpctl builds its command: kernel
// KDUMP_BOOTDIR/KDUMP_IMG-KDUMP_KERNELVER KDUMP_IMG_EXT (defaults /boot,
// vmlinuz, the running release, ""), initrd
// KDUMP_BOOTDIR/initramfs-<release>kdump.img, command line KDUMP_COMMANDLINE
// (default /proc/cmdline) minus crashkernel= and KDUMP_COMMANDLINE_REMOVE,
// plus KDUMP_COMMANDLINE_APPEND. kdumpctl also adds disable_cpu_apicid= on
// x86; khod does not (nr_cpus=1 in the append list is what matters).
Result<std::optional<CrashRecipe>> import_kdumpctl(const Sysroot& root);

}  // namespace khod
