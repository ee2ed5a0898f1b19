#include "messages/resp.hpp"

#include <gtest/gtest.h>

namespace apsis::resp {
namespace {

std::vector<std::vector<std::string>> all(const std::string& in, Parse* last, std::string* err) {
  std::vector<std::vector<std::string>> out;
  size_t pos = 0;
  std::vector<std::string> args;
  while ((*last = parse_command(in, &pos, &args, err)) == Parse::complete) out.push_back(args);
  return out;
}

TEST(Resp, ParsesPipelinedArraysAndInlineCommands) {
  Parse last;
  std::string err;
  auto cmds = all("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n*1\r\n$4\r\nPING\r\nGET  k\r\n",
                  &last, &err);
  ASSERT_EQ(cmds.size(), 3u);
  EXPECT_EQ(cmds[0], (std::vector<std::string>{"SET", "k", "a\r\nb"}));  // binary-safe
  EXPECT_EQ(cmds[1], (std::vector<std::string>{"PING"}));
  EXPECT_EQ(cmds[2], (std::vector<std::string>{"GET", "k"}));
  EXPECT_EQ(last, Parse::incomplete);
}

TEST(Resp, EveryPrefixOfACommandIsIncompleteNotAnError) {
  std::string cmd = "*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n";
  for (size_t n = 0; n < cmd.size(); ++n) {
    size_t pos = 0;
    std::vector<std::string> args;
    std::string err;
    EXPECT_EQ(parse_command(cmd.substr(0, n), &pos, &args, &err), Parse::incomplete) << n;
    EXPECT_EQ(pos, 0u);
  }
}

TEST(Resp, MalformedAndOversizedInputIsAnError) {
  Limits small;
  small.max_bulk = 8;
  small.max_args = 4;
  small.max_inline = 16;
  for (std::string bad : std::vector<std::string>{
           "*1\r\n$x\r\n", "*1\r\n:1\r\n", "*1\r\n$1\r\nab\r\n", "*5\r\n", "*1\r\n$9\r\n",
           std::string(17, 'a'), "*-\r\n", "*1\r\n$1234567890123456789\r\n",
           "*9999999999999999999\r\n", "*1\r\n$1\rx\r\n", "*1\r\n$-1\r\n", "*1 \r\n",
           "*" + std::string(33, '1')}) {
    size_t pos = 0;
    std::vector<std::string> args;
    std::string err;
    EXPECT_EQ(parse_command(bad, &pos, &args, &err, small), Parse::error) << bad;
    EXPECT_FALSE(err.empty());
  }
}

// An argument over the limit: the command is dropped as its bytes arrive, in any pieces,
// and the next command parses as if nothing had happened.
TEST(Resp, AnOversizedArgumentIsDroppedAndTheStreamGoesOn) {
  Limits small;
  small.max_bulk = 8;
  const std::string stream =
      "*4\r\n$3\r\nSET\r\n$12\r\n0123456789ab\r\n$2\r\nk2\r\n"
      "$20\r\n01234567890123456789\r\n*1\r\n$4\r\nPING\r\n";
  for (size_t piece : {size_t(1), size_t(5), stream.size()}) {
    std::string buf;
    size_t pos = 0, fed = 0, peak = 0;
    Skip skip;
    std::vector<std::string> args;
    std::string err, refused;
    std::vector<std::vector<std::string>> commands;
    for (int guard = 0; guard < 100000 && (fed < stream.size() || pos < buf.size()); ++guard) {
      Parse r = skip.active() ? skip.drain(buf, &pos, &err)
                              : parse_command(buf, &pos, &args, &err, small, &skip);
      if (r == Parse::oversized) {
        refused = err;
        continue;
      }
      ASSERT_NE(r, Parse::error) << err;
      if (r == Parse::complete && !refused.empty()) {
        commands.push_back({"refused"});
        refused.clear();
      } else if (r == Parse::complete) {
        commands.push_back(args);
      } else {  // incomplete: the next piece
        buf.erase(0, pos), pos = 0;
        buf += stream.substr(fed, piece);
        fed = std::min(stream.size(), fed + piece);
        peak = std::max(peak, buf.size());
      }
    }
    ASSERT_EQ(commands.size(), 2u) << "pieces of " << piece;
    EXPECT_EQ(commands[0], std::vector<std::string>{"refused"});
    EXPECT_EQ(commands[1], std::vector<std::string>{"PING"});
    if (piece < 10) {
      EXPECT_LT(peak, 40u) << "what is dropped is not kept";
    }
  }
}

TEST(Resp, EncodesReplies) {
  std::string out;
  simple(out, "OK");
  error(out, "ERR bad\r\nthing");
  integer(out, -2);
  bulk(out, "hi");
  null_bulk(out);
  array(out, 2);
  EXPECT_EQ(out, "+OK\r\n-ERR bad  thing\r\n:-2\r\n$2\r\nhi\r\n$-1\r\n*2\r\n");
}

}  // namespace
}  // namespace apsis::resp
