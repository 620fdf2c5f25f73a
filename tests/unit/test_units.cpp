#include <gtest/gtest.h>

#include "khod/base/units.hpp"

using namespace khod;

TEST(HumanSize, WholeUnitsAreExact) {
    EXPECT_EQ(human_size(0), "0 B");
    EXPECT_EQ(human_size(1023), "1023 B");
    EXPECT_EQ(human_size(16u << 20), "16 MiB");
    EXPECT_EQ(human_size(268435456), "256 MiB");
    EXPECT_EQ(human_size(1ull << 40), "1 TiB");
    EXPECT_EQ(human_size(462448), "451.6 KiB");
    EXPECT_EQ(human_size(UINT64_MAX), "16.0 EiB");
}

TEST(Memparse, SuffixesAndBases) {
    EXPECT_EQ(memparse("16M")->value, 16ull << 20);
    EXPECT_EQ(memparse("64m")->value, 64ull << 20);
    EXPECT_EQ(memparse("1G,2G")->value, 1ull << 30);
    EXPECT_EQ(memparse("1G,2G")->consumed, 2u);
    EXPECT_EQ(memparse("0x1000")->value, 0x1000u);
    EXPECT_EQ(memparse("010")->value, 8u);
    EXPECT_EQ(memparse("0")->value, 0u);
    EXPECT_EQ(memparse("4k")->value, 4096u);
    EXPECT_EQ(memparse("2T")->value, 2ull << 40);
}

TEST(Memparse, RejectsNoDigitsAndOverflow) {
    EXPECT_FALSE(memparse(""));
    EXPECT_FALSE(memparse("M"));
    EXPECT_FALSE(memparse("99999999999999999999"));
    EXPECT_FALSE(memparse("17E"));
}
