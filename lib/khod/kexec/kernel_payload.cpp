#include "khod/kexec/kernel_payload.hpp"

#include <lz4.h>
#include <lzma.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "khod/base/hex.hpp"

namespace khod {

namespace {

// lz4 -l: legacy frames of independent blocks of at most 8 MiB output each.
constexpr std::uint32_t kLz4LegacyMagic = 0x184c2102;
constexpr std::size_t kLz4LegacyBlock = 8u << 20;

std::string hex_bytes_of(const unsigned char* p, std::size_t n) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < n; ++i) {
        if (i) out += ' ';
        out += digits[p[i] >> 4];
        out += digits[p[i] & 15];
    }
    return out.empty() ? "nothing" : out;
}

std::uint32_t le32(const unsigned char* p) {
    return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
           (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

// The compressed bytes, read in bounded pieces from a file or a buffer.
struct Source {
    std::function<Result<std::size_t>(std::uint64_t, unsigned char*, std::size_t)> read;
    std::uint64_t length = 0;
    std::string what;
};

// Hands output to the sink, enforcing the output bound.
struct Ctx {
    const Source& src;
    const PayloadSink& sink;
    const PayloadLimits& limits;
    PayloadStats& stats;
    bool stopped = false;

    Error fail(const std::string& message) const {
        return plain_error(src.what, std::string(to_string(stats.format)) + " payload: " + message);
    }
    Result<void> emit(const unsigned char* data, std::size_t len) {
        if (len == 0 || stopped) return {};
        if (stats.decompressed + len > limits.max_output)
            return fail("decompresses to more than " + std::to_string(limits.max_output >> 20) +
                        " MiB, more than any kernel; refused");
        stats.decompressed += len;
        if (!sink(std::span<const unsigned char>(data, len))) stopped = true;
        return {};
    }
    // Reads the next input piece at stats.consumed; 0 bytes at the end.
    Result<std::size_t> next(unsigned char* buf, std::size_t cap) {
        const std::uint64_t left = src.length - stats.consumed;
        const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(left, cap));
        if (want == 0) return std::size_t{0};
        auto got = src.read(stats.consumed, buf, want);
        if (!got) return got.error();
        if (*got < want) return fail("the file ends inside the payload (truncated)");
        stats.consumed += *got;
        return *got;
    }
};

Result<void> run_gzip(Ctx& c) {
    z_stream z{};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return c.fail("zlib cannot start");
    std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, inflateEnd);
    std::vector<unsigned char> in(c.limits.chunk), out(c.limits.chunk);
    int ret = Z_OK;
    while (ret != Z_STREAM_END && !c.stopped) {
        if (z.avail_in == 0) {
            auto got = c.next(in.data(), in.size());
            if (!got) return got.error();
            if (*got == 0) return c.fail("the stream is truncated (no gzip end)");
            z.next_in = in.data();
            z.avail_in = static_cast<uInt>(*got);
        }
        z.next_out = out.data();
        z.avail_out = static_cast<uInt>(out.size());
        ret = inflate(&z, Z_NO_FLUSH);
        if (ret != Z_OK && ret != Z_STREAM_END && ret != Z_BUF_ERROR)
            return c.fail(std::string("corrupt stream: ") +
                          (z.msg ? z.msg : "zlib error " + std::to_string(ret)));
        if (auto e = c.emit(out.data(), out.size() - z.avail_out); !e) return e.error();
    }
    c.stats.complete = ret == Z_STREAM_END;
    return {};
}

Result<void> run_xz(Ctx& c) {
    lzma_stream z = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&z, c.limits.max_window, 0) != LZMA_OK) return c.fail("liblzma cannot start");
    std::unique_ptr<lzma_stream, void (*)(lzma_stream*)> guard(&z, lzma_end);
    std::vector<unsigned char> in(c.limits.chunk), out(c.limits.chunk);
    lzma_action action = LZMA_RUN;
    lzma_ret ret = LZMA_OK;
    while (ret != LZMA_STREAM_END && !c.stopped) {
        if (z.avail_in == 0 && action == LZMA_RUN) {
            auto got = c.next(in.data(), in.size());
            if (!got) return got.error();
            if (*got == 0) action = LZMA_FINISH;
            z.next_in = in.data();
            z.avail_in = *got;
        }
        z.next_out = out.data();
        z.avail_out = out.size();
        ret = lzma_code(&z, action);
        if (ret == LZMA_MEMLIMIT_ERROR)
            return c.fail("needs more than " + std::to_string(c.limits.max_window >> 20) +
                          " MiB to decompress; refused");
        if (ret == LZMA_BUF_ERROR) return c.fail("the stream is truncated (no xz end)");
        if (ret != LZMA_OK && ret != LZMA_STREAM_END)
            return c.fail("corrupt stream (liblzma error " + std::to_string(ret) + ")");
        if (auto e = c.emit(out.data(), out.size() - z.avail_out); !e) return e.error();
    }
    c.stats.complete = ret == LZMA_STREAM_END;
    return {};
}

int window_log(std::uint64_t bytes) {
    int log = 10;
    while (log < 31 && (std::uint64_t{1} << (log + 1)) <= bytes) ++log;
    return log;
}

Result<void> run_zstd(Ctx& c) {
    std::unique_ptr<ZSTD_DCtx, std::size_t (*)(ZSTD_DCtx*)> z(ZSTD_createDCtx(), ZSTD_freeDCtx);
    if (!z) return c.fail("libzstd cannot start");
    ZSTD_DCtx_setParameter(z.get(), ZSTD_d_windowLogMax, window_log(c.limits.max_window));
    std::vector<unsigned char> in(c.limits.chunk), out(c.limits.chunk);
    ZSTD_inBuffer ib{in.data(), 0, 0};
    std::size_t ret = 1;
    while (ret != 0 && !c.stopped) {
        if (ib.pos == ib.size) {
            auto got = c.next(in.data(), in.size());
            if (!got) return got.error();
            if (*got == 0) return c.fail("the stream is truncated (no zstd frame end)");
            ib = ZSTD_inBuffer{in.data(), *got, 0};
        }
        ZSTD_outBuffer ob{out.data(), out.size(), 0};
        ret = ZSTD_decompressStream(z.get(), &ob, &ib);
        if (ZSTD_isError(ret)) return c.fail(std::string("corrupt stream: ") + ZSTD_getErrorName(ret));
        if (auto e = c.emit(out.data(), ob.pos); !e) return e.error();
    }
    c.stats.complete = ret == 0;
    return {};
}

Result<void> run_lz4(Ctx& c) {
    std::vector<unsigned char> in(static_cast<std::size_t>(LZ4_compressBound(kLz4LegacyBlock)));
    std::vector<unsigned char> out(kLz4LegacyBlock);
    unsigned char word[4];
    while (!c.stopped) {
        const std::uint64_t left = c.src.length - c.stats.consumed;
        if (left < 4) break;  // the end (the kernel appends no partial word)
        auto got = c.next(word, 4);
        if (!got) return got.error();
        const std::uint32_t size = le32(word);
        if (size == kLz4LegacyMagic) continue;  // another legacy frame follows
        // The kernel's Makefile appends the vmlinux size as 4 bytes: the last
        // word of the payload is that, not a block.
        if (left == 4) break;
        if (size == 0 || size > in.size() || size > left - 4)
            return c.fail("corrupt or truncated stream: a block of " + std::to_string(size) + " bytes with " +
                          std::to_string(left - 4) + " left");
        got = c.next(in.data(), size);
        if (!got) return got.error();
        const int n =
            LZ4_decompress_safe(reinterpret_cast<const char*>(in.data()), reinterpret_cast<char*>(out.data()),
                                static_cast<int>(size), static_cast<int>(out.size()));
        if (n < 0)
            return c.fail("corrupt block at payload offset " + std::to_string(c.stats.consumed - size));
        for (std::size_t off = 0; off < static_cast<std::size_t>(n) && !c.stopped; off += c.limits.chunk) {
            const std::size_t len = std::min(c.limits.chunk, static_cast<std::size_t>(n) - off);
            if (auto e = c.emit(out.data() + off, len); !e) return e.error();
        }
    }
    c.stats.complete = !c.stopped;
    return {};
}

Result<PayloadStats> run(const Source& src, const PayloadSink& sink, const PayloadLimits& limits,
                         PayloadStats stats) {
    unsigned char head[6] = {};
    const std::size_t head_len = static_cast<std::size_t>(std::min<std::uint64_t>(src.length, sizeof head));
    auto got = src.read(0, head, head_len);
    if (!got) return got.error();
    stats.format = detect_payload_format(std::span<const unsigned char>(head, *got));
    PayloadLimits lim = limits;
    lim.chunk = std::max<std::size_t>(lim.chunk, 4096);
    Ctx c{src, sink, lim, stats};
    Result<void> r;
    switch (stats.format) {
        case PayloadFormat::gzip: r = run_gzip(c); break;
        case PayloadFormat::xz: r = run_xz(c); break;
        case PayloadFormat::zstd: r = run_zstd(c); break;
        case PayloadFormat::lz4:
            stats.consumed = 4;  // the frame magic
            r = run_lz4(c);
            break;
        case PayloadFormat::bzip2:
        case PayloadFormat::lzma:
        case PayloadFormat::lzo:
            return plain_error(src.what, std::string(to_string(stats.format)) +
                                             " payload: not supported (khod reads gzip, xz, zstd and lz4)");
        case PayloadFormat::unknown:
            return plain_error(src.what, "the payload starts with " + hex_bytes_of(head, *got) +
                                             ": no compression format khod knows (gzip, xz, zstd, lz4)");
    }
    if (!r) return r.error();
    return stats;
}

}  // namespace

const char* to_string(PayloadFormat format) {
    switch (format) {
        case PayloadFormat::gzip: return "gzip";
        case PayloadFormat::xz: return "xz";
        case PayloadFormat::zstd: return "zstd";
        case PayloadFormat::lz4: return "lz4";
        case PayloadFormat::bzip2: return "bzip2";
        case PayloadFormat::lzma: return "lzma";
        case PayloadFormat::lzo: return "lzo";
        case PayloadFormat::unknown: break;
    }
    return "unknown";
}

PayloadFormat detect_payload_format(std::span<const unsigned char> h) {
    auto starts = [&](std::initializer_list<unsigned char> magic) {
        return h.size() >= magic.size() && std::equal(magic.begin(), magic.end(), h.begin());
    };
    if (starts({0x1f, 0x8b})) return PayloadFormat::gzip;
    if (starts({0xfd, '7', 'z', 'X', 'Z', 0x00})) return PayloadFormat::xz;
    if (starts({0x28, 0xb5, 0x2f, 0xfd})) return PayloadFormat::zstd;
    if (starts({0x02, 0x21, 0x4c, 0x18})) return PayloadFormat::lz4;
    if (starts({'B', 'Z', 'h'})) return PayloadFormat::bzip2;
    if (starts({0x5d, 0x00, 0x00})) return PayloadFormat::lzma;
    if (starts({0x89, 'L', 'Z', 'O'})) return PayloadFormat::lzo;
    return PayloadFormat::unknown;
}

Result<PayloadStats> locate_payload(const BzImageInfo& image) {
    if (image.protocol < 0x0208)
        return plain_error(image.path, "boot protocol " + image.protocol_string() +
                                           " has no payload_offset (2.08 or later needed)");
    PayloadStats s;
    s.offset = image.kernel_offset + image.payload_offset;
    s.compressed = image.payload_length;
    if (s.compressed < 4 || s.offset + s.compressed > image.file_size)
        return plain_error(image.path, "the setup header places the payload (offset " + hex(s.offset) + ", " +
                                           std::to_string(s.compressed) + " bytes) outside the file's " +
                                           std::to_string(image.file_size) + " bytes");
    return s;
}

Result<PayloadStats> decompress_payload(int fd, const BzImageInfo& image, const PayloadSink& sink,
                                        const PayloadLimits& limits) {
    auto where = locate_payload(image);
    if (!where) return where.error();
    const std::uint64_t base = where->offset;
    const std::string path = image.path;
    Source src;
    src.what = image.path;
    src.length = where->compressed;
    src.read = [fd, base, path](std::uint64_t off, unsigned char* buf,
                                std::size_t len) -> Result<std::size_t> {
        std::size_t done = 0;
        while (done < len) {
            ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(base + off + done));
            if (n < 0) {
                if (errno == EINTR) continue;
                return errno_error(errno, path, "cannot read the payload");
            }
            if (n == 0) break;
            done += static_cast<std::size_t>(n);
        }
        return done;
    };
    return run(src, sink, limits, *where);
}

Result<PayloadStats> decompress_buffer(std::span<const unsigned char> data, const std::string& what,
                                       const PayloadSink& sink, const PayloadLimits& limits) {
    Source src;
    src.what = what;
    src.length = data.size();
    src.read = [data](std::uint64_t off, unsigned char* buf, std::size_t len) -> Result<std::size_t> {
        const std::size_t n = std::min<std::size_t>(len, data.size() - static_cast<std::size_t>(off));
        std::memcpy(buf, data.data() + off, n);
        return n;
    };
    PayloadStats stats;
    stats.compressed = data.size();
    return run(src, sink, limits, stats);
}

}  // namespace khod
