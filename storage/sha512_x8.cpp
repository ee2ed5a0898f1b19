#include "storage/sha512_x8.hpp"

#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define APSIS_SHA512_X8 1
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which its own warnings then
// call uninitialized wherever they inline (a known false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

namespace apsis::storage {

#ifdef APSIS_SHA512_X8
namespace {

// FIPS 180-4, 4.2.3 and 5.3.5.
constexpr uint64_t k[80] = {
    0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
    0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
    0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
    0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
    0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
    0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
    0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
    0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
    0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
    0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
    0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
    0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
    0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
    0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817};
constexpr uint64_t iv[8] = {0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b,
                            0xa54ff53a5f1d36f1, 0x510e527fade682d1, 0x9b05688c2b3e6c1f,
                            0x1f83d9abfb41bd6b, 0x5be0cd19137e2179};

uint64_t load_be(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return __builtin_bswap64(v);
}

// Three-input bitwise functions (vpternlogq): the immediate is the truth table of (a, b, c).
constexpr int xor3 = 0x96, choose = 0xca, majority = 0xe8;

__attribute__((target("avx512f"))) void compress(const uint64_t (*block)[8], uint64_t (*h)[8]) {
  __m512i w[16];
  for (int j = 0; j < 16; ++j) w[j] = _mm512_loadu_si512(block[j]);
  __m512i s[8];
  for (int i = 0; i < 8; ++i) s[i] = _mm512_set1_epi64(static_cast<long long>(iv[i]));
  for (int t = 0; t < 80; ++t) {
    if (t >= 16) {  // the message schedule, in a ring of 16
      const __m512i w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
      const __m512i s0 = _mm512_ternarylogic_epi64(
          _mm512_ror_epi64(w15, 1), _mm512_ror_epi64(w15, 8), _mm512_srli_epi64(w15, 7), xor3);
      const __m512i s1 = _mm512_ternarylogic_epi64(
          _mm512_ror_epi64(w2, 19), _mm512_ror_epi64(w2, 61), _mm512_srli_epi64(w2, 6), xor3);
      w[t & 15] =
          _mm512_add_epi64(_mm512_add_epi64(w[t & 15], s0), _mm512_add_epi64(w[(t - 7) & 15], s1));
    }
    const __m512i a = s[0], e = s[4];
    const __m512i sum1 = _mm512_ternarylogic_epi64(_mm512_ror_epi64(e, 14), _mm512_ror_epi64(e, 18),
                                                   _mm512_ror_epi64(e, 41), xor3);
    const __m512i ch = _mm512_ternarylogic_epi64(e, s[5], s[6], choose);
    const __m512i t1 = _mm512_add_epi64(
        _mm512_add_epi64(s[7], sum1),
        _mm512_add_epi64(
            ch, _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(k[t])), w[t & 15])));
    const __m512i sum0 = _mm512_ternarylogic_epi64(_mm512_ror_epi64(a, 28), _mm512_ror_epi64(a, 34),
                                                   _mm512_ror_epi64(a, 39), xor3);
    const __m512i t2 = _mm512_add_epi64(sum0, _mm512_ternarylogic_epi64(a, s[1], s[2], majority));
    s[7] = s[6], s[6] = s[5], s[5] = s[4];
    s[4] = _mm512_add_epi64(s[3], t1);
    s[3] = s[2], s[2] = s[1], s[1] = s[0];
    s[0] = _mm512_add_epi64(t1, t2);
  }
  for (int i = 0; i < 8; ++i)
    _mm512_storeu_si512(h[i],
                        _mm512_add_epi64(s[i], _mm512_set1_epi64(static_cast<long long>(iv[i]))));
}

}  // namespace

bool sha512_x8_supported() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

void sha512_x8(const uint8_t* const* msgs, const size_t* lens, size_t n, uint8_t* const* out) {
  alignas(64) uint64_t block[16][8] = {};  // word j of lane l at [j][l]: a register a word
  for (size_t l = 0; l < n; ++l) {
    uint8_t padded[128] = {};
    std::memcpy(padded, msgs[l], lens[l]);
    padded[lens[l]] = 0x80;
    const uint64_t bits = uint64_t(lens[l]) * 8;
    for (int b = 0; b < 8; ++b) padded[127 - b] = uint8_t(bits >> (8 * b));
    for (int j = 0; j < 16; ++j) block[j][l] = load_be(padded + 8 * j);
  }
  alignas(64) uint64_t h[8][8];
  compress(block, h);
  for (size_t l = 0; l < n; ++l)
    for (int i = 0; i < 8; ++i) {
      const uint64_t v = __builtin_bswap64(h[i][l]);
      std::memcpy(out[l] + 8 * i, &v, 8);
    }
}

#else

bool sha512_x8_supported() { return false; }
void sha512_x8(const uint8_t* const*, const size_t*, size_t, uint8_t* const*) {}

#endif

}  // namespace apsis::storage
