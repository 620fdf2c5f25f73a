#include <gtest/gtest.h>

#include "khod/base/cmdline.hpp"

using namespace khod;

TEST(Cmdline, SplitsKeysValuesAndBareWords) {
    auto c = Cmdline::parse("console=ttyS0 panic=-1 kho=on kho_scratch=16M,64M,32M quiet\n");
    ASSERT_EQ(c.params().size(), 5u);
    EXPECT_EQ(c.value("kho"), "on");
    EXPECT_EQ(c.value("kho_scratch"), "16M,64M,32M");
    EXPECT_TRUE(c.has("quiet"));
    EXPECT_FALSE(c.value("quiet"));
    EXPECT_FALSE(c.has("crashkernel"));
}

TEST(Cmdline, QuotesGroupSpacesAndAreDropped) {
    auto c = Cmdline::parse(R"(a="x y" "b=1 2" c=)");
    EXPECT_EQ(c.value("a"), "x y");
    EXPECT_EQ(c.value("b"), "1 2");
    EXPECT_EQ(c.value("c"), "");
    EXPECT_EQ(c.str(), R"(a="x y" b="1 2" c=)");
}

TEST(Cmdline, LastOccurrenceWinsAndDashEqualsUnderscore) {
    auto c = Cmdline::parse("kho=off kho-scratch=1G kho=on");
    EXPECT_EQ(c.value("kho"), "on");
    EXPECT_EQ(c.value("kho_scratch"), "1G");
}

TEST(Cmdline, WithReplacesEveryOccurrence) {
    auto c = Cmdline::parse("root=/dev/vda kho=off quiet kho=0");
    EXPECT_EQ(c.with("kho", "on"), "root=/dev/vda quiet kho=on");
    EXPECT_EQ(Cmdline::parse("").with("kho", "on"), "kho=on");
}

TEST(Kstrtobool, KernelSpellings) {
    for (const char* t : {"1", "y", "Y", "yes", "t", "true", "on", "ON", "e", "enable"})
        EXPECT_EQ(kstrtobool(t), true) << t;
    for (const char* f : {"0", "n", "no", "f", "false", "off", "Off", "d", "disable"})
        EXPECT_EQ(kstrtobool(f), false) << f;
    for (const char* bad : {"", "o", "ox", "2", "maybe"}) EXPECT_FALSE(kstrtobool(bad)) << bad;
}
