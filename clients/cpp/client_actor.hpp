// CLIENT (see actors/interfaces.hpp): a connection to a node's binary port as an actor.
// Callers `request(client, timeout, wire::Request{...})` from any actor and keep as many
// requests in flight as they like; each is answered with its response (or an error once the
// connection fails). An I/O thread of its own reads and writes the socket.
#pragma once

#include <memory>
#include <string>

#include "actors/interfaces.hpp"
#include "clients/cpp/client.hpp"

namespace apsis {

/// Connects (and says hello) synchronously, then spawns the actor; an empty handle with
/// *error set when the node cannot be reached.
client_actor spawn_client(caf::actor_system& sys, const ClientOptions& opts, std::string* error);

}  // namespace apsis
