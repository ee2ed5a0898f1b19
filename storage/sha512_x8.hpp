// Eight SHA-512 digests side by side, one per 64-bit lane of an AVX-512 register, for
// messages of one block (at most 111 bytes: a namespace, a zero and a key, as make_ids hashes).
// A key's digest is ~3,200 instructions through OpenSSL, a third of a GET's; here an id of a
// batch of 16 takes 72 ns against 180 one by one (`apsis-bench storage`, its "ids" line). Used only
// where the CPU has AVX-512F; checked against OpenSSL in tests/storage/id_test.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace apsis::storage {

/// The longest message one block holds (128 bytes less the 0x80 and the 16-byte length).
constexpr size_t sha512_one_block_max = 111;

/// Whether this CPU runs sha512_x8().
bool sha512_x8_supported();

/// msgs[i] (length lens[i] <= sha512_one_block_max) -> out[i] (64 bytes), for i < n <= 8.
void sha512_x8(const uint8_t* const* msgs, const size_t* lens, size_t n, uint8_t* const* out);

}  // namespace apsis::storage
