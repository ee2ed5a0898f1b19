// What two replicas exchange in an anti-entropy round (actors/anti_entropy.hpp): the range
// of ids they compare, and the (id, version) pairs one of them holds there; and the scan
// jobs ANTI_ENTROPY hands its scanner thread.
#pragma once

#include <caf/all.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "messages/types.hpp"  // inspect() of ids and versions

namespace apsis {

/// The ids two replicas compare in anti-entropy: those that backend (node_a, backend_a)
/// owns in group_a and that backend_b of the asked node owns in group_b.
struct ae_range {
  uint32_t group_a = 0;
  std::string node_a;
  uint32_t backend_a = 0;
  uint32_t group_b = 0;
  uint32_t backend_b = 0;
  uint64_t since_ms = 0;  ///< only versions written since then (0: all)
};

/// An id and the version a replica holds of it.
struct id_version {
  storage::Id id;
  storage::Version version;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ae_range& x) {
  return f(caf::meta::type_name("ae_range"), x.group_a, x.node_a, x.backend_a, x.group_b,
           x.backend_b, x.since_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, id_version& x) {
  return f(caf::meta::type_name("id_version"), x.id, x.version);
}

}  // namespace apsis

namespace apsis {

/// Work for ANTI_ENTROPY's scanner: engine scans, run on a thread of their own so that they
/// never hold one of the scheduler's threads (local only: it carries code).
struct scan_job {
  std::function<void()> work;
};
using scan_job_ptr = std::shared_ptr<scan_job>;

}  // namespace apsis

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(apsis::scan_job_ptr)
