// Large values through HTTP (messages/large.hpp): an upload read a chunk at a time from the
// socket, each chunk written as it fills (one in flight, so memory is a chunk or two), then
// the manifest; and a download or a range of one, each chunk read and sent as the socket
// takes it. The connection hands over its socket and buffer and gets them back in `done`.
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <functional>
#include <memory>
#include <optional>

#include "frontends/rmw.hpp"
#include "frontends/rounds.hpp"
#include "messages/large.hpp"
#include "messages/stream.hpp"

namespace apsis::frontend {

namespace http = boost::beast::http;

/// Deletes the chunks [0, count) of an upload, in the background (best effort: a chunk left
/// behind is space, never a visible value).
inline void drop_chunks(const Coordinator& c, asio::any_io_executor ex, const std::string& ns,
                        const std::string& upload, uint64_t count) {
  for (uint64_t from = 0; from < count; from += 256) {
    op_batch ops;
    for (uint64_t i = from; i < std::min(count, from + 256); ++i)
      ops.push_back(large::chunk_op(op_kind::remove, ns, upload, i));
    exec(c, ex, std::move(ops), [](result_batch) {});
  }
}

/// Writes an upload's manifest (`put`: the key, its conditions, expiry and policy) after a read
/// of what the key held, in one batch (in that order on each replica); a large value it
/// replaces has its chunks dropped. done(the manifest write's result).
inline void write_manifest(const Coordinator& c, asio::any_io_executor ex, const std::string& ns,
                           kv_op put, uint64_t size, const std::string& upload,
                           std::function<void(op_result)> done) {
  kv_op read;
  read.kind = op_kind::get;
  read.id = put.id;
  read.key = put.key;
  read.groups = put.groups;
  put.kind = op_kind::put;
  put.data = large::Manifest{size, upload}.encode();
  put.json.clear();
  put.user_flags |= large::manifest_flag;
  exec(c, ex, op_batch{std::move(read), std::move(put)}, [c, ex, ns, upload, done](result_batch r) {
    large::Manifest old;
    if (r.size() == 2 && r[1].status == op_status::ok && r[0].status == op_status::ok &&
        large::is_manifest(r[0].record) && large::Manifest::decode(r[0].record.data, &old) &&
        old.upload != upload)
      drop_chunks(c, ex, ns, old.upload, old.chunks());
    done(r.size() == 2 ? std::move(r[1]) : op_result{});
  });
}

/// Commits an upload: first checks that every part of a value of `size` bytes is there, whole
/// (looked up 256 at a time), then write_manifest(). A missing or short part is `invalid`,
/// naming it, and nothing is written.
inline void commit_upload(const Coordinator& c, asio::any_io_executor ex, const std::string& ns,
                          kv_op put, uint64_t size, const std::string& upload,
                          std::function<void(op_result)> done) {
  const uint64_t parts = large::Manifest{size, upload}.chunks();
  auto checked = std::make_shared<uint64_t>(0);
  rounds(c, ex, [=](result_batch* got, op_batch* ops) {
    for (size_t i = 0; got && i < got->size(); ++i) {
      const op_result& r = (*got)[i];
      const uint64_t index = *checked + i;
      const uint64_t want = std::min<uint64_t>(large::chunk_size, size - index * large::chunk_size);
      if (r.status == op_status::ok && r.data_size == want) continue;
      op_result refused;
      refused.status = op_status::invalid;
      refused.message = "part " + std::to_string(index);
      refused.message += r.status == op_status::not_found ? " is missing"
                         : r.status == op_status::ok ? " holds " + std::to_string(r.data_size) +
                                                           " bytes, not " + std::to_string(want)
                                                     : ": " + std::string(to_string(r.status));
      return done(std::move(refused));
    }
    if (got) *checked += got->size();
    if (*checked < parts) {
      for (uint64_t i = *checked; i < std::min(parts, *checked + 256); ++i)
        ops->push_back(large::chunk_op(op_kind::lookup, ns, upload, i));
      return;
    }
    write_manifest(c, ex, ns, put, size, upload, done);
  });
}

/// Bytes [offset, offset + length) of a key's value, plain or large (the chunks they cover,
/// read in one batch): the key's result (its data replaced by the bytes) and the value's size.
inline void read_range(const Coordinator& c, asio::any_io_executor ex, const std::string& ns,
                       kv_op get, uint64_t offset, uint64_t length,
                       std::function<void(op_result, uint64_t)> done) {
  exec(c, ex, {std::move(get)}, [=](result_batch r) {
    op_result& got = r.at(0);
    large::Manifest m;
    const bool is_large = got.status == op_status::ok && large::is_manifest(got.record) &&
                          large::Manifest::decode(got.record.data, &m);
    const uint64_t total = is_large ? m.size : got.record.data.size();
    if (got.status == op_status::ok && offset > total) {
      got.status = op_status::invalid;
      got.message = "offset " + std::to_string(offset) + " is past the end of the value (" +
                    std::to_string(total) + " bytes)";
    }
    if (got.status != op_status::ok) return done(std::move(got), total);
    const uint64_t end = offset + std::min(length, total - offset);
    if (!is_large) {
      got.record.data = got.record.data.substr(size_t(offset), size_t(end - offset));
      return done(std::move(got), total);
    }
    op_batch chunks;
    for (uint64_t i = offset / large::chunk_size;
         offset < end && i <= (end - 1) / large::chunk_size; ++i)
      chunks.push_back(large::chunk_op(op_kind::get, ns, m.upload, i));
    auto head = std::make_shared<op_result>(std::move(got));
    exec(c, ex, std::move(chunks), [=](result_batch parts) {
      std::string out;
      uint64_t at = offset;
      for (const auto& p : parts) {
        const uint64_t base = (at / large::chunk_size) * large::chunk_size;
        if (p.status != op_status::ok || base + p.record.data.size() <= at) {
          head->status = p.status == op_status::ok ? op_status::corruption : p.status;
          head->message = "a chunk of the large value could not be read";
          return done(std::move(*head), total);
        }
        const uint64_t stop = std::min(end, base + p.record.data.size());
        out.append(p.record.data, size_t(at - base), size_t(stop - at));
        at = stop;
      }
      head->record.data = std::move(out);
      done(std::move(*head), total);
    });
  });
}

class Upload : public std::enable_shared_from_this<Upload> {
 public:
  using Parser = http::request_parser<http::buffer_body>;
  /// The manifest's result; none when the connection failed (close it).
  using Done = std::function<void(std::optional<op_result>)>;

  /// `header`: the parser that has read the request's header (its body is read here, up to
  /// `limit` bytes). `commit`: the routed PUT (key, conditions, expiry, policy), written last
  /// as the manifest.
  Upload(Stream& sock, boost::beast::flat_buffer& buf,
         http::request_parser<http::string_body>&& header, uint64_t limit, Coordinator c,
         std::string ns, kv_op commit, std::function<void()> progress, Done done)
      : sock_(sock),
        buf_(buf),
        parser_(std::move(header)),
        c_(std::move(c)),
        ns_(std::move(ns)),
        commit_(std::move(commit)),
        progress_(std::move(progress)),
        done_(std::move(done)) {
    parser_.body_limit(limit);
  }

  /// With a Content-Length the body is read straight into the chunk (what came with the
  /// header first), a chunk per read; a chunked body goes through the parser.
  void start() {
    if (auto length = parser_.content_length()) {
      raw_left_ = *length;
      chunk_.resize(large::chunk_size);
      const size_t n = size_t(std::min<uint64_t>(buf_.size(), *raw_left_));
      boost::asio::buffer_copy(boost::asio::buffer(chunk_), buf_.data(), n);
      buf_.consume(n);
      return on_raw({}, n);
    }
    read_more();
  }

 private:
  bool body_done() const { return raw_left_ ? *raw_left_ == 0 : parser_.is_done(); }

  void read_raw() {
    if (chunk_.size() != large::chunk_size) chunk_.resize(large::chunk_size);
    const size_t want = size_t(std::min<uint64_t>(large::chunk_size - filled_, *raw_left_));
    asio::async_read(sock_, asio::buffer(chunk_.data() + filled_, want),
                     [self = shared_from_this()](boost::beast::error_code ec, size_t n) {
                       self->on_raw(ec, n);
                     });
  }

  void on_raw(boost::beast::error_code ec, size_t n) {
    if (ec) return fail(std::nullopt);  // the client went away: nothing becomes visible
    filled_ += n;
    *raw_left_ -= n;
    progress_();
    if (filled_ == large::chunk_size || (*raw_left_ == 0 && filled_ > 0)) return write_chunk();
    if (*raw_left_ == 0) return commit();
    read_raw();
  }

  void read_more() {
    if (chunk_.size() != large::chunk_size) chunk_.resize(large::chunk_size);
    auto& body = parser_.get().body();
    body.data = chunk_.data() + filled_;
    body.size = large::chunk_size - filled_;
    http::async_read_some(
        sock_, buf_, parser_,
        [self = shared_from_this()](boost::beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(boost::beast::error_code ec) {
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return fail(std::nullopt);  // the client went away: nothing becomes visible
    filled_ = large::chunk_size - parser_.get().body().size;
    progress_();
    if (filled_ == large::chunk_size || (parser_.is_done() && filled_ > 0)) return write_chunk();
    if (parser_.is_done()) return commit();
    read_more();
  }

  void write_chunk() {
    kv_op op = large::chunk_op(op_kind::put, ns_, upload_, written_);
    chunk_.resize(filled_);
    op.data = std::move(chunk_);
    op.policy = commit_.policy;
    op.groups = commit_.groups;
    size_ += filled_;
    filled_ = 0;
    ++written_;
    exec(c_, sock_.get_executor(), {std::move(op)}, [self = shared_from_this()](result_batch r) {
      if (r.at(0).status != op_status::ok) return self->fail(std::move(r[0]));
      if (self->body_done()) return self->commit();
      self->raw_left_ ? self->read_raw() : self->read_more();
    });
  }

  void commit() {
    commit_upload(c_, sock_.get_executor(), ns_, commit_, size_, upload_,
                  [self = shared_from_this()](op_result r) {
                    if (r.status != op_status::ok) return self->fail(std::move(r));
                    self->done_(std::move(r));
                  });
  }

  void fail(std::optional<op_result> why) {
    drop_chunks(c_, sock_.get_executor(), ns_, upload_, written_);
    done_(std::move(why));
  }

  Stream& sock_;
  boost::beast::flat_buffer& buf_;
  Parser parser_;
  Coordinator c_;
  std::string ns_;
  kv_op commit_;
  std::function<void()> progress_;
  Done done_;
  std::string upload_ = large::new_upload();
  std::string chunk_;
  size_t filled_ = 0;
  uint64_t written_ = 0, size_ = 0;
  std::optional<uint64_t> raw_left_;  ///< with a Content-Length: its bytes still to read
};

/// Sends bytes [first, last] of a large value (its response head already written), a chunk
/// at a time, reading the next chunk while the socket takes the one before (two in memory at
/// most); done(true) once all went, done(false) when a chunk could not be read or the socket
/// failed (the client then sees a body shorter than its Content-Length: close).
class Download : public std::enable_shared_from_this<Download> {
 public:
  Download(Stream& sock, Coordinator c, std::string ns, large::Manifest m, uint64_t first,
           uint64_t last, std::function<void()> progress, std::function<void(bool)> done)
      : sock_(sock),
        c_(std::move(c)),
        ns_(std::move(ns)),
        m_(std::move(m)),
        at_(first),
        last_(last),
        fetch_at_(first / large::chunk_size),
        progress_(std::move(progress)),
        done_(std::move(done)) {}

  void start() { fetch(); }

 private:
  /// Reads the next chunk not read yet, unless one waits already.
  void fetch() {
    if (fetching_ || ahead_ || fetch_at_ > last_ / large::chunk_size) return;
    fetching_ = true;
    exec(c_, sock_.get_executor(), {large::chunk_op(op_kind::get, ns_, m_.upload, fetch_at_)},
         [self = shared_from_this()](result_batch r) {
           self->fetching_ = false;
           if (r.at(0).status != op_status::ok) return self->finish(false);
           self->ahead_ = std::move(r[0].record.data);
           ++self->fetch_at_;
           self->send();
         });
  }

  /// Writes the chunk that waits, if the socket is free, then reads the one after it.
  void send() {
    if (writing_ || !ahead_) return;
    current_ = std::move(*ahead_);
    ahead_.reset();
    const uint64_t base = (fetch_at_ - 1) * large::chunk_size;
    const uint64_t end = std::min(last_ + 1, base + current_.size());
    if (end <= at_) return finish(false);  // a chunk shorter than the manifest says
    writing_ = true;
    asio::async_write(sock_, asio::buffer(current_.data() + (at_ - base), size_t(end - at_)),
                      [self = shared_from_this(), end](boost::beast::error_code ec, size_t) {
                        self->writing_ = false;
                        if (ec) return self->finish(false);
                        self->at_ = end;
                        self->progress_();
                        if (self->at_ > self->last_) return self->finish(true);
                        self->send();
                        self->fetch();
                      });
    fetch();
  }

  void finish(bool ok) {
    if (finished_ || (writing_ && !ok)) return (void)(failed_ = failed_ || !ok);
    finished_ = true;
    done_(ok && !failed_);
  }

  Stream& sock_;
  Coordinator c_;
  std::string ns_;
  large::Manifest m_;
  uint64_t at_, last_, fetch_at_;
  std::function<void()> progress_;
  std::function<void(bool)> done_;
  std::string current_;               ///< the chunk the socket is taking
  std::optional<std::string> ahead_;  ///< the next one, read already
  bool fetching_ = false, writing_ = false, finished_ = false, failed_ = false;
};

}  // namespace apsis::frontend
