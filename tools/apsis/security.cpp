#include "tools/apsis/security.hpp"

#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "config/users.hpp"

namespace apsis::cli {

namespace {

/// One line of stdin; on a terminal asked with `prompt` and not echoed.
bool read_secret(const char* prompt, std::string* out) {
  const bool tty = isatty(STDIN_FILENO);
  termios old{};
  if (tty) {
    std::cerr << prompt << std::flush;
    tcgetattr(STDIN_FILENO, &old);
    termios quiet = old;
    quiet.c_lflag &= ~tcflag_t(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  const bool ok = bool(std::getline(std::cin, *out));
  if (tty) {
    tcsetattr(STDIN_FILENO, TCSANOW, &old);
    std::cerr << "\n";
  }
  return ok;
}

}  // namespace

int passwd() {
  std::string password, again;
  if (!read_secret("password: ", &password) || password.empty())
    return std::cerr << "apsis passwd: no password on stdin\n", 2;
  if (isatty(STDIN_FILENO) && (!read_secret("again: ", &again) || again != password))
    return std::cerr << "apsis passwd: the two differ\n", 2;
  std::cout << config::hash_password(password) << "\n";
  return 0;
}

bool password_of(const std::string& file, std::string* password, std::string* error) {
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in || !std::getline(in, *password) || password->empty())
      return *error = "--password-file " + file + ": no password on its first line", false;
    return true;
  }
  if (const char* env = std::getenv("APSIS_PASSWORD"); env && *env) return *password = env, true;
  return *error = "--user needs a password: --password-file F or APSIS_PASSWORD", false;
}

int token() {
  const std::string t = config::new_token();
  std::cout << "token: " << t << "\n"
            << "for the user's [[user]] table: tokens = [\"" << config::token_hash(t) << "\"]\n";
  return 0;
}

}  // namespace apsis::cli
