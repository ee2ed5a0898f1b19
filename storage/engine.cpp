#include "storage/engine.hpp"

#include <algorithm>
#include <queue>

namespace apsis::storage {

bool SyncPolicy::parse(const std::string& text, SyncPolicy* out, std::string* error) {
  if (text == "always" || text == "never") {
    out->mode = text == "always" ? Mode::always : Mode::never;
    return true;
  }
  const std::string prefix = "interval:";
  if (text.compare(0, prefix.size(), prefix) == 0) {
    std::string ms = text.substr(prefix.size());
    bool digits =
        !ms.empty() && ms.size() <= 7 && ms.find_first_not_of("0123456789") == std::string::npos;
    unsigned long v = digits ? std::stoul(ms) : 0;
    if (v >= 1 && v <= 3600000) {
      out->mode = Mode::interval;
      out->interval_ms = static_cast<uint32_t>(v);
      return true;
    }
    *error = "interval must be a whole number of milliseconds from 1 to 3600000, got '" + ms + "'";
    return false;
  }
  *error = "expected always, never or interval:<ms>, got '" + text + "'";
  return false;
}

std::string SyncPolicy::to_string() const {
  switch (mode) {
    case Mode::always:
      return "always";
    case Mode::never:
      return "never";
    case Mode::interval:
      return "interval:" + std::to_string(interval_ms);
  }
  return "?";
}

Status Engine::scrub(uint64_t* cursor, size_t max, ScrubStep* out) {
  constexpr uint64_t slices = 256;  // by the id's first byte
  do {
    const uint64_t s = *cursor % slices;
    IterateOptions io;
    io.end = Id::max();
    io.begin.bytes[0] = io.end.bytes[0] = uint8_t(s);
    io.with_payload = false;  // the checksum is verified all the same
    io.on_corrupt = [&](const Id& id) { out->corrupt.push_back(id), ++out->checked; };
    APSIS_TRY(iterate(io, [&](const Record&) { return ++out->checked, true; }));
    *cursor = (s + 1) % slices;
  } while (*cursor != 0 && out->checked < max);
  return Status::ok();
}

// The max + 1 smallest ids in range, kept in a max-heap while iterate() visits them: the
// extra one says whether there are more, and where the next page starts.
Status Engine::page(Id begin, Id end, size_t max, Page* out) {
  out->records.clear();
  out->more = false;
  max = std::max<size_t>(max, 1);
  std::priority_queue<Id> smallest;
  IterateOptions io;
  io.begin = begin;
  io.end = end;
  io.with_payload = false;
  const bool ordered = iterates_in_order();
  APSIS_TRY(iterate(io, [&](const Record& r) {
    if (smallest.size() <= max) {
      smallest.push(r.id);
    } else if (r.id < smallest.top()) {
      smallest.pop();
      smallest.push(r.id);
    }
    return !(ordered && smallest.size() > max);
  }));
  std::vector<Id> ids;
  for (; !smallest.empty(); smallest.pop()) ids.push_back(smallest.top());
  std::reverse(ids.begin(), ids.end());
  if (ids.size() > max) {
    out->more = true;
    out->next = ids.back();
    ids.pop_back();
  }
  for (const Id& id : ids) {
    RecordMeta m;
    Status s = lookup(id, &m);
    if (s.is_not_found() || s.is_corruption()) continue;  // erased meanwhile; scrub's job
    APSIS_TRY(s);
    out->records.push_back(std::move(m));
  }
  return Status::ok();
}

}  // namespace apsis::storage
