// apsis passwd: a password's hash for a [[user]] table (docs/security.md).
#pragma once

namespace apsis::cli {

/// Reads a password from stdin (asked twice, unechoed, on a terminal) and prints its hash;
/// the process's exit status.
int passwd();

}  // namespace apsis::cli
