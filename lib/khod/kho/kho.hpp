// Kexec HandOver: is it on, which debugfs ABI does this kernel speak, and
// where are its scratch areas.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "khod/base/cmdline.hpp"
#include "khod/base/debugfs.hpp"
#include "khod/base/probe.hpp"
#include "khod/base/sysroot.hpp"

namespace khod {

enum class KhoAbi {
    unknown,            // no kho/ in debugfs (KHO off, not built, or debugfs unreachable)
    finalize,           // 6.16-6.18: kho/out/finalize, write 1 to finalize and 0 to abort
    stateless,          // 7.0-7.3: no finalize; kho/out/scratch_phys + scratch_len
    stateless_bootmem,  // 7.4+: as stateless, files renamed bootmem_phys + bootmem_len
};

const char* to_string(KhoAbi abi);  // "unknown", "finalize", "stateless", "stateless-bootmem"
const char* describe(KhoAbi abi);   // for people: which kernels and which files

// The kernel's scratch array: the lowmem area, the global one, then one per node.
enum class ScratchAreaKind { lowmem, global, node };
const char* to_string(ScratchAreaKind kind);  // "lowmem", "global", "node"
// The kind of the area at this index of the kernel's array.
ScratchAreaKind area_kind_at(unsigned index);

// One scratch area, in the kernel's array order: [0] below 4 GiB, [1] global,
// [2..] one per memory node that existed at boot.
struct ScratchArea {
    unsigned index = 0;
    ScratchAreaKind kind = ScratchAreaKind::lowmem;
    std::optional<unsigned> node;  // for kind node, when the node list allows naming it
    std::uint64_t phys = 0;
    std::uint64_t size = 0;
};

struct KhoStatus {
    std::optional<std::string> cmdline_value;  // the text after "kho=", if present
    std::optional<bool> cmdline_enabled;       // that text parsed as the kernel does
    std::optional<std::string> scratch_param;  // "kho_scratch=" (or "kho_bootmem=" on 7.4+)
    std::string scratch_param_name;            // which of the two the kernel reads
    DebugfsState debugfs;
    bool debugfs_dir = false;  // <debugfs>/kho exists
    bool incoming = false;     // <debugfs>/kho/in exists: this boot came through a KHO kexec
    KhoAbi abi = KhoAbi::unknown;
    std::optional<bool> active;  // nullopt when neither debugfs nor the command line tells
    std::string active_reason;
    // Active by /dev/liveupdate while kho/ is not visible (a kernel without
    // KEXEC_HANDOVER_DEBUGFS, debugfs=off, or debugfs not mounted where khod
    // may not mount it): the scratch areas and kho/out are unknown, the kernel
    // checks segment placement itself at the load.
    bool without_debugfs = false;
    Probe<bool> finalized;  // finalize ABI only
    Probe<std::vector<ScratchArea>> scratch;
};

// Detects the ABI from the files present under <debugfs>/kho/out.
KhoAbi detect_kho_abi(const Sysroot& root);

// Reads <debugfs>/kho/out/{scratch,bootmem}_{phys,len}; node ids for the
// per-node areas come from /sys/devices/system/node/has_memory.
Result<std::vector<ScratchArea>> read_scratch_areas(const Sysroot& root, KhoAbi abi);

KhoStatus probe_kho(const Sysroot& root, const Cmdline& cmdline, const DebugfsState& debugfs);

// KHO is on but its debugfs is not visible: no <debugfs>/kho, while
// /dev/liveupdate exists (LUO registers it only when enabled, and disables
// itself without KHO: kernel/liveupdate/luo_core.c).
bool kho_without_debugfs(const Sysroot& root, const DebugfsState& debugfs);

}  // namespace khod
