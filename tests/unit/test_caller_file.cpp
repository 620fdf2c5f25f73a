// open_regular_file(): what khod does with a path a caller named. Everything
// that is not a regular file is refused at once, by name, without blocking.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>
#include <string>

#include "khod/base/caller_file.hpp"
#include "khod/kexec/bzimage.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::TempTree;

namespace {

// The refusal's whole text, failing the test if path was accepted.
std::string refusal(const std::filesystem::path& path) {
    auto r = open_regular_file(path, "the kernel");
    EXPECT_FALSE(r) << path;
    return r ? std::string{} : r.error().describe();
}

}  // namespace

TEST(CallerFile, RegularFileOpensWithItsSizeAndBlocking) {
    TempTree tree;
    tree.write("vmlinuz", "12345");
    auto r = open_regular_file(tree.root() / "vmlinuz", "the kernel");
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->size, 5U);
    const int flags = ::fcntl(r->fd.get(), F_GETFL);
    EXPECT_EQ(flags & O_NONBLOCK, 0);
    EXPECT_EQ(flags & O_ACCMODE, O_RDONLY);
    EXPECT_NE(::fcntl(r->fd.get(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST(CallerFile, SymlinkToRegularFileIsFollowed) {
    TempTree tree;
    tree.write("boot/vmlinuz-6.12", "kernel bytes");
    tree.symlink("vmlinuz-6.12", "boot/vmlinuz");
    auto r = open_regular_file(tree.root() / "boot/vmlinuz", "the kernel");
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->size, 12U);
}

// Without O_NONBLOCK this open would wait for a writer forever.
TEST(CallerFile, FifoIsRefusedWithoutBlocking) {
    TempTree tree;
    const auto fifo = tree.root() / "fifo";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    const std::string msg = refusal(fifo);
    EXPECT_NE(msg.find(fifo.string() + ": is a FIFO, not a regular file"), std::string::npos) << msg;
}

TEST(CallerFile, SymlinkToFifoIsRefusedAsTheFifo) {
    TempTree tree;
    ASSERT_EQ(::mkfifo((tree.root() / "fifo").c_str(), 0600), 0);
    tree.symlink("fifo", "link");
    const std::string msg = refusal(tree.root() / "link");
    EXPECT_NE(msg.find("is a FIFO"), std::string::npos) << msg;
}

TEST(CallerFile, CharacterDeviceIsRefused) {
    const std::string msg = refusal("/dev/null");
    EXPECT_NE(msg.find("/dev/null: is a character device, not a regular file"), std::string::npos) << msg;
}

TEST(CallerFile, DirectoryIsRefused) {
    TempTree tree;
    tree.mkdir("boot");
    const std::string msg = refusal(tree.root() / "boot");
    EXPECT_NE(msg.find("boot: is a directory, not a regular file"), std::string::npos) << msg;
}

TEST(CallerFile, MissingFileIsEnoentNamed) {
    TempTree tree;
    auto r = open_regular_file(tree.root() / "nope", "the initrd");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ENOENT);
    EXPECT_EQ(r.error().path, (tree.root() / "nope").string());
    const std::string msg = r.error().describe();
    EXPECT_NE(msg.find("cannot open the initrd"), std::string::npos) << msg;
    EXPECT_NE(msg.find("ENOENT"), std::string::npos) << msg;
}

// read_bzimage() is the first reader of Prepare's kernel: it must refuse a FIFO, not wait on it.
TEST(CallerFile, ReadBzimageRefusesFifo) {
    TempTree tree;
    const auto fifo = tree.root() / "fifo";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    auto r = read_bzimage(fifo);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().describe().find("is a FIFO"), std::string::npos) << r.error().describe();
}

// What Prepare checked is what Finalize loads: the fd is kept, and a path
// that names another file by the end of the checks is refused.
TEST(HeldFile, KeepsTheFileItOpenedAndSeesThePathMoveAway) {
    TempTree tree;
    tree.write("boot/vmlinuz-a", "checked");
    tree.write("boot/vmlinuz-b", "other");
    tree.symlink("vmlinuz-a", "boot/vmlinuz");
    auto held = HeldFile::open(tree.root() / "boot/vmlinuz", "the kernel");
    ASSERT_TRUE(held) << held.error().describe();
    EXPECT_TRUE(held->still_named_by_path());

    tree.remove("boot/vmlinuz");
    tree.symlink("vmlinuz-b", "boot/vmlinuz");  // re-pointed, as a kernel upgrade does
    auto moved = held->still_named_by_path();
    ASSERT_FALSE(moved);
    EXPECT_NE(moved.error().describe().find("names another file than the one checked"), std::string::npos)
        << moved.error().describe();
    char bytes[8] = {};
    ASSERT_EQ(::pread(held->fd(), bytes, 7, 0), 7);
    EXPECT_EQ(std::string(bytes), "checked") << "the held fd still reads the checked file";

    tree.remove("boot/vmlinuz");
    auto gone = held->still_named_by_path();
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, ENOENT);
}

TEST(HeldFile, CopiesShareOneFd) {
    TempTree tree;
    tree.write("initrd", "x");
    auto held = HeldFile::open(tree.root() / "initrd", "the initrd");
    ASSERT_TRUE(held);
    const HeldFile copy = *held;
    EXPECT_EQ(copy.fd(), held->fd());
    EXPECT_FALSE(HeldFile::open(tree.root() / "nope", "the initrd"));
}
