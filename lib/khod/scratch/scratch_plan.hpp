// The KHO scratch layout planner: how big the kernel makes its scratch areas,
// whether the next kexec and the next kernel's early allocations fit in them,
// and what kho_scratch= to boot with instead.
//
// The sizing is the kernel's own arithmetic, per version:
//
//   7.0-7.3 (checked against the 7.2.13 source, kernel/liveupdate/kexec_handover.c):
//     scale form:  lowmem = R(<4G)*s/100, global = R*s/100 - lowmem, node n = R(n)*s/100,
//                  each then rounded up to 4 MiB (PAGE_SIZE * MAX_ORDER_NR_PAGES);
//     fixed form:  the three sizes, each rounded up to 4 MiB;
//     one area per N_MEMORY node; kho_scratch=N% (at most 11 characters) or
//     L,G,P (three memparse sizes, nothing after them, total non-zero).
//   7.4+: as 7.0-7.3; the parameter is kho_bootmem= and the debugfs files
//     bootmem_phys/bootmem_len (from the issue; no 7.4 source was at hand).
//   6.18-6.19 (v6.18 kernel/kexec_handover.c, and a 6.19-era tree where the
//     file had moved to kernel/liveupdate/):
//     rounding to CMA_MIN_ALIGNMENT_BYTES (2 MiB pageblocks on x86_64), the
//     lowmem size rounded *before* it is subtracted from the global one (a
//     negative result wraps and rounds back to 0), fixed lowmem and global
//     sizes not rounded at all, one area per *online* node (a memoryless
//     online node fails the allocation and disables KHO).
//   6.16-6.17: as 6.18, but every fixed size must be non-zero and text after
//     the third size is ignored (both changed in the 6.18 merge window).
//
// R(limit, nid) is memblock_reserved_kern_size(): RSRV_KERN bytes of
// memblock.reserved. A region counts for node n only when its nid is n:
// reservations made before NUMA init get the nid of their address (kernel
// image, initrd, setup_data), and node-bound allocations get theirs (memmap,
// percpu, NODE_DATA); allocations without a node after NUMA init (swiotlb,
// crashkernel=, cma=, the dentry/inode hashes, mem_section) carry
// NUMA_NO_NODE and count only for the lowmem and global areas. This was
// measured by replaying `memblock=debug` logs in the VM tier.
//
// All functions here are pure: inputs come from read_scratch_inputs().
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "khod/base/cmdline.hpp"
#include "khod/base/result.hpp"
#include "khod/kho/kexec_placement.hpp"
#include "khod/kho/kho.hpp"
#include "khod/scratch/memory_topology.hpp"

namespace khod {

// Bumped only when a field changes meaning or disappears.
inline constexpr int scratch_plan_schema_version = 1;

inline constexpr std::uint64_t kMiB = 1ull << 20;
inline constexpr std::uint64_t k4GiB = 1ull << 32;

struct ScratchRules {
    std::string id;        // "6.16-6.17", "6.18-6.19", "7.0-7.3", "7.4+"
    std::string verified;  // what these rules were checked against
    std::string param;     // "kho_scratch" or "kho_bootmem"
    std::uint64_t align = 4 * kMiB;
    bool round_lowmem_before_subtract = false;  // 6.x
    bool round_fixed_lowmem_global = true;      // 7.x; 6.x rounds only the per-node size
    bool online_nodes = false;                  // 6.x: online nodes; 7.x: N_MEMORY nodes
    bool zero_size_allowed = true;              // 6.18+: zeros allowed if the total is not zero
    bool trailing_text_ignored = false;         // 6.16-6.17
};

// The rules of the kernel with this release ("7.2.13"). `why` says how they
// were chosen. An unknown or unparsable release gets the 7.0-7.3 rules.
ScratchRules scratch_rules_for(const std::optional<std::string>& release, std::string* why);

// What kho_scratch= leaves behind after the kernel's early_param handler has
// run for every occurrence on the command line, in order.
struct ScratchParam {
    unsigned scale = 200;  // 0: fixed sizes
    std::uint64_t lowmem = 0;
    std::uint64_t global = 0;
    std::uint64_t pernode = 0;
    std::vector<std::string> accepted;  // values the kernel took
    std::vector<std::string> rejected;  // "value: why the kernel refuses it"
    bool fixed() const { return scale == 0; }
    std::string describe() const;  // "default scale 200%", "scale 150%", "fixed 16 MiB,64 MiB,32 MiB"
};

// Applies one occurrence. On error the state is unchanged, as in the kernel.
Result<void> apply_scratch_value(ScratchParam& param, const std::optional<std::string>& value,
                                 const ScratchRules& rules);
ScratchParam parse_scratch_param(const Cmdline& cmdline, const ScratchRules& rules);

// The pieces of R the model knows. to_string() is the name people see.
enum class ReservedPartKind {
    kernel_image,
    kernel_brk,
    initrd,
    setup_data,
    real_mode_trampoline,
    memmap,
    vmemmap_tables,  // vmemmap page tables, section roots and usemaps
    mem_section_roots,
    node_data,
    percpu_first_chunk,
    swiotlb_buffer,
    swiotlb_slots,
    crash_kernel_below_4g,  // measured in /proc/iomem
    crash_kernel_above_4g,
    crash_kernel_requested,  // crashkernel= of another command line
    crash_kernel_high,
    crash_kernel_low_of_high,
    crash_kernel_cma,
    cma_areas,
    hash_tables,
    printk_buffer,
    direct_map_tables,
    kfence,
    other_small,
};
const char* to_string(ReservedPartKind kind);  // "kernel image", "swiotlb bounce buffer", ...
// Every form of the crash kernel reservation, CMA included.
bool is_crash_kernel(ReservedPartKind kind);

// One piece of R as userspace sees it.
struct ReservedPart {
    ReservedPartKind kind = ReservedPartKind::other_small;
    std::string source;  // where the number comes from
    std::uint64_t bytes = 0;
    std::uint64_t uncertainty = 0;  // the kernel's number is within bytes +- uncertainty
    std::optional<unsigned> node;   // counted for this node; nullopt: NUMA_NO_NODE
    std::uint64_t below_4g = 0;     // part of bytes below 4 GiB
    bool loaded = false;            // placed by the boot loader or kexec (image, initrd), not allocated
    bool low_only = false;          // the kernel allocates it below 4 GiB (swiotlb, real mode, low crash)
    bool contiguous = false;        // one block: on a KHO boot it must fit inside one area
};

struct ReservedEstimate {
    std::vector<ReservedPart> parts;
    std::vector<std::string> unknown;  // inputs that were missing: R is then at least the sum
    std::uint64_t total() const;
    std::uint64_t low() const;
    std::uint64_t uncertainty() const;
    std::uint64_t low_uncertainty() const;
    std::uint64_t node_total(unsigned node) const;
    std::uint64_t node_uncertainty(unsigned node) const;
};

// R of the kernel whose inputs these are, with its command line (crashkernel=,
// log_buf_len=, swiotlb= ... are read from it; for the running kernel's own
// line the measured values win).
ReservedEstimate estimate_reserved(const ScratchInputs& in, const Cmdline& cmdline);

struct SizingR {
    std::uint64_t low = 0;    // R(0xffffffff, any node)
    std::uint64_t total = 0;  // R(any address, any node)
    std::map<unsigned, std::uint64_t> node;
};

// The kho_scratch=L,G,P field that sizes areas of this kind: "lowmem", "global", "pernode".
const char* param_field(ScratchAreaKind kind);

struct AreaSize {
    unsigned index = 0;
    ScratchAreaKind kind = ScratchAreaKind::lowmem;
    std::optional<unsigned> node;
    std::uint64_t size = 0;
    std::string formula;  // the arithmetic, for people
};

// scratch_size_update() and scratch_size_node(), exactly, in u64 arithmetic
// (so a huge scale wraps as the kernel's does). nodes: the nodes that get an
// area, in order.
std::vector<AreaSize> compute_area_sizes(const ScratchRules& rules, const ScratchParam& param,
                                         const SizingR& r, const std::vector<unsigned>& nodes);

// How this boot's areas compare with the model, best first (a plan's verdict
// is the worst of its areas'): "exact"; "within-alignment" (R's uncertainty
// straddles a rounding step); "incomplete" (debugfs is larger and some inputs
// were unreadable); "missing"/"unexpected" (the area counts differ);
// "mismatch". The last three are for a plan with nothing to compare:
// "not-applicable" (a KHO boot), "unknown" (no areas readable), "no-kho".
enum class ScratchVerdict {
    exact,
    within_alignment,
    incomplete,
    missing,
    unexpected,
    mismatch,
    not_applicable,
    unknown,
    no_kho,
};
const char* to_string(ScratchVerdict verdict);

// One area: what the model says, what debugfs says.
struct AreaCheck {
    unsigned index = 0;
    ScratchAreaKind kind = ScratchAreaKind::lowmem;
    std::optional<unsigned> node;
    std::optional<std::uint64_t> predicted;
    std::uint64_t predicted_min = 0;  // with R at the low end of its uncertainty
    std::uint64_t predicted_max = 0;
    std::optional<std::uint64_t> actual;
    std::optional<ScratchVerdict> verdict;  // none: nothing to compare with
    std::string reason;
    std::string formula;
};

// need <= have, and by how much.
struct FitCheck {
    std::string what;
    std::uint64_t need = 0;
    std::uint64_t have = 0;
    bool ok = false;
    bool fatal = true;  // false: the kernel falls back (e.g. to another node's area)
    std::string detail;
    std::int64_t margin() const { return static_cast<std::int64_t>(have) - static_cast<std::int64_t>(need); }
};

struct RecommendedArea {
    ScratchAreaKind kind = ScratchAreaKind::lowmem;
    std::uint64_t need = 0;
    std::uint64_t size = 0;  // need plus headroom, rounded to the alignment
    std::vector<std::string> why;
};

struct Recommendation {
    std::string param;  // "kho_scratch"
    std::string value;  // "104M,0,48M"
    std::string word;   // "kho_scratch=104M,0,48M"
    unsigned headroom_percent = 0;
    RecommendedArea lowmem, global, pernode;
    std::uint64_t total = 0;          // lowmem + global + pernode * nodes
    std::uint64_t default_total = 0;  // what the default 200% would reserve on the next cold boot
    std::vector<std::string> notes;
};

// Which areas the next kexec was checked against.
enum class ScratchFitAgainst { current, predicted };
const char* to_string(ScratchFitAgainst against);  // "current", "predicted"

struct ScratchPlanOptions {
    unsigned headroom_percent = 25;
    std::optional<std::string> next_cmdline;  // default: the running kernel's
};

struct ScratchPlan {
    std::string sysroot;
    std::optional<std::string> release;
    ScratchRules rules;
    std::string rules_reason;
    KhoAbi abi = KhoAbi::unknown;
    bool kho_active = false;
    bool incoming = false;
    std::string cmdline;
    ScratchParam param;  // from the running kernel's command line
    ReservedEstimate reserved;
    std::vector<unsigned> area_nodes;  // nodes that get an area, in array order

    // This boot: what the kernel should have made, next to what it made.
    bool prediction_applies = true;
    std::string prediction_note;
    std::vector<AreaCheck> areas;
    ScratchVerdict verdict = ScratchVerdict::exact;  // worst of the areas' verdicts, or one for the plan
    std::vector<std::string> allocation_risks;       // areas larger than the memory that could hold them

    // The next kexec, in the current areas (or the predicted ones when KHO is off).
    ScratchFitAgainst fit_against = ScratchFitAgainst::current;
    std::optional<Placement> images;
    std::string images_note;
    ReservedEstimate next_early;  // early allocations of the next kernel
    std::string next_cmdline;
    std::vector<FitCheck> fits;
    bool fits_ok = true;

    Recommendation recommendation;
    std::vector<std::string> warnings;
};

Result<ScratchPlan> plan_scratch(const ScratchInputs& in, const ScratchPlanOptions& options);

// What `khoctl scratch plan` and khod's Scratch.Plan ask for.
struct ScratchPlanRequest {
    std::optional<std::string> kernel;  // host paths of the next images
    std::optional<std::string> initrd;
    std::optional<std::string> next_cmdline;
    unsigned headroom_percent = 25;
    bool may_mount_debugfs = true;
};

// Finds (or mounts) debugfs, reads the inputs through root and plans.
Result<ScratchPlan> plan_scratch_for(Sysroot& root, const ScratchPlanRequest& request);

nlohmann::json to_json(const ScratchPlan& plan);
std::string format_scratch_plan(const ScratchPlan& plan);

// `khoctl scratch show`: the current areas, from the same probe as `khoctl status`.
nlohmann::json scratch_show_json(const KhoStatus& kho);
std::string format_scratch_show(const KhoStatus& kho);

// "104M" style size for a command line: the largest unit that divides it.
std::string cmdline_size(std::uint64_t bytes);

}  // namespace khod
