// Sealed memfds: what LUO carries (shmem, not hugetlb) and how khod's
// manifest and khoctl's copies of files travel.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "khod/base/fd.hpp"
#include "khod/base/result.hpp"

namespace khod {

// The seals khod puts on the memfds it makes: no resize, no write, no reseal.
// memfd_luo carries them.
std::uint32_t khod_memfd_seals();

// A memfd holding bytes, sealed with khod_memfd_seals().
Result<UniqueFd> sealed_memfd(const std::string& name, std::string_view bytes);
// A memfd with a copy of everything readable from fd, sealed likewise.
Result<UniqueFd> sealed_memfd_copy(const std::string& name, int fd);
// Size (fstat) and seals (F_GET_SEALS; 0 where the file has none) of fd.
struct MemfdFacts {
    std::uint64_t size = 0;
    std::uint32_t seals = 0;
};
Result<MemfdFacts> memfd_facts(int fd);
// Up to max bytes of fd from offset 0 (pread); an error when there are more.
Result<std::string> read_whole(int fd, std::size_t max);

}  // namespace khod
