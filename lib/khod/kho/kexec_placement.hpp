// Where kexec_file_load puts each segment of an x86_64 bzImage when KHO is on,
// modelled on the 7.2 kernel source:
//
// - kexec_file_load adds the segments one at a time, in this order:
//   ima_add_kexec_buffer() (IMA_KEXEC kernels only; failure only logs),
//   kho_fill_kimage() (the copy of the scratch array), then bzImage64_load():
//   purgatory, boot params + command line + setup_data, kernel, initrd.
// - kexec_add_buffer() rounds memsz up to a page and the alignment to at least a page.
// - With KHO on, kexec_locate_mem_hole() searches only the KHO scratch areas
//   (kho_locate_mem_hole), in array order [0] lowmem, [1] global, [2..] nodes,
//   and takes the first area where the segment fits. Each segment goes in one
//   area, but different segments may go in different areas. There is no
//   fallback to other RAM: no fit is EADDRNOTAVAIL.
// - Inside an area every segment is placed top-down: the highest address
//   aligned to its alignment, at or above its minimum address, ending inside
//   the area and overlapping no segment placed before it (the kernel steps
//   down a page at a time past collisions).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "khod/kexec/bzimage.hpp"
#include "khod/kho/kho.hpp"

namespace khod {

inline constexpr std::uint64_t kKexecPageSize = 4096;
// Scratch areas are sized and aligned to this (SCRATCH_ALIGNMENT_BYTES: PAGE_SIZE x MAX_ORDER_NR_PAGES).
inline constexpr std::uint64_t kScratchGranularity = 4ull << 20;

struct SegmentRequest {
    std::string name;         // "kho-scratch", "purgatory", "boot-params", "kernel", "initrd", "ima-buffer"
    std::string origin;       // where the size comes from, for people
    std::uint64_t size = 0;   // memsz as the loader asks for it (before page rounding)
    std::uint64_t align = 1;  // as the loader asks for it (at least a page is used)
    std::uint64_t min_addr = 0;  // buf_min
    bool required = true;        // false: the kernel logs and goes on without it (IMA)
};

struct PlacedSegment {
    SegmentRequest request;
    std::uint64_t memsz = 0;  // page-rounded, as placed
    std::uint64_t align = 0;  // max(request.align, page)
    bool attempted = false;   // false after an earlier required segment failed
    std::optional<std::uint64_t> addr;
    std::optional<unsigned> area;  // ScratchArea::index
};

struct Placement {
    bool fits = false;
    std::vector<PlacedSegment> segments;
    std::optional<std::size_t> failed;  // index into segments of the required segment that did not fit
    // For a failure: the largest scratch area; the contiguous room the failed
    // segment needs (its memsz, starting at an address aligned for it: scratch
    // areas start 4 MiB aligned, so an empty area of memsz bytes takes it);
    // the longest free run any area still has for it, and the difference; and
    // the smallest area size a cold boot could ask for (sizes are rounded up
    // to 4 MiB) that takes the segment alone.
    std::optional<ScratchArea> largest_area;
    std::uint64_t needed = 0;
    std::uint64_t best_free = 0;
    std::uint64_t shortfall = 0;
    std::uint64_t suggested_area_size = 0;
    std::string message;  // one sentence: where everything goes, or what does not fit and by how much
};

// Places the segments in order in the areas, as kexec_file_load with KHO on does.
Placement place_segments(const std::vector<ScratchArea>& areas, const std::vector<SegmentRequest>& segments);

// What the running kernel adds besides the image; the defaults are the shared
// 7.2.13 x86_64 kernel's (measured with KEXEC_FILE_DEBUG in the VM tier).
struct KexecLoaderModel {
    // The built-in purgatory's memsz (sections plus bss) and alignment. It is
    // the running kernel's, not the target's, and userspace cannot read it.
    std::uint64_t purgatory_size = 0x5000;
    std::uint64_t purgatory_align = kKexecPageSize;
    // efi_get_runtime_map_size(): runtime map entries x descriptor size (0 without EFI).
    std::uint64_t efi_runtime_map_size = 0;
    bool ima_kexec = false;             // CONFIG_IMA_KEXEC: a setup_data slot in boot params
    std::uint64_t ima_buffer_size = 0;  // the IMA measurement segment, 0 for none
};

struct KexecImageSizes {
    std::uint32_t init_size = 0;
    std::uint32_t kernel_alignment = 0;
    std::uint64_t pref_address = 0;
    std::optional<std::uint64_t> initrd_size;  // nullopt: KEXEC_FILE_NO_INITRAMFS
    std::uint64_t cmdline_len = 0;             // including the NUL
    std::size_t scratch_areas = 0;             // entries in the scratch array copy
};

KexecImageSizes image_sizes(const BzImageInfo& image, std::optional<std::uint64_t> initrd_size,
                            std::uint64_t cmdline_len, std::size_t scratch_areas);

// The segment list a KHO kexec_file_load of a bzImage asks for, in the
// kernel's order, with the kernel's sizes, alignments and minimum addresses.
std::vector<SegmentRequest> kho_kexec_segments(const KexecImageSizes& image, const KexecLoaderModel& model);

// The boot params segment's bufsz (struct boot_params, command line, room for
// elfcorehdr=, EFI map and setup_data slots), before page rounding.
std::uint64_t boot_params_size(std::uint64_t cmdline_len, const KexecLoaderModel& model);

}  // namespace khod
