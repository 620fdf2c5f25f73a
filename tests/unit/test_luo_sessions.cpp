// The session broker against a LuoKernel double (errno injection) and an
// in-memory fd store, with real memfds; then a whole live update through
// FakeLuo: create, preserve, manifest, freeze, "next kernel", restore, retrieve.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>

#include "backends/fake_luo.hpp"
#include "khod/luo/liveupdate.hpp"
#include "khod/luo/luo_sessions.hpp"
#include "khod/luo/memfd.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::TempTree;

namespace {

ino_t ino_of(int fd) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

// Sessions are memfds, told apart by inode so dups (the fd store's) work too.
struct Kernel : LuoKernel {
    std::map<ino_t, std::string> names;
    std::map<std::string, std::map<std::uint64_t, std::string>> incoming;  // not yet retrieved
    std::map<std::string, std::map<std::uint64_t, std::string>> retrieved;
    std::vector<std::string> created, finished;
    std::map<std::string, std::set<std::uint64_t>> preserved;  // by session name
    int fail_create = 0, fail_preserve = 0, fail_finish = 0, fail_retrieve_session = 0;

    Result<UniqueFd> session(const std::string& name) {
        auto fd = sealed_memfd("session", name);
        if (fd) names[ino_of(fd->get())] = name;
        return fd;
    }
    Result<UniqueFd> create_session(const std::string& name) override {
        if (fail_create) return errno_error(fail_create, name, "create");
        created.push_back(name);
        return session(name);
    }
    Result<UniqueFd> retrieve_session(const std::string& name) override {
        if (fail_retrieve_session) return errno_error(fail_retrieve_session, name, "retrieve");
        auto it = incoming.find(name);
        if (it == incoming.end()) return errno_error(ENOENT, name, "retrieve");
        retrieved[name] = it->second;
        incoming.erase(it);
        return session(name);
    }
    Result<void> preserve_fd(int session_fd, std::uint64_t token, int fd) override {
        if (fail_preserve) return errno_error(fail_preserve, "", "preserve");
        auto& tokens = preserved[names[ino_of(session_fd)]];
        if (!tokens.insert(token).second) return errno_error(EEXIST, "", "preserve");
        if (names[ino_of(session_fd)] == "khod") retrieved["sent-manifest"][0] = *read_whole(fd, 1 << 20);
        return {};
    }
    Result<UniqueFd> retrieve_fd(int session_fd, std::uint64_t token) override {
        auto& files = retrieved[names[ino_of(session_fd)]];
        if (!files.count(token)) return errno_error(ENOENT, "", "retrieve_fd");
        return sealed_memfd("file", files[token]);
    }
    Result<void> finish(int session_fd) override {
        if (fail_finish) return errno_error(fail_finish, "", "finish");
        finished.push_back(names[ino_of(session_fd)]);
        return {};
    }
    Result<std::string> session_name(int session_fd) override {
        auto it = names.find(ino_of(session_fd));
        if (it == names.end()) return errno_error(ENOTTY, "", "get_name");
        return it->second;
    }
};

struct Store : LuoFdStore {
    std::map<std::string, UniqueFd> fds;
    bool on = true;
    bool store(const std::string& name, int fd) override {
        if (!on) return false;
        fds[name] = UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
        return true;
    }
    void remove(const std::string& name) override { fds.erase(name); }
    bool available() const override { return on; }
    // What a restarted khod gets from the service manager.
    std::vector<std::pair<std::string, UniqueFd>> handed_back() {
        std::vector<std::pair<std::string, UniqueFd>> out;
        for (auto& [name, fd] : fds) out.emplace_back(name, UniqueFd(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0)));
        return out;
    }
};

LuoManifest manifest_naming(const std::vector<std::string>& names) {
    LuoManifest m;
    m.release = "7.2-old";
    m.phases.reboot_syscall = 42;
    for (const auto& n : names)
        m.sessions.push_back(LuoSessionEntry{n, {1000, "a.service"}, {{5, 3, 0, false}}, false});
    return m;
}

struct Broker : ::testing::Test {
    Kernel kernel;
    Store store;
    LuoSessions sessions{kernel, store, "7.2-new"};
    std::vector<std::vector<std::string>> changes;
    void SetUp() override {
        sessions.on_change([this](const std::vector<std::string>& what) { changes.push_back(what); });
    }
    UniqueFd memfd(const std::string& bytes = "data") { return sealed_memfd("m", bytes).value(); }
    LuoManifest state() { return *decode_manifest(*read_whole(store.fds.at("luo-state").get(), 1 << 20)); }
};

}  // namespace

TEST(LuoSessionName, Rules) {
    EXPECT_TRUE(check_session_name("vm-1.a@b+c_d"));
    EXPECT_TRUE(check_session_name("khod-extra"));
    EXPECT_TRUE(check_session_name(std::string(63, 'a')));
    EXPECT_FALSE(check_session_name(std::string(64, 'a')));
    EXPECT_FALSE(check_session_name(""));
    EXPECT_FALSE(check_session_name("khod"));
    EXPECT_FALSE(check_session_name("systemd"));
    EXPECT_FALSE(check_session_name("a/b"));
    EXPECT_FALSE(check_session_name("a b"));
    EXPECT_EQ(check_session_name("a:b").error().kind, Errc::invalid_argument);
}

TEST_F(Broker, CreateStoresTheFdAndState) {
    ASSERT_TRUE(sessions.create("vm", {1000, "vm.service"}));
    EXPECT_TRUE(store.fds.count("luo-out-vm"));
    auto m = state();
    ASSERT_EQ(m.sessions.size(), 1U);
    EXPECT_EQ(m.sessions[0].owner.uid, 1000U);
    EXPECT_FALSE(m.sessions[0].incoming);
    EXPECT_EQ(changes.back(), std::vector<std::string>{"Outgoing"});
    EXPECT_EQ(sessions.create("vm", {1000, ""}).error().kind, Errc::session_exists);
    EXPECT_EQ(sessions.create("khod", {0, ""}).error().kind, Errc::invalid_argument);
}

TEST_F(Broker, CreateMapsKernelErrors) {
    kernel.fail_create = EEXIST;
    EXPECT_EQ(sessions.create("a", {0, ""}).error().kind, Errc::session_exists);
    kernel.fail_create = EBUSY;
    auto busy = sessions.create("a", {0, ""});
    EXPECT_EQ(busy.error().kind, Errc::busy);
    EXPECT_NE(busy.error().error.message.find("another process"), std::string::npos);
    kernel.fail_create = ENODEV;
    EXPECT_EQ(sessions.create("a", {0, ""}).error().kind, Errc::not_supported);
    kernel.fail_create = ENOMEM;
    EXPECT_EQ(sessions.create("a", {0, ""}).error().kind, Errc::kernel_refused);
    EXPECT_TRUE(sessions.outgoing().empty());
}

TEST_F(Broker, CapsPerUidAndTotal) {
    for (std::size_t i = 0; i < LuoSessions::max_sessions_per_uid; ++i)
        ASSERT_TRUE(sessions.create("u" + std::to_string(i), {1000, ""}));
    EXPECT_EQ(sessions.create("one-more", {1000, ""}).error().kind, Errc::busy);
    EXPECT_TRUE(sessions.create("other-user", {1001, ""}));
}

// A sparse memfd costs its caller nothing until the kernel fills it at PRESERVE.
TEST_F(Broker, NonRootBytesAreBoundedRootsAreNot) {
    auto sparse = [](std::uint64_t size) {
        UniqueFd fd(memfd_create("sparse", MFD_CLOEXEC));
        EXPECT_EQ(ftruncate(fd.get(), static_cast<off_t>(size)), 0);
        return fd;
    };
    const std::uint64_t cap = LuoSessions::max_bytes_per_unprivileged_uid;
    ASSERT_TRUE(sessions.create("user", {1000, ""}));
    ASSERT_TRUE(sessions.preserve("user", 1, sparse(cap / 2).get(), 1000));
    auto over = sessions.preserve("user", 2, sparse(cap / 2 + 1).get(), 1000);
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().kind, Errc::busy);
    EXPECT_NE(over.error().describe().find("root has no such limit"), std::string::npos)
        << over.error().describe();
    ASSERT_TRUE(sessions.create("root", {0, ""}));
    EXPECT_TRUE(sessions.preserve("root", 1, sparse(cap * 2).get(), 0));
}

TEST_F(Broker, PreserveOwnerTokenAndFacts) {
    ASSERT_TRUE(sessions.create("vm", {1000, ""}));
    auto fd = memfd("12345");
    EXPECT_EQ(sessions.preserve("vm", 1, fd.get(), 1001).error().kind, Errc::not_owner);
    EXPECT_EQ(sessions.preserve("nope", 1, fd.get(), 1000).error().kind, Errc::no_such_session);
    ASSERT_TRUE(sessions.preserve("vm", 1, fd.get(), 1000));
    EXPECT_EQ(sessions.preserve("vm", 1, memfd().get(), 0).error().kind, Errc::session_exists);
    ASSERT_TRUE(sessions.preserve("vm", 2, memfd().get(), 0));  // root may
    ASSERT_EQ(sessions.outgoing()[0].files.size(), 2U);
    EXPECT_EQ(sessions.outgoing()[0].files[0].size, 5U);
    EXPECT_EQ(sessions.outgoing()[0].files[0].seals, khod_memfd_seals());
    EXPECT_EQ(sessions.outgoing_bytes(), 9U);
    EXPECT_EQ(state().sessions[0].files.size(), 2U);
    EXPECT_EQ(sessions.preserve("vm", 3, -1, 1000).error().kind, Errc::invalid_argument);
}

TEST_F(Broker, PreserveMapsKernelErrors) {
    ASSERT_TRUE(sessions.create("vm", {1000, ""}));
    auto fd = memfd();
    const std::pair<int, Errc> cases[] = {
        {EEXIST, Errc::session_exists},       {EBUSY, Errc::busy},
        {ENOENT, Errc::invalid_argument},     {EBADF, Errc::invalid_argument},
        {EOPNOTSUPP, Errc::invalid_argument}, {EIO, Errc::incoming_lost},
        {ENOSPC, Errc::kernel_refused}};
    for (auto [code, kind] : cases) {
        kernel.fail_preserve = code;
        auto r = sessions.preserve("vm", 9, fd.get(), 1000);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().kind, kind) << errno_name(code);
        EXPECT_EQ(r.error().error.code, code);
    }
    kernel.fail_preserve = ENOENT;
    EXPECT_NE(sessions.preserve("vm", 9, fd.get(), 1000).error().error.message.find("not a shmem memfd"),
              std::string::npos);
    kernel.fail_preserve = EOPNOTSUPP;
    EXPECT_NE(sessions.preserve("vm", 9, fd.get(), 1000).error().error.message.find("SEAL|SHRINK|GROW|WRITE"),
              std::string::npos);
    EXPECT_TRUE(sessions.outgoing()[0].files.empty());
}

TEST_F(Broker, DestroyChecksOwnerAndDropsTheStoreEntry) {
    ASSERT_TRUE(sessions.create("vm", {1000, ""}));
    EXPECT_EQ(sessions.destroy("vm", 1001).error().kind, Errc::not_owner);
    ASSERT_TRUE(sessions.destroy("vm", 1000));
    EXPECT_FALSE(store.fds.count("luo-out-vm"));
    EXPECT_TRUE(sessions.outgoing().empty());
    EXPECT_TRUE(state().sessions.empty());
    EXPECT_EQ(sessions.destroy("vm", 0).error().kind, Errc::no_such_session);
}

TEST_F(Broker, WriteAndDropManifest) {
    ASSERT_TRUE(sessions.create("vm", {1000, "vm.service"}));
    ASSERT_TRUE(sessions.preserve("vm", 1, memfd().get(), 1000));
    ASSERT_TRUE(sessions.write_manifest({1, 2, 3}));
    EXPECT_EQ(kernel.created.back(), "khod");
    EXPECT_FALSE(store.fds.count("luo-out-khod"));
    auto m = decode_manifest(kernel.retrieved["sent-manifest"][0]);
    ASSERT_TRUE(m) << m.error().describe();
    EXPECT_EQ(m->release, "7.2-new");
    EXPECT_EQ(m->phases.inhibitors_released, 2U);
    ASSERT_EQ(m->sessions.size(), 1U);
    EXPECT_EQ(m->sessions[0].files[0].token, 1U);
    // Again after an abandoned exec: the old manifest session is dropped first.
    sessions.drop_manifest();
    kernel.preserved.erase("khod");
    EXPECT_TRUE(sessions.write_manifest({}));
    kernel.fail_create = EBUSY;
    EXPECT_EQ(sessions.write_manifest({}).error().kind, Errc::busy);
}

TEST_F(Broker, RestoreFromTheManifestHoldsRetrievesAndFinishes) {
    kernel.incoming["khod"][0] = encode_manifest(manifest_naming({"a", "gone"}));
    kernel.incoming["a"][5] = "abc";
    kernel.incoming["foreign"][1] = "not ours";
    LuoRecovery rec = sessions.restore({});
    EXPECT_TRUE(rec.manifest_found);
    EXPECT_EQ(rec.previous_release, "7.2-old");
    EXPECT_EQ(sessions.previous_phases().reboot_syscall, 42U);
    EXPECT_EQ(rec.held, std::vector<std::string>{"a"});
    ASSERT_EQ(rec.missing.size(), 1U);
    EXPECT_EQ(rec.missing[0].name, "gone");
    EXPECT_EQ(rec.missing[0].owner.uid, 1000U);  // whose memory the kernel did not carry
    EXPECT_EQ(rec.missing[0].files.size(), 1U);
    EXPECT_TRUE(rec.problems.empty()) << rec.problems[0].describe();
    EXPECT_EQ(kernel.finished, std::vector<std::string>{"khod"});
    EXPECT_TRUE(kernel.incoming.count("foreign"));  // never touched
    EXPECT_TRUE(store.fds.count("luo-in-a"));
    EXPECT_TRUE(state().sessions[0].incoming);

    EXPECT_EQ(sessions.retrieve("a", 5, 1001).error().kind, Errc::not_owner);
    EXPECT_EQ(sessions.retrieve("a", 6, 1000).error().kind, Errc::no_such_session);
    auto fd = sessions.retrieve("a", 5, 1000);
    ASSERT_TRUE(fd);
    EXPECT_EQ(*read_whole(fd->get(), 10), "abc");
    EXPECT_TRUE(sessions.incoming()[0].files[0].retrieved);
    EXPECT_EQ(changes.back(), std::vector<std::string>{"Incoming"});

    EXPECT_EQ(sessions.finish("a", 1001).error().kind, Errc::not_owner);
    kernel.fail_finish = EBUSY;
    EXPECT_EQ(sessions.finish("a", 1000).error().kind, Errc::busy);
    kernel.fail_finish = 0;
    ASSERT_TRUE(sessions.finish("a", 1000));
    EXPECT_TRUE(sessions.incoming().empty());
    EXPECT_FALSE(store.fds.count("luo-in-a"));
}

TEST_F(Broker, RestoreWithoutAManifestOrWithLostData) {
    LuoRecovery cold = sessions.restore({});
    EXPECT_FALSE(cold.manifest_found);
    EXPECT_TRUE(cold.problems.empty());
    kernel.fail_retrieve_session = EIO;
    LuoRecovery lost = sessions.restore({});
    ASSERT_EQ(lost.problems.size(), 1U);
    EXPECT_EQ(lost.problems[0].code, EIO);
}

TEST_F(Broker, RestoreRefusesAManifestNamingReservedSessions) {
    kernel.incoming["khod"][0] = encode_manifest(manifest_naming({"systemd"}));
    kernel.incoming["systemd"][1] = "x";
    LuoRecovery rec = sessions.restore({});
    EXPECT_TRUE(rec.held.empty());
    EXPECT_TRUE(kernel.incoming.count("systemd"));
}

TEST_F(Broker, FinishAllIncoming) {
    kernel.incoming["khod"][0] = encode_manifest(manifest_naming({"a", "b"}));
    kernel.incoming["a"][5] = "1";
    kernel.incoming["b"][5] = "2";
    (void)sessions.restore({});
    ASSERT_TRUE(sessions.retrieve("b", 5, 1000));
    auto released = sessions.finish_all_incoming();
    ASSERT_EQ(released.size(), 2U);
    EXPECT_EQ(released[0].name, "a");
    EXPECT_EQ(released[1].name, "b");
    // Who lost what, for the journal: the owner, and which files were never taken.
    EXPECT_EQ(released[0].owner.uid, 1000U);
    EXPECT_EQ(released[0].owner.unit, "a.service");
    EXPECT_TRUE(released[0].incoming);
    ASSERT_EQ(released[0].files.size(), 1U);
    EXPECT_FALSE(released[0].files[0].retrieved);
    EXPECT_TRUE(released[1].files[0].retrieved);
    EXPECT_TRUE(sessions.incoming().empty());
    EXPECT_FALSE(store.fds.count("luo-in-a"));
}

TEST_F(Broker, RestartAdoptsFromTheStore) {
    ASSERT_TRUE(sessions.create("vm", {1000, "vm.service"}));
    ASSERT_TRUE(sessions.preserve("vm", 1, memfd().get(), 1000));
    ASSERT_TRUE(sessions.create("orphan", {1001, ""}));
    auto handed = store.handed_back();
    // The state no longer knows "orphan": it comes back owned by root.
    LuoManifest m = state();
    m.sessions.erase(m.sessions.begin() + 1);
    for (auto& [name, fd] : handed)
        if (name == "luo-state") fd = sealed_memfd("s", encode_manifest(m)).value();
    handed.emplace_back("luo-out-junk", sealed_memfd("j", "").value());  // not a session

    Store store2;
    LuoSessions again(kernel, store2, "7.2-new");
    kernel.incoming["khod"][0] = encode_manifest(manifest_naming({}));
    LuoRecovery rec = again.restore(std::move(handed));
    EXPECT_EQ(rec.adopted, (std::vector<std::string>{"orphan", "vm"}));
    ASSERT_EQ(again.outgoing().size(), 2U);
    EXPECT_EQ(again.outgoing()[1].owner.unit, "vm.service");
    EXPECT_EQ(again.outgoing()[1].files.size(), 1U);
    EXPECT_EQ(again.outgoing()[0].owner.uid, 0U);
    EXPECT_EQ(rec.problems.size(), 2U);  // orphan's owner, the junk fd
    EXPECT_TRUE(rec.manifest_found);     // no incoming from the store: the kernel was asked
}

TEST(LuoLiveUpdate, ThroughTheFakeKernel) {
    TempTree tree;
    Sysroot root(tree.root());
    {
        FakeLuo kernel(root);
        Store store;
        LuoSessions sessions(kernel, store, "7.2-a");
        (void)sessions.restore({});
        ASSERT_TRUE(sessions.create("vm", {1000, "vm.service"}));
        auto fd = sealed_memfd("guest", "guest memory");
        ASSERT_TRUE(sessions.preserve("vm", 3, fd->get(), 1000));
        // Not memfds: an ordinary file; a memfd preserved twice.
        tree.write("plain", "x");
        UniqueFd plain(::open((tree.root() / "plain").c_str(), O_RDONLY | O_CLOEXEC));
        EXPECT_EQ(sessions.preserve("vm", 4, plain.get(), 1000).error().kind, Errc::invalid_argument);
        EXPECT_EQ(sessions.preserve("vm", 5, fd->get(), 1000).error().kind, Errc::busy);
        ASSERT_TRUE(sessions.create("dropped", {1000, ""}));
        ASSERT_TRUE(sessions.destroy("dropped", 1000));
        ASSERT_TRUE(sessions.write_manifest({1, 2, 3}));
        ASSERT_TRUE(kernel.freeze());
        EXPECT_EQ(kernel.live_outgoing(), (std::vector<std::string>{"vm", "khod"}));
    }
    std::filesystem::rename(tree.root() / "fake-luo/outgoing", tree.root() / "fake-luo/incoming");
    FakeLuo kernel(root);
    Store store;
    LuoSessions sessions(kernel, store, "7.2-b");
    LuoRecovery rec = sessions.restore({});
    EXPECT_TRUE(rec.manifest_found);
    EXPECT_EQ(rec.previous_release, "7.2-a");
    EXPECT_EQ(rec.held, std::vector<std::string>{"vm"});
    EXPECT_FALSE(std::filesystem::exists(tree.root() / "fake-luo/incoming/khod"));  // finished
    auto fd = sessions.retrieve("vm", 3, 1000);
    ASSERT_TRUE(fd) << fd.error().describe();
    EXPECT_EQ(*read_whole(fd->get(), 100), "guest memory");
    ASSERT_TRUE(sessions.finish("vm", 1000));
    EXPECT_FALSE(std::filesystem::exists(tree.root() / "fake-luo/incoming/vm"));
    tree.write("fake-luo/busy", "");
    EXPECT_EQ(sessions.create("x", {0, ""}).error().kind, Errc::busy);
}

// Captured from the real 7.2.13: a cold boot's kho/out LUO record says 1, the
// next boot's 2, and the incoming record is reused memory by then.
TEST(LiveUpdateNumber, FromTheOutgoingRecordOnceTheIncomingOneIsFreed) {
    EXPECT_EQ(incoming_liveupdate_number(Sysroot(test::fixture("vm-7.2-kho"))),
              std::optional<std::uint64_t>(0));
    EXPECT_EQ(incoming_liveupdate_number(Sysroot(test::fixture("vm-7.2-kho-in"))),
              std::optional<std::uint64_t>(1));
    EXPECT_EQ(incoming_liveupdate_number(Sysroot(test::fixture("vm-7.2-nokho"))), std::nullopt);
}
