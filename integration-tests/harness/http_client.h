#pragma once

// The tests' HTTP client is the project's own (common/http/http_client.h).

#include "common/http/http_client.h"

namespace treaty::harness {

using http::HttpCall;
using http::HttpReply;

}  // namespace treaty::harness
