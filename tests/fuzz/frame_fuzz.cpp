// libFuzzer: arbitrary bytes as binary-protocol frames, and every frame body as each kind of
// request, response, hello and error. Decoding must refuse or accept, never crash; what a
// request decodes to must encode back to the same body.
#include <cstdint>
#include <string>

#include "messages/frame.hpp"

using namespace apsis::wire;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  size_t pos = 0;
  Frame f;
  error_code code;
  std::string err;
  for (int i = 0; i < 1000 && decode_frame(in, &pos, &f, 1 << 16, &code, &err) == Decode::complete;
       ++i) {
    for (uint8_t op = 0; op <= 16; ++op) {
      Request q;
      if (decode_request(opcode(op), f.body, &q, &err, f.flags) && encode_request(q) != f.body)
        __builtin_trap();
      Response r;
      decode_response(opcode(op), f.body, &r, &err);
    }
    Hello h;
    decode_hello(f.body, &h, &err);
    std::string msg;
    decode_error(f.body, &code, &msg);
  }
  return 0;
}
