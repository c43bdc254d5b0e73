#pragma once

// Small helpers shared by the integration tests (gtest and Poco JSON).

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include <string>

#include "common/status.h"

// Asserts that a Status or Result is OK, printing its message otherwise.
#define ASSERT_OK(expr)                                                        \
  do {                                                                         \
    const auto& _s = (expr);                                                   \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << ::treaty::harness::MessageOf(_s); \
  } while (0)

namespace treaty::harness {

inline std::string MessageOf(const Status& s) { return s.message(); }
template <typename T>
std::string MessageOf(const Result<T>& r) {
  return r.ok() ? std::string() : r.status().message();
}

// A JSON object body (throws on anything else: a test failure).
inline Poco::JSON::Object::Ptr ParseObject(const std::string& body) {
  Poco::JSON::Parser parser;
  return parser.parse(body).extract<Poco::JSON::Object::Ptr>();
}

}  // namespace treaty::harness
