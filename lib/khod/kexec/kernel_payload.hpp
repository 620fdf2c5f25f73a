// The compressed vmlinux inside a bzImage (setup header payload_offset and
// payload_length, boot protocol 2.08+), decompressed as a stream: the output
// goes to a callback in chunks and is never held whole, and both the output
// and the input are bounded so a hostile image cannot make khod spend
// unbounded memory or time on it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>

#include "khod/base/result.hpp"
#include "khod/kexec/bzimage.hpp"

namespace khod {

// What the kernel's `make` can compress vmlinux with (CONFIG_KERNEL_*).
enum class PayloadFormat { gzip, xz, zstd, lz4, bzip2, lzma, lzo, unknown };
const char* to_string(PayloadFormat format);  // "gzip", ..., "unknown"

// By magic: gzip 1f 8b, xz fd "7zXZ", zstd 28 b5 2f fd, lz4 legacy frame
// 02 21 4c 18 (lz4 -l, as the kernel's Makefile.lib runs it), bzip2 "BZh",
// lzma 5d 00 00, lzop 89 "LZO".
PayloadFormat detect_payload_format(std::span<const unsigned char> head);

struct PayloadLimits {
    std::uint64_t max_output = 512ull << 20;  // a vmlinux is well under this
    std::size_t chunk = 1u << 20;             // input read and output handed over per step
    std::uint64_t max_window = 128ull << 20;  // zstd window / xz dictionary memory (zstd -22: 128 MiB)
};

struct PayloadStats {
    PayloadFormat format = PayloadFormat::unknown;
    std::uint64_t offset = 0;        // of the payload in the file
    std::uint64_t compressed = 0;    // payload_length
    std::uint64_t consumed = 0;      // compressed bytes read before the stream ended or the sink stopped
    std::uint64_t decompressed = 0;  // bytes handed to the sink
    bool complete = false;           // the stream reached its end (false: the sink stopped it early)
};

// Gets each decompressed chunk in order; returns false to stop early.
using PayloadSink = std::function<bool(std::span<const unsigned char>)>;

// Where the payload is; fails when the protocol is older than 2.08 or the
// header places it outside the file.
Result<PayloadStats> locate_payload(const BzImageInfo& image);

// Decompresses image's payload from fd into sink. Fails, naming image.path,
// on an unsupported format ("bzip2 payload: not supported"), a corrupt or
// truncated stream, or output beyond limits.max_output.
Result<PayloadStats> decompress_payload(int fd, const BzImageInfo& image, const PayloadSink& sink,
                                        const PayloadLimits& limits = {});

// The same for an in-memory compressed stream (tests, and anything not in a
// file); `what` names it in errors.
Result<PayloadStats> decompress_buffer(std::span<const unsigned char> data, const std::string& what,
                                       const PayloadSink& sink, const PayloadLimits& limits = {});

}  // namespace khod
