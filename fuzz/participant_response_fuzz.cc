// A participant's answer, whatever it is: the first two bytes choose the status, the rest is the
// body. The outcome follows the status alone and the detail stays short.

#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/json_text.h"
#include "coordinator/transport/http_branch_transport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  int status = 100 + (data[0] << 8 | data[1]) % 500;
  std::string body(reinterpret_cast<const char*>(data + 2), size - 2);
  treaty::core::BranchReply r =
      treaty::transport::HttpBranchTransport::ReplyFromResponse(status, body);
  if (r.outcome != treaty::core::ClassifyHttpStatus(status)) std::abort();
  if (r.detail.size() > 3 * 303) std::abort();                // short (U+FFFD is 3 bytes)
  if (treaty::ValidUtf8(r.detail) != r.detail) std::abort();  // it goes into JSON and logs
  return 0;
}
