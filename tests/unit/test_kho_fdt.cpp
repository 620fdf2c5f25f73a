// KHO FDT decoding: on the trees captured from the 7.2 kernel (kho/out on a
// cold boot, kho/in after a KHO kexec; see tests/fixtures/README.md) and on
// blobs crafted here with libfdt to be broken in one precise way each.
#include <gtest/gtest.h>
#include <libfdt.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "khod/base/debugfs.hpp"
#include "khod/kho/kho_fdt.hpp"
#include "khod/kho/kho_records.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::fixture;
using khod::test::TempTree;

namespace {

// Builds an FDT with libfdt's sequential-write API.
class FdtBuilder {
public:
    FdtBuilder() : buf_(64 * 1024) {
        check(fdt_create(buf_.data(), static_cast<int>(buf_.size())));
        check(fdt_finish_reservemap(buf_.data()));
        begin("");
    }
    FdtBuilder& begin(const std::string& name) {
        check(fdt_begin_node(buf_.data(), name.c_str()));
        return *this;
    }
    FdtBuilder& end() {
        check(fdt_end_node(buf_.data()));
        return *this;
    }
    FdtBuilder& prop(const std::string& name, const std::string& bytes) {
        check(fdt_property(buf_.data(), name.c_str(), bytes.data(), static_cast<int>(bytes.size())));
        return *this;
    }
    FdtBuilder& str(const std::string& name, const std::string& s) { return prop(name, s + '\0'); }
    template <class T>
    FdtBuilder& native(const std::string& name, T v) {
        std::string b(sizeof v, '\0');
        std::memcpy(b.data(), &v, sizeof v);
        return prop(name, b);
    }
    std::string finish() {
        end();
        check(fdt_finish(buf_.data()));
        return std::string(buf_.data(), fdt_totalsize(buf_.data()));
    }

private:
    static void check(int rc) {
        if (rc < 0) throw std::runtime_error(std::string("libfdt: ") + fdt_strerror(rc));
    }
    std::vector<char> buf_;
};

std::string read_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

std::uint32_t be32(const std::string& b, std::size_t off) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(b[off])) << 24 |
           static_cast<std::uint32_t>(static_cast<unsigned char>(b[off + 1])) << 16 |
           static_cast<std::uint32_t>(static_cast<unsigned char>(b[off + 2])) << 8 |
           static_cast<std::uint32_t>(static_cast<unsigned char>(b[off + 3]));
}

void put_be32(std::string& b, std::size_t off, std::uint32_t v) {
    b[off] = static_cast<char>(v >> 24);
    b[off + 1] = static_cast<char>(v >> 16);
    b[off + 2] = static_cast<char>(v >> 8);
    b[off + 3] = static_cast<char>(v);
}

KhoFdtReport report_of(const std::filesystem::path& root, KhoFdtDirection dir) {
    Sysroot sysroot(root);
    DebugfsState debugfs = ensure_debugfs(sysroot, false);
    return read_kho_fdt(sysroot, dir, debugfs);
}

const std::string debugfs_mounts = "debugfs /sys/kernel/debug debugfs rw,relatime 0 0\n";

std::string metadata_record(std::uint32_t version, const std::string& release, std::uint32_t count) {
    std::string b(kexec_metadata_v1_size, '\0');
    std::memcpy(b.data(), &version, 4);
    std::memcpy(b.data() + 4, release.data(), std::min(release.size(), kexec_metadata_release_size));
    std::memcpy(b.data() + 4 + kexec_metadata_release_size, &count, 4);
    return b;
}

std::string luo_record(const std::string& compat, std::uint64_t num, std::uint64_t sessions,
                       std::uint64_t flbs) {
    std::string b(luo_record_size, '\0');
    std::memcpy(b.data(), compat.data(), std::min<std::size_t>(compat.size(), 8));
    std::memcpy(b.data() + 8, &num, 8);
    std::memcpy(b.data() + 16, &sessions, 8);
    std::memcpy(b.data() + 24, &flbs, 8);
    return b;
}

// A kho_test sub-tree as lib/test_kho.c builds it.
std::string kho_test_tree(std::uint32_t magic = kho_test_magic, std::size_t info_size = 16) {
    std::string info(info_size, '\0');
    std::uint64_t first = 0x19a6000;
    std::uint32_t pages = 1;
    std::uint16_t flags = 1, order = 0;
    if (info_size >= 16) {
        std::memcpy(info.data(), &first, 8);
        std::memcpy(info.data() + 8, &pages, 4);
        std::memcpy(info.data() + 12, &flags, 2);
        std::memcpy(info.data() + 14, &order, 2);
    }
    return FdtBuilder()
        .str("compatible", "kho-test-v1")
        .native<std::uint32_t>("magic", magic)
        .begin("data")
        .native<std::uint32_t>("nr_folios", 13)
        .prop("folios_info", info)
        .native<std::uint32_t>("csum", 0x2a660319)
        .end()
        .finish();
}

bool any_error_contains(const KhoSubtree& s, const std::string& needle) {
    for (const Error& e : s.errors)
        if (e.describe().find(needle) != std::string::npos) return true;
    return false;
}

std::string all_errors(const KhoSubtree& s) {
    std::string out;
    for (const Error& e : s.errors) out += e.describe() + "\n";
    return out;
}

}  // namespace

// --- the cold-boot capture: kho/out ------------------------------------------

TEST(KhoFdtOutFixture, RootIsReportedTruncatedWithTheNumbers) {
    KhoFdtReport r = report_of(fixture("vm-7.2-kho"), KhoFdtDirection::out);
    ASSERT_FALSE(r.error) << r.error->describe();
    EXPECT_EQ(r.path, "/sys/kernel/debug/kho/out");
    ASSERT_TRUE(r.root.present);
    EXPECT_FALSE(r.root.fdt.valid);
    EXPECT_TRUE(r.root.fdt.truncated);
    EXPECT_EQ(r.root.fdt.bytes, 233u);
    ASSERT_TRUE(r.root.fdt.header);
    EXPECT_EQ(r.root.fdt.header->totalsize, 345u);
    ASSERT_TRUE(r.root.fdt.error);
    EXPECT_NE(r.root.fdt.error->describe().find("233 bytes read"), std::string::npos);
    // The strings block was not read: the compatible cannot be named, so it is not guessed.
    EXPECT_FALSE(r.root.compatible);
    EXPECT_EQ(r.root.version, KhoRootVersion::unknown);
    EXPECT_FALSE(r.root.memory_map);
}

TEST(KhoFdtOutFixture, SalvagedRootShowsTheNodesThatWereRead) {
    KhoFdtReport r = report_of(fixture("vm-7.2-kho"), KhoFdtDirection::out);
    ASSERT_TRUE(r.root.fdt.salvaged);
    const FdtNode& root = *r.root.fdt.root;
    EXPECT_FALSE(root.complete);
    ASSERT_EQ(root.properties.size(), 2u);
    EXPECT_FALSE(root.properties[0].name) << "no strings block: names unknown";
    EXPECT_EQ(root.properties[0].value, std::string("kho-v4\0", 7));
    EXPECT_EQ(root.properties[1].length, 8u);
    ASSERT_EQ(root.children.size(), 3u);
    EXPECT_EQ(root.children[0].name, "LUO");
    EXPECT_TRUE(root.children[0].complete);
    EXPECT_EQ(root.children[1].name, "kho_test");
    EXPECT_EQ(root.children[2].name, "kexec-metadat") << "cut inside the name";
    EXPECT_FALSE(root.children[2].complete);
    ASSERT_EQ(r.root.entries.size(), 3u);
}

TEST(KhoFdtOutFixture, SubtreesAreDecodedFromTheExactFiles) {
    KhoFdtReport r = report_of(fixture("vm-7.2-kho"), KhoFdtDirection::out);
    ASSERT_EQ(r.subtrees.size(), 3u);
    EXPECT_EQ(r.subtrees[0].name, "LUO");
    EXPECT_EQ(r.subtrees[1].name, "kexec-metadata");
    EXPECT_EQ(r.subtrees[2].name, "kho_test");

    const KhoSubtree* meta = r.subtree("kexec-metadata");
    ASSERT_TRUE(meta && meta->kexec_metadata) << (meta ? all_errors(*meta) : "");
    EXPECT_TRUE(meta->errors.empty()) << all_errors(*meta);
    EXPECT_EQ(meta->kexec_metadata->version, 1u);
    EXPECT_EQ(meta->kexec_metadata->previous_release, "7.2.13");
    EXPECT_EQ(meta->kexec_metadata->kexec_count, 1u) << "a cold boot hands over count 1";
    EXPECT_FALSE(meta->in_root) << "its root node is cut short: the root cannot tell";

    const KhoSubtree* luo = r.subtree("LUO");
    ASSERT_TRUE(luo && luo->luo);
    EXPECT_TRUE(luo->errors.empty()) << all_errors(*luo);
    EXPECT_TRUE(luo->luo->known);
    EXPECT_EQ(luo->luo->compatible, "luo-v5");
    EXPECT_EQ(luo->luo->liveupdate_num, 1u);
    EXPECT_EQ(luo->luo->sessions_pa, 0u) << "no sessions were created";
    EXPECT_EQ(luo->luo->flbs_pa, 0x2678000u);
    EXPECT_EQ(luo->in_root, true);

    const KhoSubtree* t = r.subtree("kho_test");
    ASSERT_TRUE(t && t->kho_test);
    EXPECT_TRUE(t->errors.empty()) << all_errors(*t);
    EXPECT_EQ(t->format, "fdt");
    EXPECT_EQ(t->producer, "kho_test");
    EXPECT_EQ(t->compatible, "kho-test-v1");
    EXPECT_EQ(t->kho_test->magic, kho_test_magic);
    EXPECT_EQ(t->kho_test->nr_folios, 13u);
    ASSERT_TRUE(t->kho_test->folios_info);
    EXPECT_EQ(t->kho_test->folios_info->first, 0x19a6000u);
    EXPECT_EQ(t->kho_test->folios_info->total_pages, 1u);
    EXPECT_EQ(t->kho_test->csum, 0x2a660319u);
}

TEST(KhoFdtOutFixture, JsonHasTheDocumentedShape) {
    nlohmann::json j = to_json(report_of(fixture("vm-7.2-kho"), KhoFdtDirection::out));
    EXPECT_EQ(j["schema"], 1);
    EXPECT_EQ(j["direction"], "out");
    EXPECT_TRUE(j["error"].is_null());
    EXPECT_EQ(j["root"]["status"], "truncated");
    EXPECT_EQ(j["root"]["bytes_read"], 233);
    EXPECT_EQ(j["root"]["totalsize"], 345);
    EXPECT_TRUE(j["root"]["compatible"].is_null());
    EXPECT_EQ(j["kexec_metadata"]["previous_release"], "7.2.13");
    EXPECT_EQ(j["kexec_metadata"]["kexec_count"], 1);
    EXPECT_EQ(j["subtrees"]["kho_test"]["producer"], "kho_test");
    EXPECT_EQ(j["subtrees"]["kho_test"]["decoded"]["nr_folios"], 13);
    EXPECT_EQ(j["subtrees"]["LUO"]["decoded"]["liveupdate_num"], 1);
    EXPECT_EQ(j["subtrees"]["kexec-metadata"]["size"], 73);
    EXPECT_NO_THROW((void)j.dump());
}

TEST(KhoFdtOutFixture, TextNamesTheTruncation) {
    std::string text = format_kho_fdt(report_of(fixture("vm-7.2-kho"), KhoFdtDirection::out));
    EXPECT_NE(text.find("truncated: 233 bytes read, the FDT header's totalsize is 345"), std::string::npos)
        << text;
    EXPECT_NE(text.find("previous release       7.2.13"), std::string::npos) << text;
    EXPECT_NE(text.find("nr_folios              13"), std::string::npos) << text;
    EXPECT_NE(text.find("kexec-metadat {   (cut short)"), std::string::npos) << text;
}

TEST(KhoFdtOutFixture, NoIncomingDirectoryOnAColdBoot) {
    KhoFdtReport r = report_of(fixture("vm-7.2-kho"), KhoFdtDirection::in);
    ASSERT_TRUE(r.error);
    EXPECT_NE(r.error->describe().find("this boot did not come through a KHO kexec"), std::string::npos)
        << r.error->describe();
    nlohmann::json j = to_json(r);
    EXPECT_TRUE(j["root"].is_null());
    EXPECT_TRUE(j["kexec_metadata"].is_null());
}

// --- after a KHO kexec: kho/in ------------------------------------------------

TEST(KhoFdtInFixture, RootIsWholeAndKhoV4) {
    KhoFdtReport r = report_of(fixture("vm-7.2-kho-in"), KhoFdtDirection::in);
    ASSERT_FALSE(r.error) << r.error->describe();
    EXPECT_TRUE(r.root.fdt.valid) << (r.root.fdt.error ? r.root.fdt.error->describe() : "");
    EXPECT_FALSE(r.root.fdt.truncated) << "kho/in/fdt is sized by the FDT's own totalsize";
    EXPECT_EQ(r.root.fdt.bytes, 345u);
    EXPECT_EQ(r.root.compatible, "kho-v4");
    EXPECT_EQ(r.root.version, KhoRootVersion::v4);
    ASSERT_TRUE(r.root.memory_map);
    EXPECT_EQ(*r.root.memory_map, 0x189f000u);
    EXPECT_TRUE(r.root.problems.empty());
    ASSERT_EQ(r.root.entries.size(), 3u);
    for (const KhoRootEntry& e : r.root.entries) {
        EXPECT_TRUE(e.problems.empty()) << e.name;
        ASSERT_TRUE(e.phys && e.blob_size) << e.name;
        EXPECT_NE(*e.phys, 0u);
    }
}

TEST(KhoFdtInFixture, SubtreesMatchTheRootEntries) {
    KhoFdtReport r = report_of(fixture("vm-7.2-kho-in"), KhoFdtDirection::in);
    ASSERT_EQ(r.subtrees.size(), 3u);
    for (const KhoSubtree& s : r.subtrees) {
        EXPECT_EQ(s.in_root, true) << s.name;
        ASSERT_TRUE(s.root_entry && s.root_entry->blob_size && s.data) << s.name;
        EXPECT_EQ(*s.root_entry->blob_size, s.data->size()) << s.name;
    }
    EXPECT_EQ(r.subtree("LUO")->root_entry->blob_size, 32u);
    EXPECT_EQ(r.subtree("kexec-metadata")->root_entry->blob_size, 73u);
    EXPECT_EQ(r.subtree("kho_test")->root_entry->blob_size, 240u);
}

TEST(KhoFdtInFixture, PreviousReleaseKexecCountAndKhoTest) {
    KhoFdtReport r = report_of(fixture("vm-7.2-kho-in"), KhoFdtDirection::in);
    const KhoSubtree* meta = r.subtree("kexec-metadata");
    ASSERT_TRUE(meta && meta->kexec_metadata);
    EXPECT_EQ(meta->kexec_metadata->previous_release, "7.2.13");
    EXPECT_EQ(meta->kexec_metadata->kexec_count, 1u);

    const KhoSubtree* t = r.subtree("kho_test");
    ASSERT_TRUE(t && t->kho_test);
    EXPECT_TRUE(t->errors.empty()) << all_errors(*t);
    EXPECT_EQ(t->kho_test->magic, kho_test_magic);
    EXPECT_EQ(t->kho_test->nr_folios, 20u);
    EXPECT_EQ(t->kho_test->csum, 0xaaa88e84u);

    nlohmann::json j = to_json(r);
    EXPECT_EQ(j["root"]["status"], "ok");
    EXPECT_EQ(j["root"]["version"], "kho-v4");
    EXPECT_EQ(j["root"]["preserved_memory_map"]["phys"], 0x189f000);
    EXPECT_EQ(j["root"]["preserved_memory_map"]["readable"], false);
    EXPECT_EQ(j["kexec_metadata"]["previous_release"], "7.2.13");
    EXPECT_EQ(j["kexec_metadata"]["kexec_count"], 1);
    EXPECT_EQ(j["subtrees"]["kho_test"]["producer"], "kho_test");
    EXPECT_EQ(j["subtrees"]["kho_test"]["in_root"], true);
}

TEST(KhoFdtInFixture, IncomingLuoRecordWasFreedByTheKernel) {
    // The 7.2 kernel parses kho/in's LUO record at boot and frees it; debugfs
    // still shows that memory, which the capture shows reused.
    KhoFdtReport r = report_of(fixture("vm-7.2-kho-in"), KhoFdtDirection::in);
    const KhoSubtree* luo = r.subtree("LUO");
    ASSERT_TRUE(luo && luo->luo);
    EXPECT_FALSE(luo->luo->known);
    EXPECT_TRUE(any_error_contains(*luo, "frees the incoming LUO record")) << all_errors(*luo);
    nlohmann::json j = to_json(r);
    EXPECT_EQ(j["subtrees"]["LUO"]["decoded"]["known"], false);
    EXPECT_FALSE(j["subtrees"]["LUO"]["hex"].is_null());
    EXPECT_NO_THROW((void)j.dump()) << "garbage bytes must not break the JSON";
}

TEST(KhoFdtInFixture, OutOnAKhoBootHasNoRootButItsSubtrees) {
    KhoFdtReport r = report_of(fixture("vm-7.2-kho-in"), KhoFdtDirection::out);
    ASSERT_FALSE(r.error) << r.error->describe();
    EXPECT_FALSE(r.root.present);
    ASSERT_TRUE(r.root.absent_reason);
    EXPECT_NE(r.root.absent_reason->find("only on a cold boot"), std::string::npos);
    ASSERT_EQ(r.subtrees.size(), 2u);
    const KhoSubtree* meta = r.subtree("kexec-metadata");
    ASSERT_TRUE(meta && meta->kexec_metadata);
    EXPECT_EQ(meta->kexec_metadata->kexec_count, 2u) << "the second kernel hands over count 2";
    const KhoSubtree* luo = r.subtree("LUO");
    ASSERT_TRUE(luo && luo->luo && luo->luo->known);
    EXPECT_EQ(luo->luo->liveupdate_num, 2u);
    EXPECT_EQ(to_json(r)["root"]["status"], "missing");
}

TEST(KhoFdtInFixture, TextSaysWhereTheBootCameFrom) {
    std::string text = format_kho_fdt(report_of(fixture("vm-7.2-kho-in"), KhoFdtDirection::in));
    EXPECT_NE(text.find("came from              7.2.13, kexec count 1"), std::string::npos) << text;
    EXPECT_NE(text.find("compatible             kho-v4"), std::string::npos) << text;
    EXPECT_NE(text.find("preserved-memory map   0x189f000, radix tree"), std::string::npos) << text;
}

TEST(KhoFdtInFixture, EveryCutOfTheRootIsReportedNotCrashed) {
    std::string whole = read_bytes(fixture("vm-7.2-kho-in") / "sys/kernel/debug/kho/in/fdt");
    ASSERT_EQ(whole.size(), 345u);
    for (std::size_t n = 0; n < whole.size(); ++n) {
        KhoRoot r = decode_kho_root(std::string_view(whole).substr(0, n), "cut");
        EXPECT_FALSE(r.fdt.valid) << n;
        ASSERT_TRUE(r.fdt.error) << n;
        EXPECT_EQ(r.fdt.truncated, n >= 28) << n;
        EXPECT_NO_THROW((void)to_json(r).dump()) << n;
    }
    EXPECT_TRUE(decode_kho_root(whole, "whole").fdt.valid);
}

// --- other kernels and states ------------------------------------------------

TEST(KhoFdtOtherTrees, FinalizeAbiBeforeFinalizeHasNoRoot) {
    KhoFdtReport r = report_of(fixture("kho-6.16-finalize"), KhoFdtDirection::out);
    ASSERT_FALSE(r.error) << r.error->describe();
    EXPECT_EQ(r.abi, KhoAbi::finalize);
    EXPECT_FALSE(r.root.present);
    ASSERT_TRUE(r.root.absent_reason);
    EXPECT_NE(r.root.absent_reason->find("finalize"), std::string::npos);
    EXPECT_TRUE(r.subtrees.empty());
}

TEST(KhoFdtOtherTrees, NoKhoDirectoryIsAClearError) {
    KhoFdtReport r = report_of(fixture("vm-7.2-nokho"), KhoFdtDirection::out);
    ASSERT_TRUE(r.error);
    EXPECT_NE(r.error->describe().find("KHO is not active"), std::string::npos) << r.error->describe();
}

TEST(KhoFdtOtherTrees, DebugfsNotMountedIsAClearError) {
    TempTree t;
    t.write("proc/self/mounts", "proc /proc proc rw 0 0\n");
    KhoFdtReport r = report_of(t.root(), KhoFdtDirection::out);
    ASSERT_TRUE(r.error);
    EXPECT_NE(r.error->describe().find("debugfs is not mounted"), std::string::npos) << r.error->describe();
}

TEST(KhoFdtOtherTrees, KhoV1RootAsIn616) {
    TempTree t;
    t.write("proc/self/mounts", debugfs_mounts);
    std::string sub = FdtBuilder().str("compatible", "memblock-v1").finish();
    std::string root = FdtBuilder()
                           .str("compatible", "kho-v1")
                           .native<std::uint64_t>("preserved-memory-map", 0x123000)
                           .begin("memblock")
                           .native<std::uint64_t>("fdt", 0x456000)
                           .end()
                           .finish();
    t.write("sys/kernel/debug/kho/in/fdt", root);
    t.write("sys/kernel/debug/kho/in/sub_fdts/memblock", sub);
    t.write("sys/kernel/debug/kho/out/finalize", "0\n");
    KhoFdtReport r = report_of(t.root(), KhoFdtDirection::in);
    ASSERT_FALSE(r.error);
    EXPECT_EQ(r.root.version, KhoRootVersion::v1);
    EXPECT_EQ(r.root.memory_map, 0x123000u);
    EXPECT_NE(r.root.memory_map_format.find("khoser_mem_chunk"), std::string::npos);
    ASSERT_EQ(r.root.entries.size(), 1u);
    EXPECT_EQ(r.root.entries[0].phys, 0x456000u);
    EXPECT_FALSE(r.root.entries[0].blob_size) << "v1 has no blob-size";
    EXPECT_TRUE(r.root.entries[0].problems.empty());
    const KhoSubtree* mb = r.subtree("memblock");
    ASSERT_TRUE(mb && mb->memblock);
    EXPECT_EQ(mb->in_root, true);
    EXPECT_TRUE(mb->memblock->empty());
}

TEST(KhoFdtOtherTrees, KhoV2AndV3Properties) {
    std::string v2 = FdtBuilder()
                         .str("compatible", "kho-v2")
                         .native<std::uint64_t>("preserved-memory-map", 1)
                         .begin("a")
                         .native<std::uint64_t>("preserved-data", 0x1000)
                         .end()
                         .finish();
    KhoRoot r2 = decode_kho_root(v2, "v2");
    EXPECT_EQ(r2.version, KhoRootVersion::v2);
    ASSERT_EQ(r2.entries.size(), 1u);
    EXPECT_EQ(r2.entries[0].phys, 0x1000u);
    EXPECT_TRUE(r2.entries[0].problems.empty());

    std::string v3 = FdtBuilder()
                         .str("compatible", "kho-v3")
                         .native<std::uint64_t>("preserved-memory-map", 1)
                         .begin("a")
                         .native<std::uint64_t>("preserved-data", 0x1000)
                         .end()
                         .finish();
    KhoRoot r3 = decode_kho_root(v3, "v3");
    EXPECT_EQ(r3.version, KhoRootVersion::v3);
    ASSERT_EQ(r3.entries[0].problems.size(), 1u);
    EXPECT_EQ(r3.entries[0].problems[0], "a/blob-size: missing");
}

// --- crafted bad blobs ----------------------------------------------------------

TEST(KhoFdtCrafted, BadMagic) {
    std::string b = FdtBuilder().str("compatible", "kho-v4").finish();
    b[0] = 'X';
    FdtBlob f = parse_fdt(b, "bad");
    EXPECT_FALSE(f.has_magic);
    EXPECT_FALSE(f.valid);
    EXPECT_FALSE(f.root);
    ASSERT_TRUE(f.error);
    EXPECT_EQ(f.error->describe(), "bad: not an FDT (no 0xd00dfeed magic)");
    KhoRoot r = decode_kho_root(b, "bad");
    EXPECT_EQ(to_json(r)["status"], "invalid");
}

TEST(KhoFdtCrafted, EmptyAndTinyBlobs) {
    for (std::size_t n : {0, 3, 4, 27}) {
        std::string b = std::string("\xd0\x0d\xfe\xed", 4) + std::string(40, '\0');
        b.resize(n);
        FdtBlob f = parse_fdt(b, "tiny");
        EXPECT_FALSE(f.valid) << n;
        EXPECT_FALSE(f.header) << n;
        ASSERT_TRUE(f.error) << n;
    }
    EXPECT_EQ(parse_fdt("", "e").error->describe(), "e: empty or shorter than the FDT magic");
    KhoSubtree s = decode_kho_subtree("something", "", "/x", false);
    EXPECT_EQ(s.format, "raw");
    EXPECT_TRUE(any_error_contains(s, "empty: 0 bytes read"));
    EXPECT_TRUE(any_error_contains(decode_kho_subtree("kexec-metadata", "", "/x", false), "too short"));
    EXPECT_TRUE(any_error_contains(decode_kho_subtree("LUO", "", "/x", false), "too short"));
    EXPECT_TRUE(any_error_contains(decode_kho_subtree("kho_test", "", "/x", false), "empty"));
}

// fdt_check_full() takes a structure block at any offset; tools/fuzz found
// khod then reading a property's name offset through a misaligned pointer.
TEST(KhoFdtCrafted, StructureBlockAtAnOddOffset) {
    const std::string aligned =
        FdtBuilder().str("compatible", "kho-v4").native<std::uint64_t>("preserved-memory-map", 7).finish();
    std::string b = aligned;
    const std::uint32_t off_struct = be32(b, 8);
    b.insert(off_struct, 1, '\0');
    put_be32(b, 4, static_cast<std::uint32_t>(b.size()));
    put_be32(b, 8, off_struct + 1);
    put_be32(b, 12, be32(b, 12) + 1);
    FdtBlob f = parse_fdt(b, "odd");
    ASSERT_TRUE(f.valid) << (f.error ? f.error->describe() : "");
    ASSERT_TRUE(f.root);
    FdtBlob g = parse_fdt(aligned, "aligned");
    ASSERT_TRUE(g.root);
    for (const char* name : {"compatible", "preserved-memory-map"}) {
        const FdtProperty* odd = f.root->property(name);
        const FdtProperty* even = g.root->property(name);
        ASSERT_TRUE(odd && even) << name;
        EXPECT_EQ(odd->name_offset, even->name_offset) << name;
        EXPECT_EQ(odd->value, even->value) << name;
    }
    KhoRoot r = decode_kho_root(b, "odd");
    EXPECT_EQ(r.version, KhoRootVersion::v4);
    EXPECT_EQ(r.memory_map, 7u);
}

TEST(KhoFdtCrafted, TotalsizeBeyondTheFile) {
    std::string b =
        FdtBuilder().str("compatible", "kho-v4").native<std::uint64_t>("preserved-memory-map", 7).finish();
    put_be32(b, 4, static_cast<std::uint32_t>(b.size() + 100));
    FdtBlob f = parse_fdt(b, "big");
    EXPECT_TRUE(f.truncated);
    EXPECT_FALSE(f.valid);
    ASSERT_TRUE(f.error);
    EXPECT_NE(f.error->describe().find("truncated: " + std::to_string(b.size()) + " bytes read"),
              std::string::npos);
    // The blocks themselves are all there, so the salvage walk recovers everything.
    ASSERT_TRUE(f.root);
    EXPECT_TRUE(f.salvaged);
    EXPECT_TRUE(f.root->complete);
    ASSERT_TRUE(f.root->property("compatible"));
    KhoRoot r = decode_kho_root(b, "big");
    EXPECT_EQ(r.version, KhoRootVersion::v4);
    EXPECT_EQ(r.memory_map, 7u);
}

TEST(KhoFdtCrafted, TruncatedStructBlock) {
    std::string b = FdtBuilder()
                        .str("compatible", "kho-v4")
                        .native<std::uint64_t>("preserved-memory-map", 7)
                        .begin("one")
                        .native<std::uint64_t>("preserved-data", 1)
                        .native<std::uint64_t>("blob-size", 2)
                        .end()
                        .finish();
    // Cut in the middle of "one"'s first property value.
    std::uint32_t off_struct = be32(b, 8);
    std::size_t at = b.find("one");
    ASSERT_NE(at, std::string::npos);
    std::string cut = b.substr(0, at + 4 + 12 + 3);
    ASSERT_GT(cut.size(), off_struct);
    FdtBlob f = parse_fdt(cut, "cut");
    EXPECT_TRUE(f.truncated);
    ASSERT_TRUE(f.root);
    EXPECT_FALSE(f.root->complete);
    ASSERT_EQ(f.root->children.size(), 1u);
    const FdtNode& one = f.root->children[0];
    EXPECT_EQ(one.name, "one");
    EXPECT_FALSE(one.complete);
    ASSERT_EQ(one.properties.size(), 1u);
    EXPECT_FALSE(one.properties[0].complete);
    EXPECT_EQ(one.properties[0].value.size(), 3u);
    EXPECT_FALSE(f.salvage_notes.empty());
}

TEST(KhoFdtCrafted, PropertyLengthLies) {
    std::string b =
        FdtBuilder().str("compatible", "kho-v4").native<std::uint64_t>("preserved-memory-map", 7).finish();
    // The first property's length: tag at off_struct + 8 (BEGIN_NODE + empty name).
    std::size_t len_at = be32(b, 8) + 8 + 4;
    ASSERT_EQ(be32(b, len_at), 7u);
    for (std::uint32_t lie : {0xffffffffu, 0x7ffffff0u, 1000u, 9u}) {
        std::string bad = b;
        put_be32(bad, len_at, lie);
        FdtBlob f = parse_fdt(bad, "lie");
        EXPECT_FALSE(f.valid) << lie;
        ASSERT_TRUE(f.error) << lie;
        EXPECT_NE(f.error->describe().find("invalid FDT"), std::string::npos) << f.error->describe();
        if (f.root) {
            for (const FdtProperty& p : f.root->properties) EXPECT_LE(p.value.size(), bad.size());
        }
        EXPECT_NO_THROW((void)to_json(decode_kho_root(bad, "lie")).dump()) << lie;
    }
}

TEST(KhoFdtCrafted, WrongSizeU64Properties) {
    std::string b = FdtBuilder()
                        .str("compatible", "kho-v4")
                        .native<std::uint32_t>("preserved-memory-map", 7)
                        .begin("one")
                        .prop("preserved-data", std::string(12, '\1'))
                        .native<std::uint64_t>("blob-size", 2)
                        .end()
                        .finish();
    KhoRoot r = decode_kho_root(b, "sz");
    EXPECT_TRUE(r.fdt.valid);
    EXPECT_FALSE(r.memory_map);
    ASSERT_EQ(r.problems.size(), 1u);
    EXPECT_EQ(r.problems[0], "preserved-memory-map: 4 bytes, expected 8 (a u64 in CPU byte order)");
    ASSERT_EQ(r.entries.size(), 1u);
    EXPECT_FALSE(r.entries[0].phys);
    EXPECT_EQ(r.entries[0].blob_size, 2u);
    ASSERT_EQ(r.entries[0].problems.size(), 1u);
    EXPECT_EQ(r.entries[0].problems[0], "one/preserved-data: 12 bytes, expected 8 (a u64 in CPU byte order)");
}

TEST(KhoFdtCrafted, UnknownRootCompatibleIsNotGuessed) {
    std::string b = FdtBuilder()
                        .str("compatible", "kho-v9")
                        .native<std::uint64_t>("preserved-memory-map", 7)
                        .begin("one")
                        .native<std::uint64_t>("preserved-data", 1)
                        .end()
                        .finish();
    KhoRoot r = decode_kho_root(b, "v9");
    EXPECT_TRUE(r.fdt.valid);
    EXPECT_EQ(r.compatible, "kho-v9");
    EXPECT_EQ(r.version, KhoRootVersion::unknown);
    EXPECT_FALSE(r.memory_map) << "an unknown version's properties are not interpreted";
    ASSERT_EQ(r.entries.size(), 1u);
    EXPECT_EQ(r.entries[0].name, "one");
    EXPECT_FALSE(r.entries[0].phys);
    nlohmann::json j = to_json(r);
    EXPECT_EQ(j["version"], "unknown");
    EXPECT_EQ(j["known_version"], false);
    EXPECT_EQ(j["compatible"], "kho-v9");
    // ...but shown generically.
    EXPECT_EQ(j["fdt"]["tree"]["children"][0]["properties"][0]["name"], "preserved-data");
    EXPECT_EQ(j["fdt"]["tree"]["children"][0]["properties"][0]["u64"], 1);
}

TEST(KhoFdtCrafted, KexecMetadataRecords) {
    auto ok = decode_kexec_metadata(metadata_record(1, "7.2.13", 3), "m");
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->previous_release, "7.2.13");
    EXPECT_EQ(ok->kexec_count, 3u);
    EXPECT_EQ(ok->trailing, 0u);

    auto tiny = decode_kexec_metadata(std::string(3, '\1'), "m");
    ASSERT_FALSE(tiny);
    EXPECT_EQ(tiny.error().describe(),
              "m: kexec-metadata: 3 bytes is too short for the version word (4 bytes)");

    auto shorter = decode_kexec_metadata(metadata_record(1, "7.2.13", 3).substr(0, 72), "m");
    ASSERT_FALSE(shorter);
    EXPECT_EQ(shorter.error().describe(),
              "m: kexec-metadata: 72 bytes is too short for a version 1 record (73 bytes)");

    auto version = decode_kexec_metadata(metadata_record(2, "7.2.13", 3), "m");
    ASSERT_FALSE(version);
    EXPECT_EQ(version.error().describe(),
              "m: kexec-metadata: version 2 is not known (khoctl decodes version 1)");

    auto unterminated = decode_kexec_metadata(metadata_record(1, std::string(65, 'x'), 3), "m");
    ASSERT_FALSE(unterminated);
    EXPECT_NE(unterminated.error().describe().find("not NUL-terminated"), std::string::npos);

    auto trailing = decode_kexec_metadata(metadata_record(1, "7.2.13", 3) + "abc", "m");
    ASSERT_TRUE(trailing);
    EXPECT_EQ(trailing->trailing, 3u);

    auto odd = decode_kexec_metadata(metadata_record(1, std::string("7.2\xff\"\\", 6), 3), "m");
    ASSERT_TRUE(odd);
    EXPECT_EQ(odd->previous_release, "7.2\\xff\"\\x5c") << "escaped, JSON-safe";

    KhoSubtree s = decode_kho_subtree("kexec-metadata", metadata_record(5, "x", 1), "/p", true);
    EXPECT_FALSE(s.kexec_metadata);
    EXPECT_TRUE(s.errors.empty()) << "a newer format is not an error: " << all_errors(s);
    EXPECT_TRUE(s.newer_format);
    ASSERT_FALSE(s.notes.empty());
    EXPECT_NE(s.notes.back().find("version 5 is newer than khod decodes"), std::string::npos)
        << s.notes.back();
    EXPECT_FALSE(to_json(s)["hex"].is_null()) << "an undecodable record is shown as bytes";
    EXPECT_TRUE(to_json(s)["newer_format"].get<bool>());
}

TEST(KhoFdtCrafted, LuoRecords) {
    KhoSubtree ok = decode_kho_subtree("LUO", luo_record("luo-v5", 4, 0x1000, 0x2000), "/p", false);
    ASSERT_TRUE(ok.luo);
    EXPECT_TRUE(ok.errors.empty());
    EXPECT_EQ(ok.luo->liveupdate_num, 4u);
    EXPECT_EQ(ok.luo->sessions_pa, 0x1000u);
    EXPECT_EQ(ok.luo->flbs_pa, 0x2000u);

    KhoSubtree newer = decode_kho_subtree("LUO", luo_record("luo-v6", 4, 0, 0), "/p", false);
    ASSERT_TRUE(newer.luo);
    EXPECT_FALSE(newer.luo->known);
    EXPECT_TRUE(newer.errors.empty()) << all_errors(newer);
    EXPECT_TRUE(newer.newer_format);
    ASSERT_FALSE(newer.notes.empty());
    EXPECT_NE(newer.notes.back().find("\"luo-v6\" is not the format khod decodes (luo-v5)"),
              std::string::npos);

    KhoSubtree nonul = decode_kho_subtree("LUO", luo_record("luo-v5xy", 4, 0, 0), "/p", false);
    EXPECT_FALSE(nonul.luo->known) << "the kernel's strncmp over 8 bytes fails without the NUL";

    KhoSubtree shortish = decode_kho_subtree("LUO", luo_record("luo-v5", 1, 2, 3).substr(0, 31), "/p", false);
    EXPECT_FALSE(shortish.luo);
    EXPECT_TRUE(any_error_contains(shortish, "31 bytes is too short for the LUO record (32 bytes)"));
}

TEST(KhoFdtCrafted, KhoTestTrees) {
    KhoSubtree good = decode_kho_subtree("kho_test", kho_test_tree(), "/p", false);
    EXPECT_TRUE(good.errors.empty()) << all_errors(good);
    ASSERT_TRUE(good.kho_test && good.kho_test->folios_info);
    EXPECT_EQ(good.kho_test->folios_info->flags, 1u);

    KhoSubtree magic = decode_kho_subtree("kho_test", kho_test_tree(0x12345678), "/p", false);
    EXPECT_TRUE(any_error_contains(magic, "magic: 0x12345678, expected 0x4b484f21")) << all_errors(magic);

    KhoSubtree info = decode_kho_subtree("kho_test", kho_test_tree(kho_test_magic, 12), "/p", false);
    EXPECT_TRUE(any_error_contains(info, "data/folios_info: 12 bytes, expected 16")) << all_errors(info);

    std::string nodata =
        FdtBuilder().str("compatible", "kho-test-v1").native<std::uint32_t>("magic", kho_test_magic).finish();
    EXPECT_TRUE(any_error_contains(decode_kho_subtree("kho_test", nodata, "/p", false), "no data node"));

    std::string widemagic =
        FdtBuilder().str("compatible", "kho-test-v1").native<std::uint64_t>("magic", 1).finish();
    EXPECT_TRUE(any_error_contains(decode_kho_subtree("kho_test", widemagic, "/p", false),
                                   "magic: 8 bytes, expected 4"));
}

TEST(KhoFdtCrafted, MemblockTree) {
    std::string b = FdtBuilder()
                        .str("compatible", "memblock-v1")
                        .begin("trace")
                        .str("compatible", "reserve-mem-v1")
                        .native<std::uint64_t>("start", 0x40000000)
                        .native<std::uint64_t>("size", 0x100000)
                        .end()
                        .begin("odd")
                        .str("compatible", "reserve-mem-v0")
                        .native<std::uint32_t>("start", 1)
                        .end()
                        .finish();
    KhoSubtree s = decode_kho_subtree("memblock", b, "/p", false);
    EXPECT_EQ(s.producer, "memblock");
    ASSERT_TRUE(s.memblock);
    ASSERT_EQ(s.memblock->size(), 2u);
    EXPECT_EQ((*s.memblock)[0].start, 0x40000000u);
    EXPECT_EQ((*s.memblock)[0].size, 0x100000u);
    EXPECT_TRUE(any_error_contains(s, "odd: compatible is \"reserve-mem-v0\""));
    EXPECT_TRUE(any_error_contains(s, "odd/start: 4 bytes, expected 8"));
    EXPECT_TRUE(any_error_contains(s, "odd/size: missing"));
}

TEST(KhoFdtCrafted, UnknownProducersAreShownGenerically) {
    std::string inner = FdtBuilder().str("compatible", "inner-v1").native<std::uint64_t>("x", 5).finish();
    std::string b =
        FdtBuilder().str("compatible", "thing-v1").prop("blob", inner).prop("bin", "\x01\x02\x03").finish();
    KhoSubtree s = decode_kho_subtree("thing", b, "/p", false);
    EXPECT_EQ(s.format, "fdt");
    EXPECT_EQ(s.producer, "");
    EXPECT_EQ(s.compatible, "thing-v1");
    EXPECT_TRUE(s.errors.empty());
    nlohmann::json j = to_json(s);
    EXPECT_TRUE(j["producer"].is_null());
    auto& props = j["fdt"]["tree"]["properties"];
    EXPECT_EQ(props[0]["string"], "thing-v1");
    EXPECT_EQ(props[1]["nested_fdt"]["valid"], true);
    EXPECT_EQ(props[1]["nested_fdt"]["tree"]["properties"][1]["u64"], 5);
    EXPECT_EQ(props[2]["hex"], "010203");

    KhoSubtree raw = decode_kho_subtree("blobby", "\x01\x02\xff", "/p", false);
    EXPECT_EQ(raw.format, "raw");
    EXPECT_TRUE(raw.errors.empty());
    EXPECT_EQ(to_json(raw)["hex"], "0102ff");

    KhoSubtree fake = decode_kho_subtree("kho_test", "not an fdt", "/p", false);
    EXPECT_TRUE(any_error_contains(fake, "expected an FDT"));
}

TEST(KhoFdtCrafted, HostileNamesStayValidJson) {
    std::string b = FdtBuilder().str("compatible", "x").begin(std::string("n\xff\xfe", 3)).end().finish();
    KhoSubtree s = decode_kho_subtree(std::string("we\xffird", 6), b, std::string("/p\xff", 3), false);
    nlohmann::json j = to_json(s);
    EXPECT_EQ(j["name"], "we\\xffird");
    EXPECT_EQ(j["fdt"]["tree"]["children"][0]["name"], "n\\xff\\xfe");
    EXPECT_NO_THROW((void)j.dump());
}

TEST(KhoFdtCrafted, DeepNestingIsBounded) {
    FdtBuilder b;
    for (int i = 0; i < 200; ++i) b.begin("n");
    for (int i = 0; i < 200; ++i) b.end();
    FdtBlob f = parse_fdt(b.finish(), "deep");
    ASSERT_TRUE(f.valid);
    const FdtNode* n = &*f.root;
    int depth = 0;
    while (!n->children.empty()) {
        n = &n->children[0];
        ++depth;
    }
    EXPECT_EQ(depth, fdt_max_depth - 1);
    EXPECT_EQ(n->elided_children, 1u);
    EXPECT_NO_THROW((void)to_json(f).dump());
}

TEST(KhoFdtCrafted, RootEntriesAndFilesThatDisagree) {
    TempTree t;
    t.write("proc/self/mounts", debugfs_mounts);
    std::string root = FdtBuilder()
                           .str("compatible", "kho-v4")
                           .native<std::uint64_t>("preserved-memory-map", 0x1000)
                           .begin("kexec-metadata")
                           .native<std::uint64_t>("preserved-data", 0x2000)
                           .native<std::uint64_t>("blob-size", 80)
                           .end()
                           .begin("gone")
                           .native<std::uint64_t>("preserved-data", 0x3000)
                           .native<std::uint64_t>("blob-size", 8)
                           .end()
                           .finish();
    t.write("sys/kernel/debug/kho/in/fdt", root);
    t.write("sys/kernel/debug/kho/in/sub_fdts/kexec-metadata", metadata_record(1, "7.1.0", 4));
    t.write("sys/kernel/debug/kho/in/sub_fdts/extra", "abc");
    KhoFdtReport r = report_of(t.root(), KhoFdtDirection::in);
    ASSERT_FALSE(r.error);
    ASSERT_EQ(r.subtrees.size(), 3u);
    const KhoSubtree* meta = r.subtree("kexec-metadata");
    EXPECT_TRUE(any_error_contains(*meta, "the root FDT says blob-size 80 but 73 bytes were read"));
    const KhoSubtree* gone = r.subtree("gone");
    EXPECT_EQ(gone->format, "missing");
    EXPECT_FALSE(gone->data);
    const KhoSubtree* extra = r.subtree("extra");
    EXPECT_EQ(extra->in_root, false);
    nlohmann::json j = to_json(r);
    EXPECT_EQ(j["kexec_metadata"]["previous_release"], "7.1.0");
    EXPECT_EQ(j["subtrees"]["gone"]["format"], "missing");
    EXPECT_EQ(j["subtrees"]["extra"]["in_root"], false);
}

TEST(KhoText, EscapeBytesEscapesBackslashSoTheResultReadsBackOneWay) {
    EXPECT_EQ(khod::escape_bytes(std::string_view("a\\b\x01\xff", 5)), "a\\x5cb\\x01\\xff");
}

TEST(KhoText, PrintableKeepsBackslashSoEscapedTextIsLeftAlone) {
    EXPECT_EQ(khod::printable(std::string_view("a\\x01\x7f", 6)), "a\\x01\\x7f");
    EXPECT_EQ(khod::printable(khod::printable("p\x02")), khod::printable("p\x02"));
}

// fuzz-kho-fdt found libfdt 1.6's full check dereferencing a null property
// name in a version-2 tree: such old trees are only salvaged, never given to it.
TEST(FdtBlob, TreesOlderThanVersion16AreSalvagedNotCheckedByLibfdt) {
    std::string b = FdtBuilder().str("compatible", "kho-test-v1").finish();
    b[20] = b[21] = b[22] = 0;  // version (offset 20, big-endian) 17 -> 2
    b[23] = 2;
    FdtBlob f = parse_fdt(b, "old");
    EXPECT_FALSE(f.valid);
    ASSERT_TRUE(f.error);
    EXPECT_NE(f.error->describe().find("FDT version 2 is older than 16"), std::string::npos)
        << f.error->describe();
}
