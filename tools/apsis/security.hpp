// apsis passwd: a password's hash for a [[user]] table; the password of apsis --user
// (docs/security.md).
#pragma once

#include <string>

namespace apsis::cli {

/// Reads a password from stdin (asked twice, unechoed, on a terminal) and prints its hash;
/// the process's exit status.
int passwd();

/// Prints a new REST bearer token and the line for a [[user]] table's tokens (its hash).
int token();

/// The password for --user: the first line of `file`, or else APSIS_PASSWORD; false with
/// *error when there is none.
bool password_of(const std::string& file, std::string* password, std::string* error);

}  // namespace apsis::cli
