#include "messages/frame.hpp"

#include "messages/large.hpp"

#include <cstring>

#include "storage/record_codec.hpp"

namespace apsis::wire {

namespace {

using storage::codec::get_u16;
using storage::codec::get_u32;
using storage::codec::get_u64;

/// Appends little-endian integers and length-prefixed strings.
struct Writer {
  std::string& out;
  void u8(uint8_t v) { out += char(v); }
  void u16(uint16_t v) {
    char b[2];
    storage::codec::put_u16(b, v);
    out.append(b, 2);
  }
  void u32(uint32_t v) {
    char b[4];
    storage::codec::put_u32(b, v);
    out.append(b, 4);
  }
  void u64(uint64_t v) {
    char b[8];
    storage::codec::put_u64(b, v);
    out.append(b, 8);
  }
  void str16(std::string_view s) {
    u16(uint16_t(s.size()));
    out += s;
  }
  void str32(std::string_view s) {
    u32(uint32_t(s.size()));
    out += s;
  }
  void version(const storage::Version& v) {
    u64(v.stamp);
    u64(v.node);
  }
};

/// Reads the same, refusing to run past the end: every getter fails once anything is short.
struct Reader {
  std::string_view in;
  size_t pos = 0;
  bool ok = true;
  bool need(size_t n) {
    if (!ok || in.size() - pos < n) ok = false;
    return ok;
  }
  uint8_t u8() { return need(1) ? uint8_t(in[pos++]) : 0; }
  uint16_t u16() {
    if (!need(2)) return 0;
    uint16_t v = get_u16(in.data() + pos);
    pos += 2;
    return v;
  }
  uint32_t u32() {
    if (!need(4)) return 0;
    uint32_t v = get_u32(in.data() + pos);
    pos += 4;
    return v;
  }
  uint64_t u64() {
    if (!need(8)) return 0;
    uint64_t v = get_u64(in.data() + pos);
    pos += 8;
    return v;
  }
  std::string bytes(size_t n) {
    if (!need(n)) return {};
    std::string s(in.substr(pos, n));
    pos += n;
    return s;
  }
  std::string str16() { return bytes(u16()); }
  std::string str32() { return bytes(u32()); }
  storage::Version version() {
    storage::Version v;
    v.stamp = u64();
    v.node = u64();
    return v;
  }
  bool done(std::string* err) {
    if (ok && pos != in.size())
      ok = false, *err = "trailing bytes in frame body";
    else if (!ok)
      *err = "frame body truncated";
    return ok;
  }
};

bool has_key(opcode op) {
  return op != opcode::stat && op != opcode::ping && op != opcode::admin && op != opcode::list &&
         op != opcode::login;
}

}  // namespace

Decode decode_frame(std::string_view buf, size_t* pos, Frame* out, uint32_t max_frame,
                    error_code* code, std::string* err) {
  if (buf.size() - *pos < 4) return Decode::incomplete;
  uint32_t len = get_u32(buf.data() + *pos);
  if (len < header_size - 4) {
    *code = error_code::malformed;
    *err = "frame length " + std::to_string(len) + " is shorter than a header";
    return Decode::error;
  }
  if (len > max_frame) {
    *code = error_code::too_large;
    *err = "frame of " + std::to_string(len) + " bytes exceeds the limit of " +
           std::to_string(max_frame);
    return Decode::error;
  }
  if (buf.size() - *pos - 4 < len) return Decode::incomplete;
  const char* p = buf.data() + *pos + 4;
  uint8_t k = uint8_t(p[0]);
  if (k < uint8_t(kind::hello) || k > uint8_t(kind::error)) {
    *code = error_code::malformed;
    *err = "unknown frame kind " + std::to_string(k);
    return Decode::error;
  }
  out->k = kind(k);
  out->op = opcode(uint8_t(p[1]));
  out->flags = get_u16(p + 2);
  out->id = get_u64(p + 4);
  out->body.assign(p + 12, len - 12);
  *pos += 4 + len;
  return Decode::complete;
}

void encode_frame(const Frame& f, std::string& out) {
  Writer w{out};
  w.u32(uint32_t(header_size - 4 + f.body.size()));
  w.u8(uint8_t(f.k));
  w.u8(uint8_t(f.op));
  w.u16(f.flags);
  w.u64(f.id);
  out += f.body;
}

bool decode_request(opcode op, std::string_view body, Request* out, std::string* err,
                    uint16_t flags) {
  Reader r{body};
  out->op = op;
  if (has_key(op)) {
    out->ns = r.str16();
    out->key = r.str16();
  }
  auto write_body = [&](opcode w) {
    uint8_t c = r.u8();
    if (c > uint8_t(op_cond::if_version))
      return *err = "unknown condition " + std::to_string(c), false;
    out->cond = op_cond(c);
    if (out->cond == op_cond::if_version) out->expected = r.version();
    out->fence = r.u64();
    if (w == opcode::put) {
      out->expiry_ms = r.u64();
      out->user_flags = r.u32();
      out->json = r.str32();
      out->data = r.str32();
    }
    return true;
  };
  switch (op) {
    case opcode::get:
    case opcode::lookup:
    case opcode::stat:
    case opcode::ping:
      break;
    case opcode::put:
    case opcode::del:
      if (!write_body(op)) return false;
      break;
    case opcode::replica: {
      out->backend = r.u32();
      out->version = r.version();
      uint8_t w = r.u8();
      if (w != uint8_t(opcode::put) && w != uint8_t(opcode::del))
        return *err = "a replica write is a put or a del, not opcode " + std::to_string(w), false;
      out->inner = opcode(w);
      if (!write_body(out->inner)) return false;
      break;
    }
    case opcode::lock:
      out->lease_ms = r.u32();
      break;
    case opcode::unlock:
      out->token = r.u64();
      break;
    case opcode::admin:
      out->data = r.str32();
      break;
    case opcode::change: {
      out->change_kind = r.u8();
      if (out->change_kind > value_change::merge_patch)
        return *err = "unknown change " + std::to_string(out->change_kind), false;
      out->by = int64_t(r.u64());
      if (!write_body(opcode::del)) return false;  // cond, expected, fence
      out->expiry_ms = r.u64();
      out->data = r.str32();
      break;
    }
    case opcode::part:
      out->upload = r.str16();
      out->offset = r.u64();
      out->data = r.str32();
      break;
    case opcode::commit:
      out->upload = r.str16();
      out->length = r.u64();
      if (!write_body(opcode::del)) return false;  // cond, expected, fence
      out->expiry_ms = r.u64();
      break;
    case opcode::read:
      out->offset = r.u64();
      out->length = r.u64();
      break;
    case opcode::login:
      out->step = r.u8();
      if (out->step != 1 && out->step != 2)
        return *err = "a login has steps 1 and 2, not " + std::to_string(out->step), false;
      out->key = r.str16();
      out->data = r.str16();
      break;
    case opcode::list: {
      out->ns = r.str16();
      out->cursor = r.str16();
      out->limit = r.u32();
      out->match = r.str16();
      const uint8_t f = r.u8();
      if (f & ~3u) return *err = "unknown list flags " + std::to_string(f), false;
      out->payload = f & 1;
      out->tombstones = f & 2;
      out->version = r.version();
      break;
    }
    default:
      return *err = "unknown opcode " + std::to_string(int(op)), false;
  }
  if (flags & flag_groups) {
    if (op != opcode::get && op != opcode::lookup && op != opcode::put && op != opcode::del &&
        op != opcode::change)
      return *err = "only key requests name groups", false;
    uint8_t n = r.u8();
    if (n == 0) return *err = "the groups flag with no group", false;
    for (uint8_t i = 0; i < n; ++i) out->groups.push_back(r.u32());
  }
  return r.done(err);
}

std::string encode_request(const Request& q) {
  std::string out;
  Writer w{out};
  if (has_key(q.op)) {
    w.str16(q.ns);
    w.str16(q.key);
  }
  opcode write = q.op;
  if (q.op == opcode::part) {
    w.str16(q.upload);
    w.u64(q.offset);
    w.str32(q.data);
  } else if (q.op == opcode::commit) {
    w.str16(q.upload);
    w.u64(q.length);
    write = opcode::del;  // its condition and fence, as a del's
  } else if (q.op == opcode::read) {
    w.u64(q.offset);
    w.u64(q.length);
  } else if (q.op == opcode::login) {
    w.u8(q.step);
    w.str16(q.key);
    w.str16(q.data);
  }
  if (q.op == opcode::change) {
    w.u8(q.change_kind);
    w.u64(uint64_t(q.by));
    write = opcode::del;  // its condition and fence, as a del's
  }
  if (q.op == opcode::replica) {
    w.u32(q.backend);
    w.version(q.version);
    w.u8(uint8_t(q.inner));
    write = q.inner;
  }
  if (write == opcode::put || write == opcode::del) {
    w.u8(uint8_t(q.cond));
    if (q.cond == op_cond::if_version) w.version(q.expected);
    w.u64(q.fence);
    if (write == opcode::put) {
      w.u64(q.expiry_ms);
      w.u32(q.user_flags);
      w.str32(q.json);
      w.str32(q.data);
    }
    if (q.op == opcode::change) {
      w.u64(q.expiry_ms);
      w.str32(q.data);
    }
    if (q.op == opcode::commit) w.u64(q.expiry_ms);
  } else if (q.op == opcode::lock) {
    w.u32(q.lease_ms);
  } else if (q.op == opcode::unlock) {
    w.u64(q.token);
  } else if (q.op == opcode::admin) {
    w.str32(q.data);
  } else if (q.op == opcode::list) {
    w.str16(q.ns);
    w.str16(q.cursor);
    w.u32(q.limit);
    w.str16(q.match);
    w.u8(uint8_t((q.payload ? 1 : 0) | (q.tombstones ? 2 : 0)));
    w.version(q.version);
  }
  if (!q.groups.empty()) {
    const size_t n = std::min<size_t>(q.groups.size(), 255);
    w.u8(uint8_t(n));
    for (size_t i = 0; i < n; ++i) w.u32(q.groups[i]);
  }
  return out;
}

Response from_result(const op_result& r) {
  Response w;
  if (std::string why = large::read_refusal(r); !why.empty()) {  // read it in ranges instead
    w.status = op_status::invalid;
    w.message = std::move(why);
    w.version = r.version;
    w.replicas = r.replicas;
    return w;
  }
  w.status = r.status;
  w.message = r.message;
  w.version = r.version;
  w.existed = r.existed;
  w.expiry_ms = r.record.expiry_ms;
  w.user_flags = r.record.user_flags;
  w.json = r.record.json;
  w.data = r.record.data;
  w.json_size = r.json_size;
  w.data_size = r.data_size;
  w.replicas = r.replicas;
  return w;
}

std::string encode_response(opcode op, const Response& r) {
  std::string out;
  Writer w{out};
  w.u8(uint8_t(r.status));
  w.str16(r.message.substr(0, 65535));
  w.version(r.version);
  w.u8(r.existed);
  switch (op) {
    case opcode::get:
    case opcode::change:
      w.u64(r.expiry_ms);
      w.u32(r.user_flags);
      w.str32(r.json);
      w.str32(r.data);
      break;
    case opcode::lookup:
      w.u64(r.expiry_ms);
      w.u32(r.user_flags);
      w.u32(r.json_size);
      w.u32(r.data_size);
      break;
    case opcode::lock:
      w.u64(r.token);
      w.u64(r.expiry_ms);
      break;
    case opcode::stat:
    case opcode::admin:
      w.str32(r.data);
      break;
    case opcode::read:
      w.u64(r.expiry_ms);
      w.u32(r.user_flags);
      w.u64(r.total);
      w.str32(r.data);
      break;
    case opcode::login:
      w.u32(r.iterations);
      w.str16(r.salt);
      w.str16(r.nonce);
      break;
    case opcode::list:
      w.str16(r.cursor);
      w.u32(uint32_t(r.listed.size()));
      for (const auto& e : r.listed) {
        w.str16(e.meta.key);
        w.version(e.meta.version);
        w.u64(e.meta.expiry_ms);
        w.u32(e.meta.user_flags);
        w.u8(e.meta.tombstone);
        w.u32(e.meta.json_size);
        w.u32(e.meta.data_size);
        w.str32(e.json);
        w.str32(e.data);
      }
      break;
    default:
      break;
  }
  w.u16(uint16_t(std::min<size_t>(r.replicas.size(), 65535)));
  for (size_t i = 0; i < r.replicas.size() && i < 65535; ++i) {
    const auto& e = r.replicas[i];
    w.u32(e.group);
    w.str16(e.node);
    w.u32(e.backend);
    w.u8(uint8_t(e.status));
    w.version(e.version);
  }
  return out;
}

bool decode_response(opcode op, std::string_view body, Response* out, std::string* err) {
  Reader r{body};
  uint8_t s = r.u8();
  if (s > uint8_t(op_status::denied)) return *err = "unknown status " + std::to_string(s), false;
  out->status = op_status(s);
  out->message = r.str16();
  out->version = r.version();
  out->existed = r.u8() != 0;
  switch (op) {
    case opcode::get:
    case opcode::change:
      out->expiry_ms = r.u64();
      out->user_flags = r.u32();
      out->json = r.str32();
      out->data = r.str32();
      break;
    case opcode::lookup:
      out->expiry_ms = r.u64();
      out->user_flags = r.u32();
      out->json_size = r.u32();
      out->data_size = r.u32();
      break;
    case opcode::lock:
      out->token = r.u64();
      out->expiry_ms = r.u64();
      break;
    case opcode::stat:
    case opcode::admin:
      out->data = r.str32();
      break;
    case opcode::read:
      out->expiry_ms = r.u64();
      out->user_flags = r.u32();
      out->total = r.u64();
      out->data = r.str32();
      break;
    case opcode::login:
      out->iterations = r.u32();
      out->salt = r.str16();
      out->nonce = r.str16();
      break;
    case opcode::list: {
      out->cursor = r.str16();
      const uint32_t n = r.u32();
      out->listed.clear();
      for (uint32_t i = 0; i < n && r.ok; ++i) {
        listed_record e;
        e.meta.key = r.str16();
        e.meta.version = r.version();
        e.meta.expiry_ms = r.u64();
        e.meta.user_flags = r.u32();
        e.meta.tombstone = r.u8() != 0;
        e.meta.json_size = r.u32();
        e.meta.data_size = r.u32();
        e.json = r.str32();
        e.data = r.str32();
        out->listed.push_back(std::move(e));
      }
      break;
    }
    default:
      break;
  }
  uint16_t n = r.u16();
  out->replicas.clear();
  for (uint16_t i = 0; i < n && r.ok; ++i) {
    replica_entry e;
    e.group = r.u32();
    e.node = r.str16();
    e.backend = r.u32();
    uint8_t es = r.u8();
    if (es > uint8_t(op_status::denied)) return *err = "unknown replica status", false;
    e.status = op_status(es);
    e.version = r.version();
    out->replicas.push_back(std::move(e));
  }
  return r.done(err);
}

std::string encode_hello(const Hello& h) {
  std::string out;
  Writer w{out};
  w.u16(h.min_version);
  w.u16(h.max_version);
  w.str16(h.name);
  w.u32(h.max_frame);
  return out;
}

bool decode_hello(std::string_view body, Hello* out, std::string* err) {
  Reader r{body};
  out->min_version = r.u16();
  out->max_version = r.u16();
  out->name = r.str16();
  out->max_frame = r.u32();
  return r.done(err);
}

std::string encode_error(error_code code, const std::string& message) {
  std::string out;
  Writer w{out};
  w.u16(uint16_t(code));
  w.str16(message.substr(0, 65535));
  return out;
}

bool decode_error(std::string_view body, error_code* code, std::string* message) {
  Reader r{body};
  *code = error_code(r.u16());
  *message = r.str16();
  std::string err;
  return r.done(&err);
}

}  // namespace apsis::wire
