// Test-only: a real kexec_file_load / unload through lib/khod/kexec/kexec_file, for
// the VM tier (khoctl check never loads anything).
//
//   kexec-load-probe load --kernel K [--initrd I] [--cmdline TEXT] [--debug] [--crash]
//   kexec-load-probe unload [--crash]
//
// Prints "ok", or "error <ERRNAME> <errno>: <message>" and exits 1.
#include <cstring>
#include <iostream>
#include <string>

#include "khod/base/debugfs.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kexec/kexec_file.hpp"

namespace {

int usage() {
    std::cerr << "usage: kexec-load-probe load --kernel K [--initrd I] [--cmdline TEXT] [--debug] [--crash]\n"
                 "       kexec-load-probe unload [--crash]\n";
    return 2;
}

int report(const khod::Result<void>& r) {
    if (r) {
        std::cout << "ok\n";
        return 0;
    }
    std::cout << "error " << khod::errno_name(r.error().code) << ' ' << r.error().code << ": "
              << r.error().describe() << '\n';
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) return usage();
    const std::string op = argv[1];
    khod::KexecFileLoad req;
    bool have_kernel = false;
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        if (a == "--kernel") {
            const char* v = next();
            if (!v) return usage();
            req.kernel = v;
            have_kernel = true;
        } else if (a == "--initrd") {
            const char* v = next();
            if (!v) return usage();
            req.initrd = v;
        } else if (a == "--cmdline") {
            const char* v = next();
            if (!v) return usage();
            req.cmdline = v;
        } else if (a == "--debug") {
            req.debug = true;
        } else if (a == "--crash") {
            req.crash = true;
        } else {
            return usage();
        }
    }
    khod::Sysroot root("/");
    if (op == "unload") return report(khod::kexec_file_unload(root, req.crash));
    if (op != "load" || !have_kernel) return usage();
    khod::DebugfsState debugfs = khod::ensure_debugfs(root, true);
    std::optional<bool> kho;
    if (debugfs.mounted) kho = khod::exists(root.debugfs("kho"));
    return report(khod::kexec_file_load(root, req, kho));
}
