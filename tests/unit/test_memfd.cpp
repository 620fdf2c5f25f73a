// Sealed memfds: content, seals, copies, facts and bounded reads, on real memfds.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "khod/luo/memfd.hpp"

using namespace khod;

TEST(Memfd, SealedHoldsTheBytesAndRefusesWrites) {
    auto fd = sealed_memfd("t", "hello");
    ASSERT_TRUE(fd) << fd.error().describe();
    auto text = read_whole(fd->get(), 100);
    ASSERT_TRUE(text);
    EXPECT_EQ(*text, "hello");
    EXPECT_LT(::write(fd->get(), "x", 1), 0);
    EXPECT_NE(::ftruncate(fd->get(), 0), 0);
    auto facts = memfd_facts(fd->get());
    ASSERT_TRUE(facts);
    EXPECT_EQ(facts->size, 5U);
    EXPECT_EQ(facts->seals, khod_memfd_seals());
}

TEST(Memfd, KhodSealsAreASubsetOfWhatMemfdLuoCarries) {
    // MEMFD_LUO_ALL_SEALS: SEAL|SHRINK|GROW|WRITE|FUTURE_WRITE|EXEC.
    const std::uint32_t all = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | 0x10U | 0x20U;
    EXPECT_EQ(khod_memfd_seals() & ~all, 0U);
}

TEST(Memfd, CopyTakesEverythingReadable) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    ASSERT_EQ(::write(p[1], "abc", 3), 3);
    ::close(p[1]);
    UniqueFd in(p[0]);
    auto fd = sealed_memfd_copy("c", in.get());
    ASSERT_TRUE(fd);
    EXPECT_EQ(*read_whole(fd->get(), 10), "abc");
}

TEST(Memfd, ReadWholeIsBounded) {
    auto fd = sealed_memfd("b", std::string(100, 'x'));
    ASSERT_TRUE(fd);
    EXPECT_FALSE(read_whole(fd->get(), 99));
    EXPECT_TRUE(read_whole(fd->get(), 100));
}

TEST(Memfd, FactsOfAFileWithoutSealsAndABadFd) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    UniqueFd a(p[0]), b(p[1]);
    auto facts = memfd_facts(a.get());
    ASSERT_TRUE(facts);
    EXPECT_EQ(facts->seals, 0U);
    EXPECT_FALSE(memfd_facts(-1));
}
