// Test-only guest tool for the LUO scenarios (tests/vm/scenarios/luo_*.py):
// workload memory with a pattern that can be checked word by word after a
// live update, and a probe of /dev/liveupdate.
//
//   luo-pattern memfd SIZE SEED -- CMD ARGS...
//       memfd_create (no MFD_CLOEXEC), SIZE bytes of the pattern, prints
//       "sha256 HEX size N", then execs CMD with the memfd as fd 3, e.g.
//       `busctl call org.kexec.khod1 /org/kexec/khod1 org.kexec.khod1.LiveUpdate
//        Preserve sth vm1 7 3`.
//   luo-pattern file PATH SIZE SEED
//       the same bytes into a regular file; prints "sha256 HEX size N".
//   luo-pattern check PATH SIZE SEED
//       reads PATH (any file, a memfd through /proc/PID/fd/N too) and compares
//       every 8-byte word; prints "OK sha256 HEX size N", or
//       "BAD offset 0xOFF expected 0x.. got 0x.." / "BAD size N expected M"
//       and exits 1.
//   luo-pattern open-device [--hold SECS]
//       opens /dev/liveupdate read-write, prints "ok" (then holds it SECS
//       seconds) or the errno's name (EBUSY, ENOENT, ...) and exits 1.
//   luo-pattern notify TEXT [--fd N]... [-- CMD ARGS...]
//       sends TEXT ("\n" escapes become newlines) with the fds to $NOTIFY_SOCKET,
//       like sd_pid_notify_with_fds, then execs CMD (same pid) if given: a
//       dummy service for testing fdstore-standin with busybox sh.
//   luo-pattern listen-fds
//       prints LISTEN_PID (and whether it is this pid), LISTEN_FDS,
//       LISTEN_FDNAMES, and for each fd from 3 its name and target
//       (/proc/self/fd/N), one "fd N NAME TARGET" line each.
//
// SIZE takes K, M and G suffixes (powers of 1024) and must be a multiple of 8.
// Word i (little endian, at offset 8*i) is splitmix64's output for the state
// SEED + (i + 1) * 0x9e3779b97f4a7c15, so any word can be checked alone.
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr std::size_t chunk_bytes = 1 << 20;

std::uint64_t word_at(std::uint64_t seed, std::uint64_t index) {
    std::uint64_t z = seed + (index + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void fill(std::vector<std::uint64_t>& buf, std::uint64_t seed, std::uint64_t first_word) {
    for (std::size_t i = 0; i < buf.size(); ++i) {
        const std::uint64_t w = word_at(seed, first_word + i);
        unsigned char* p = reinterpret_cast<unsigned char*>(&buf[i]);
        for (int b = 0; b < 8; ++b) p[b] = static_cast<unsigned char>(w >> (8 * b));
    }
}

std::uint64_t le_word(const unsigned char* p) {
    std::uint64_t w = 0;
    for (int b = 7; b >= 0; --b) w = (w << 8) | p[b];
    return w;
}

const char* errname(int e) {
    const char* n = strerrorname_np(e);
    return n ? n : "EUNKNOWN";
}

bool parse_u64(const char* text, std::uint64_t& out, bool suffixes) {
    errno = 0;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text, &end, 0);
    if (errno != 0 || end == text) return false;
    std::uint64_t mult = 1;
    if (suffixes && *end) {
        switch (*end) {
            case 'K':
            case 'k': mult = 1ULL << 10; break;
            case 'M':
            case 'm': mult = 1ULL << 20; break;
            case 'G':
            case 'g': mult = 1ULL << 30; break;
            default: return false;
        }
        ++end;
    }
    if (*end) return false;
    out = v * mult;
    return true;
}

bool parse_size_seed(const char* size_text, const char* seed_text, std::uint64_t& size, std::uint64_t& seed) {
    if (!parse_u64(size_text, size, true) || size % 8 != 0) {
        std::fprintf(stderr, "luo-pattern: bad SIZE %s (a multiple of 8, K/M/G suffixes)\n", size_text);
        return false;
    }
    if (!parse_u64(seed_text, seed, false)) {
        std::fprintf(stderr, "luo-pattern: bad SEED %s\n", seed_text);
        return false;
    }
    return true;
}

struct Sha256 {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(), EVP_MD_CTX_free};
    Sha256() { EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr); }
    void update(const void* p, std::size_t n) { EVP_DigestUpdate(ctx.get(), p, n); }
    std::string hex() {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_DigestFinal_ex(ctx.get(), md, &len);
        std::string out;
        char two[3];
        for (unsigned int i = 0; i < len; ++i) {
            std::snprintf(two, sizeof two, "%02x", md[i]);
            out += two;
        }
        return out;
    }
};

bool write_all(int fd, const void* data, std::size_t n, off_t off) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t w = pwrite(fd, p, n, off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= static_cast<std::size_t>(w);
        off += w;
    }
    return true;
}

// Writes the pattern into fd (from offset 0); returns the SHA-256, empty on error.
std::string write_pattern(int fd, std::uint64_t size, std::uint64_t seed) {
    std::vector<std::uint64_t> buf(chunk_bytes / 8);
    Sha256 sha;
    for (std::uint64_t off = 0; off < size; off += chunk_bytes) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_bytes, size - off));
        buf.resize(n / 8);
        fill(buf, seed, off / 8);
        if (!write_all(fd, buf.data(), n, static_cast<off_t>(off))) {
            std::fprintf(stderr, "luo-pattern: write at %llu: %s\n", static_cast<unsigned long long>(off),
                         std::strerror(errno));
            return {};
        }
        sha.update(buf.data(), n);
    }
    return sha.hex();
}

int cmd_memfd(int argc, char** argv) {
    // memfd SIZE SEED -- CMD...
    if (argc < 6 || std::strcmp(argv[4], "--") != 0) {
        std::fprintf(stderr, "usage: luo-pattern memfd SIZE SEED -- CMD ARGS...\n");
        return 2;
    }
    std::uint64_t size = 0, seed = 0;
    if (!parse_size_seed(argv[2], argv[3], size, seed)) return 2;
    int fd = memfd_create("luo-pattern", 0);
    if (fd < 0) {
        std::fprintf(stderr, "luo-pattern: memfd_create: %s\n", std::strerror(errno));
        return 1;
    }
    if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
        std::fprintf(stderr, "luo-pattern: ftruncate: %s\n", std::strerror(errno));
        return 1;
    }
    const std::string hex = write_pattern(fd, size, seed);
    if (hex.empty()) return 1;
    if (fd != 3) {
        if (dup2(fd, 3) < 0) {
            std::fprintf(stderr, "luo-pattern: dup2: %s\n", std::strerror(errno));
            return 1;
        }
        close(fd);
    }
    std::printf("sha256 %s size %llu\n", hex.c_str(), static_cast<unsigned long long>(size));
    std::fflush(stdout);
    execvp(argv[5], argv + 5);
    std::fprintf(stderr, "luo-pattern: exec %s: %s\n", argv[5], std::strerror(errno));
    return 127;
}

int cmd_file(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: luo-pattern file PATH SIZE SEED\n");
        return 2;
    }
    std::uint64_t size = 0, seed = 0;
    if (!parse_size_seed(argv[3], argv[4], size, seed)) return 2;
    const int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        std::fprintf(stderr, "luo-pattern: %s: %s\n", argv[2], std::strerror(errno));
        return 1;
    }
    const std::string hex = write_pattern(fd, size, seed);
    if (hex.empty() || close(fd) != 0) return 1;
    std::printf("sha256 %s size %llu\n", hex.c_str(), static_cast<unsigned long long>(size));
    return 0;
}

int cmd_check(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: luo-pattern check PATH SIZE SEED\n");
        return 2;
    }
    std::uint64_t size = 0, seed = 0;
    if (!parse_size_seed(argv[3], argv[4], size, seed)) return 2;
    const int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        std::printf("BAD open %s\n", errname(errno));
        return 1;
    }
    std::vector<unsigned char> buf(chunk_bytes);
    Sha256 sha;
    std::uint64_t off = 0;
    for (;;) {
        // Fill the whole buffer (or reach EOF), so only the last chunk is short.
        std::size_t n = 0;
        while (n < buf.size()) {
            const ssize_t r = pread(fd, buf.data() + n, buf.size() - n, static_cast<off_t>(off + n));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                std::printf("BAD read at 0x%llx %s\n", static_cast<unsigned long long>(off + n),
                            errname(errno));
                return 1;
            }
            if (r == 0) break;
            n += static_cast<std::size_t>(r);
        }
        if (n == 0) break;
        sha.update(buf.data(), n);
        // Whole words up to SIZE; a partial word or bytes beyond SIZE show up
        // as a size mismatch below.
        for (std::size_t i = 0; i + 8 <= n && off + i + 8 <= size; i += 8) {
            const std::uint64_t want = word_at(seed, (off + i) / 8);
            const std::uint64_t got = le_word(&buf[i]);
            if (want != got) {
                std::printf("BAD offset 0x%llx expected 0x%016llx got 0x%016llx\n",
                            static_cast<unsigned long long>(off + i), static_cast<unsigned long long>(want),
                            static_cast<unsigned long long>(got));
                return 1;
            }
        }
        off += n;
        if (n < buf.size()) break;
    }
    close(fd);
    if (off != size) {
        std::printf("BAD size %llu expected %llu\n", static_cast<unsigned long long>(off),
                    static_cast<unsigned long long>(size));
        return 1;
    }
    std::printf("OK sha256 %s size %llu\n", sha.hex().c_str(), static_cast<unsigned long long>(size));
    return 0;
}

int cmd_open_device(int argc, char** argv) {
    unsigned hold = 0;
    if (argc == 4 && std::strcmp(argv[2], "--hold") == 0) {
        hold = static_cast<unsigned>(std::strtoul(argv[3], nullptr, 10));
    } else if (argc != 2) {
        std::fprintf(stderr, "usage: luo-pattern open-device [--hold SECS]\n");
        return 2;
    }
    const int fd = open("/dev/liveupdate", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        std::printf("%s\n", errname(errno));
        return 1;
    }
    std::printf("ok\n");
    std::fflush(stdout);
    if (hold) sleep(hold);
    close(fd);
    return 0;
}

int cmd_notify(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: luo-pattern notify TEXT [--fd N]... [-- CMD ARGS...]\n");
        return 2;
    }
    std::string text;
    for (const char* p = argv[2]; *p; ++p) {
        if (p[0] == '\\' && p[1] == 'n') {
            text += '\n';
            ++p;
        } else {
            text += *p;
        }
    }
    std::vector<int> fds;
    int i = 3;
    for (; i < argc; ++i) {
        if (std::strcmp(argv[i], "--") == 0) {
            ++i;
            break;
        }
        if (std::strcmp(argv[i], "--fd") == 0 && i + 1 < argc) {
            fds.push_back(std::atoi(argv[++i]));
        } else {
            std::fprintf(stderr, "luo-pattern notify: unexpected %s\n", argv[i]);
            return 2;
        }
    }
    const char* path = std::getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa {};
    sa.sun_family = AF_UNIX;
    if (!path || !*path || std::strlen(path) >= sizeof sa.sun_path) {
        std::fprintf(stderr, "luo-pattern notify: no usable NOTIFY_SOCKET\n");
        return 1;
    }
    std::strcpy(sa.sun_path, path);
    if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';
    const int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct iovec iov {
        text.data(), text.size()
    };
    struct msghdr mh {};
    mh.msg_name = &sa;
    mh.msg_namelen = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + std::strlen(path));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * (fds.empty() ? 1 : fds.size())));
    if (!fds.empty()) {
        mh.msg_control = control.data();
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    if (sock < 0 || sendmsg(sock, &mh, 0) < 0) {
        std::fprintf(stderr, "luo-pattern notify: sendmsg: %s\n", std::strerror(errno));
        return 1;
    }
    close(sock);
    if (i < argc) {
        execvp(argv[i], argv + i);
        std::fprintf(stderr, "luo-pattern: exec %s: %s\n", argv[i], std::strerror(errno));
        return 127;
    }
    return 0;
}

int cmd_listen_fds() {
    const char* pid = std::getenv("LISTEN_PID");
    const char* n = std::getenv("LISTEN_FDS");
    const char* names = std::getenv("LISTEN_FDNAMES");
    const bool mine = pid && std::strtol(pid, nullptr, 10) == getpid();
    std::printf("LISTEN_PID %s %s\nLISTEN_FDS %s\nLISTEN_FDNAMES %s\n", pid ? pid : "-",
                mine ? "self" : "other", n ? n : "-", names ? names : "-");
    const int count = n ? std::atoi(n) : 0;
    std::string rest = names ? names : "";
    for (int k = 0; k < count; ++k) {
        const std::size_t colon = rest.find(':');
        const std::string name = rest.substr(0, colon);
        rest = colon == std::string::npos ? "" : rest.substr(colon + 1);
        char link[64], target[4096];
        std::snprintf(link, sizeof link, "/proc/self/fd/%d", 3 + k);
        const ssize_t len = readlink(link, target, sizeof target - 1);
        target[len > 0 ? len : 0] = '\0';
        std::printf("fd %d %s %s\n", 3 + k, name.c_str(), len > 0 ? target : errname(errno));
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string op = argc > 1 ? argv[1] : "";
    if (op == "memfd") return cmd_memfd(argc, argv);
    if (op == "file") return cmd_file(argc, argv);
    if (op == "check") return cmd_check(argc, argv);
    if (op == "open-device") return cmd_open_device(argc, argv);
    if (op == "notify") return cmd_notify(argc, argv);
    if (op == "listen-fds") return cmd_listen_fds();
    std::fprintf(stderr,
                 "usage: luo-pattern memfd SIZE SEED -- CMD ARGS...\n"
                 "       luo-pattern file PATH SIZE SEED\n"
                 "       luo-pattern check PATH SIZE SEED\n"
                 "       luo-pattern open-device [--hold SECS]\n"
                 "       luo-pattern notify TEXT [--fd N]... [-- CMD ARGS...]\n"
                 "       luo-pattern listen-fds\n");
    return 2;
}
