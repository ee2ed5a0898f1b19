// Large values: a value over the record limit is stored as chunks of 1 MiB, each a record of
// its own in a namespace users cannot name, and a manifest under the key itself, written last
// (the value becomes visible, with its version, only then). Each chunk replicates, is checked
// and repaired as any record; a reader of a range reads only the chunks it covers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "messages/types.hpp"

namespace apsis::large {

constexpr size_t chunk_size = 1u << 20;
/// The user_flags bit that marks a manifest (clients may not set it).
constexpr uint32_t manifest_flag = 1u << 31;

/// What a manifest's data part says.
struct Manifest {
  uint64_t size = 0;   ///< the value's bytes
  std::string upload;  ///< the upload's id: its chunks' keys hold it
  uint64_t chunks() const { return (size + chunk_size - 1) / chunk_size; }
  std::string encode() const;
  /// false on anything encode() did not write.
  static bool decode(std::string_view text, Manifest* out);
};

/// Whether a record is a large value's manifest.
inline bool is_manifest(const storage::Record& r) {
  return (r.user_flags & manifest_flag) && !r.tombstone;
}

/// A value's size: a manifest's (its flags and data part) is the large value's; anything
/// else's is its data part's, data_size.
uint64_t value_size(uint32_t user_flags, uint64_t data_size, std::string_view data);

/// A read that found a large value's manifest (messages/large.hpp): the error that says how
/// to read it (RESP and the binary protocol answer it); empty for anything else.
std::string read_refusal(const op_result& r);

/// A fresh upload id: 16 random hex digits (OpenSSL's RAND_bytes).
std::string new_upload();
/// Whether text is an upload id as new_upload() makes them.
bool valid_upload(std::string_view text);

/// The namespace that holds ns's chunks: one no user can name (names are [A-Za-z0-9_.-]), so
/// listings never show chunks.
std::string chunk_namespace(const std::string& ns);
/// A chunk's key: its upload's id and its index (chunk_op names them so).
std::string chunk_key(const std::string& upload, uint64_t index);
/// A chunk key's upload and index; false for a key chunk_key() did not make.
bool parse_chunk_key(std::string_view key, std::string* upload, uint64_t* index);

/// The operation that reads (kind get), writes (put, with data) or deletes chunk `index` of an
/// upload in ns. Chunks are named by the upload, not the key, so that a manifest renamed to
/// another key (RENAME) still finds them.
kv_op chunk_op(op_kind kind, const std::string& ns, const std::string& upload, uint64_t index);

}  // namespace apsis::large
