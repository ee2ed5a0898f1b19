// SESSION (see interfaces.hpp): a client connection's holder of leases among actors. It takes
// and ends leases for its connection, so that stopping it when the connection closes releases
// them: the binary frontend runs one per connection, the REST frontend one for all its
// requests.
#pragma once

#include "actors/interfaces.hpp"

namespace apsis {

session_actor::behavior_type session(session_actor::pointer self, lock_manager_actor locks);

}  // namespace apsis
