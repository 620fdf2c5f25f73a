// libFuzzer target for the KHO FDT decoder: every input is decoded as a root
// FDT or as one sub-tree, known or not, out or in, as its last byte picks,
// and one input in 256 is rendered as JSON and as text. One decoder per input,
// not all eleven: each execution then costs one decode, and the fuzzer learns
// which last bytes reach which decoder. A crash, a sanitizer report, an
// exception (e.g. JSON refusing a non-UTF-8 string) or a broken invariant
// below is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <string_view>

#include "khod/kho/kho_fdt.hpp"

namespace {

// Nothing decoded may claim more bytes than the input had.
void check_node(const khod::FdtNode& node, std::size_t size) {
    for (const khod::FdtProperty& p : node.properties) {
        if (p.value.size() > size) std::abort();
        if (p.complete && p.value.size() != p.length) std::abort();
        if (p.nested && p.nested->root) check_node(*p.nested->root, size);
    }
    for (const khod::FdtNode& c : node.children) check_node(c, size);
}

void check_blob(const khod::FdtBlob& blob, std::size_t size) {
    if (blob.bytes != size) std::abort();
    if (blob.valid && (blob.error || blob.truncated || !blob.root)) std::abort();
    if (!blob.valid && !blob.error) std::abort();
    if (blob.root) check_node(*blob.root, size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);
    khod::KhoFdtReport report;
    report.direction = size % 2 ? khod::KhoFdtDirection::in : khod::KhoFdtDirection::out;
    report.path = "/sys/kernel/debug/kho/fuzz";
    report.debugfs.mounted = true;
    // The last byte picks the decoder: even, the root; odd, one of the
    // sub-trees, out or in.
    const unsigned pick = size ? data[size - 1] : 0;
    if (pick % 2 == 0) {
        report.root = khod::decode_kho_root(bytes, "/fuzz/fdt");
        check_blob(report.root.fdt, size);
    } else {
        static constexpr const char* names[] = {"kexec-metadata", "LUO", "kho_test", "memblock", "other"};
        const unsigned sub = pick / 2;
        const bool incoming = (sub / std::size(names)) % 2 == 1;
        khod::KhoSubtree s =
            khod::decode_kho_subtree(names[sub % std::size(names)], bytes, "/fuzz/sub", incoming);
        if (s.fdt) check_blob(*s.fdt, size);
        report.subtrees.push_back(std::move(s));
    }
    // Rendering an input costs about fifty times what decoding it does; one
    // input in 256 is rendered, so the decoders get most of the executions
    // and the renderers still see every shape they can produce. The pick
    // hashes the bytes: FDTs are 8-byte aligned, so a pick by size rendered
    // nearly all.
    if (std::hash<std::string_view>{}(bytes) % 256 == 0) {
        (void)khod::to_json(report).dump();
        (void)khod::format_kho_fdt(report);
        for (const auto& s : report.subtrees) (void)khod::to_json(s).dump();
    }
    return 0;
}
