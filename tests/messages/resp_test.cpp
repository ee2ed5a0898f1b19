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
  for (std::string bad :
       std::vector<std::string>{"*1\r\n$x\r\n", "*1\r\n:1\r\n", "*1\r\n$1\r\nab\r\n", "*5\r\n",
                                "*1\r\n$9\r\n", std::string(17, 'a'), "*-\r\n"}) {
    size_t pos = 0;
    std::vector<std::string> args;
    std::string err;
    EXPECT_EQ(parse_command(bad, &pos, &args, &err, small), Parse::error) << bad;
    EXPECT_FALSE(err.empty());
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
