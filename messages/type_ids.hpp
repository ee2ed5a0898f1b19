// The type-ID block that registers every apsis message type and atom with CAF
// (cfg.add_message_types<caf::id_block::apsis>()).
#pragma once

#include "messages/anti_entropy.hpp"
#include "messages/frame.hpp"
#include "messages/route.hpp"
#include "messages/types.hpp"

// -- type-ID block: types, then atoms --------------------------------------

CAF_BEGIN_TYPE_ID_BLOCK(apsis, caf::first_custom_type_id)

CAF_ADD_TYPE_ID(apsis, (apsis::kv_op))
CAF_ADD_TYPE_ID(apsis, (apsis::op_result))
CAF_ADD_TYPE_ID(apsis, (apsis::replica_entry))
CAF_ADD_TYPE_ID(apsis, (apsis::op_batch))
CAF_ADD_TYPE_ID(apsis, (apsis::result_batch))
CAF_ADD_TYPE_ID(apsis, (apsis::lease))
CAF_ADD_TYPE_ID(apsis, (apsis::batch_sink_ptr))
CAF_ADD_TYPE_ID(apsis, (apsis::wire::Request))
CAF_ADD_TYPE_ID(apsis, (apsis::wire::Response))
CAF_ADD_TYPE_ID(apsis, (apsis::backend_points))
CAF_ADD_TYPE_ID(apsis, (apsis::node_entry))
CAF_ADD_TYPE_ID(apsis, (apsis::route_table))
CAF_ADD_TYPE_ID(apsis, (std::vector<std::string>))
CAF_ADD_TYPE_ID(apsis, (apsis::ae_range))
CAF_ADD_TYPE_ID(apsis, (apsis::id_version))
CAF_ADD_TYPE_ID(apsis, (std::vector<apsis::id_version>))
CAF_ADD_TYPE_ID(apsis, (std::vector<uint64_t>))
CAF_ADD_TYPE_ID(apsis, (std::vector<uint32_t>))
CAF_ADD_TYPE_ID(apsis, (apsis::scan_job_ptr))

CAF_ADD_ATOM(apsis, apsis::atom, exec, "exec")
CAF_ADD_ATOM(apsis, apsis::atom, apply, "apply")
CAF_ADD_ATOM(apsis, apsis::atom, lock, "lock")
CAF_ADD_ATOM(apsis, apsis::atom, unlock, "unlock")
CAF_ADD_ATOM(apsis, apsis::atom, expire, "expire")
CAF_ADD_ATOM(apsis, apsis::atom, stats, "stats")
CAF_ADD_ATOM(apsis, apsis::atom, reply, "reply")
CAF_ADD_ATOM(apsis, apsis::atom, closed, "closed")
CAF_ADD_ATOM(apsis, apsis::atom, join, "join")
CAF_ADD_ATOM(apsis, apsis::atom, gossip, "gossip")
CAF_ADD_ATOM(apsis, apsis::atom, routes, "routes")
CAF_ADD_ATOM(apsis, apsis::atom, connect, "connect")
CAF_ADD_ATOM(apsis, apsis::atom, tick, "tick")
CAF_ADD_ATOM(apsis, apsis::atom, digest, "digest")
CAF_ADD_ATOM(apsis, apsis::atom, keys, "keys")
CAF_ADD_ATOM(apsis, apsis::atom, step, "step")
CAF_ADD_ATOM(apsis, apsis::atom, merge, "merge")
CAF_ADD_ATOM(apsis, apsis::atom, migrate, "migrate")
CAF_ADD_ATOM(apsis, apsis::atom, recover, "recover")
CAF_ADD_ATOM(apsis, apsis::atom, admin, "admin")
CAF_ADD_ATOM(apsis, apsis::atom, advertise, "advertise")
CAF_ADD_ATOM(apsis, apsis::atom, purge, "purge")
CAF_ADD_ATOM(apsis, apsis::atom, scrub, "scrub")
CAF_ADD_ATOM(apsis, apsis::atom, flush, "flush")
CAF_ADD_ATOM(apsis, apsis::atom, round, "round")
CAF_ADD_ATOM(apsis, apsis::atom, scan, "scan")

CAF_END_TYPE_ID_BLOCK(apsis)
