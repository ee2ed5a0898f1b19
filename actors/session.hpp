// SESSION (see interfaces.hpp): a client connection's stand-in among actors, for the
// requests that are not key operations (locks, stats, admin commands, versioned writes of a
// client that coordinates). It holds the leases it took, so that stopping it releases them:
// the binary frontend runs one per connection, the REST frontend one for all its requests.
#pragma once

#include "actors/interfaces.hpp"

namespace apsis {

/// A key operation's result as a binary-protocol response.
wire::Response from_result(const op_result& r);

session_actor::behavior_type session(session_actor::pointer self, lock_manager_actor locks,
                                     node_actor node);

}  // namespace apsis
