#pragma once

// Small helpers shared by the integration tests (gtest and Poco JSON).

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include <string>

// Asserts that a Status or Result is OK, printing its message otherwise.
#define ASSERT_OK(expr)                                    \
  do {                                                     \
    const auto& _s = (expr);                               \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s.message(); \
  } while (0)

namespace treaty::harness {

// A JSON object body (throws on anything else: a test failure).
inline Poco::JSON::Object::Ptr ParseObject(const std::string& body) {
  Poco::JSON::Parser parser;
  return parser.parse(body).extract<Poco::JSON::Object::Ptr>();
}

}  // namespace treaty::harness
