#include "khod/kho/kho.hpp"

#include <sstream>

namespace khod {

const char* to_string(ScratchAreaKind kind) {
    switch (kind) {
        case ScratchAreaKind::lowmem: return "lowmem";
        case ScratchAreaKind::global: return "global";
        case ScratchAreaKind::node: break;
    }
    return "node";
}

ScratchAreaKind area_kind_at(unsigned index) {
    if (index == 0) return ScratchAreaKind::lowmem;
    if (index == 1) return ScratchAreaKind::global;
    return ScratchAreaKind::node;
}

const char* to_string(KhoAbi abi) {
    switch (abi) {
        case KhoAbi::finalize: return "finalize";
        case KhoAbi::stateless: return "stateless";
        case KhoAbi::stateless_bootmem: return "stateless-bootmem";
        case KhoAbi::unknown: break;
    }
    return "unknown";
}

const char* describe(KhoAbi abi) {
    switch (abi) {
        case KhoAbi::finalize: return "6.16-6.18: debugfs kho/out/finalize (write 1 to finalize, 0 to abort)";
        case KhoAbi::stateless:
            return "7.x: stateless, no finalize file; kho/out/scratch_phys and scratch_len";
        case KhoAbi::stateless_bootmem: return "7.4+: stateless; kho/out/bootmem_phys and bootmem_len";
        case KhoAbi::unknown: break;
    }
    return "unknown: no kho directory in debugfs";
}

KhoAbi detect_kho_abi(const Sysroot& root) {
    if (exists(root.debugfs("kho/out/finalize"))) return KhoAbi::finalize;
    if (exists(root.debugfs("kho/out/bootmem_phys"))) return KhoAbi::stateless_bootmem;
    if (exists(root.debugfs("kho/out/scratch_phys"))) return KhoAbi::stateless;
    return KhoAbi::unknown;
}

namespace {

// One "0x%llx" per line.
Result<std::vector<std::uint64_t>> read_hex_lines(const KernelPath& path) {
    auto text = read_file(path);
    if (!text) return text.error();
    std::vector<std::uint64_t> values;
    std::istringstream in(*text);
    std::string line;
    unsigned lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        auto v = parse_u64(line, path.host.string() + ":" + std::to_string(lineno));
        if (!v) return v.error();
        values.push_back(*v);
    }
    return values;
}

}  // namespace

Result<std::vector<ScratchArea>> read_scratch_areas(const Sysroot& root, KhoAbi abi) {
    const bool bootmem = abi == KhoAbi::stateless_bootmem;
    KernelPath phys_path = root.debugfs(bootmem ? "kho/out/bootmem_phys" : "kho/out/scratch_phys");
    KernelPath len_path = root.debugfs(bootmem ? "kho/out/bootmem_len" : "kho/out/scratch_len");
    auto phys = read_hex_lines(phys_path);
    if (!phys) return phys.error();
    auto len = read_hex_lines(len_path);
    if (!len) return len.error();
    if (phys->size() != len->size())
        return plain_error(len_path.host.string(), "has " + std::to_string(len->size()) + " areas but " +
                                                       phys_path.kernel + " has " +
                                                       std::to_string(phys->size()));

    // Per-node areas follow the N_MEMORY nodes of boot time. Name them only
    // when today's list has exactly as many nodes (hot-added nodes get no area).
    std::vector<unsigned> nodes;
    if (auto text = read_file(root.sys("devices/system/node/has_memory")))
        if (auto list = parse_list(*text, "has_memory")) nodes = *list;
    const std::size_t node_areas = phys->size() > 2 ? phys->size() - 2 : 0;

    std::vector<ScratchArea> areas;
    for (std::size_t i = 0; i < phys->size(); ++i) {
        ScratchArea a;
        a.index = static_cast<unsigned>(i);
        a.phys = (*phys)[i];
        a.size = (*len)[i];
        a.kind = area_kind_at(a.index);
        if (a.kind == ScratchAreaKind::node && nodes.size() == node_areas) a.node = nodes[i - 2];
        areas.push_back(a);
    }
    return areas;
}

bool kho_without_debugfs(const Sysroot& root, const DebugfsState& debugfs) {
    return !(debugfs.mounted && exists(root.debugfs("kho"))) && exists(root.dev("liveupdate"));
}

KhoStatus probe_kho(const Sysroot& root, const Cmdline& cmdline, const DebugfsState& debugfs) {
    KhoStatus s;
    s.debugfs = debugfs;
    s.cmdline_value = cmdline.value("kho");
    if (s.cmdline_value) s.cmdline_enabled = kstrtobool(*s.cmdline_value);

    s.debugfs_dir = debugfs.mounted && exists(root.debugfs("kho"));
    s.incoming = debugfs.mounted && exists(root.debugfs("kho/in"));
    s.abi = debugfs.mounted ? detect_kho_abi(root) : KhoAbi::unknown;
    s.scratch_param_name = s.abi == KhoAbi::stateless_bootmem ? "kho_bootmem" : "kho_scratch";
    s.scratch_param = cmdline.value(s.scratch_param_name);

    // The kernel creates kho/ in debugfs only when KHO initialised, so its
    // presence is the truth; the command line is only a hint when debugfs is unreachable.
    if (s.debugfs_dir) {
        s.active = true;
        s.active_reason = "kho/ present in debugfs";
    } else if (debugfs.mounted) {
        s.active = false;
        s.active_reason =
            s.cmdline_enabled.value_or(false)
                ? "kho=" + *s.cmdline_value +
                      " given, but the kernel created no kho/ in debugfs "
                      "(not built with KEXEC_HANDOVER_DEBUGFS, or KHO failed to initialise: see dmesg)"
                : "no kho/ in debugfs";
    } else if (s.cmdline_enabled) {
        s.active_reason = "debugfs unreachable; kho=" + *s.cmdline_value + " on the command line";
    } else {
        s.active_reason = "debugfs unreachable and no kho= on the command line";
    }

    // The device says KHO is on where debugfs cannot. LUO came with the stateless ABI.
    if (kho_without_debugfs(root, debugfs)) {
        s.active = true;
        s.without_debugfs = true;
        s.abi = KhoAbi::stateless;
        s.active_reason = std::string("/dev/liveupdate exists (LUO runs only on KHO); ") +
                          (debugfs.mounted ? "no kho/ in debugfs (a kernel without KEXEC_HANDOVER_DEBUGFS)"
                                           : "debugfs not reachable") +
                          ": scratch areas and kho/out not visible";
    }
    if (s.abi == KhoAbi::finalize) {
        KernelPath path = root.debugfs("kho/out/finalize");
        s.finalized = make_probe<bool>(path, read_flag(path));
    }
    if (s.abi != KhoAbi::unknown && !s.without_debugfs) {
        KernelPath path = root.debugfs(s.abi == KhoAbi::stateless_bootmem ? "kho/out/bootmem_phys"
                                                                          : "kho/out/scratch_phys");
        s.scratch = make_probe<std::vector<ScratchArea>>(path, read_scratch_areas(root, s.abi));
    } else {
        s.scratch.path = root.debugfs("kho/out/scratch_phys").kernel;
    }
    return s;
}

}  // namespace khod
