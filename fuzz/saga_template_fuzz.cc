// Saga payload templating: any JSON input fills a definition's placeholders or is refused naming
// the input path; never a crash, and every payload produced is valid JSON.

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "coordinator/saga/saga_definition.h"

namespace {

const treaty::saga::SagaDefinition& Definition() {
  static const treaty::saga::SagaDefinition def = [] {
    auto d = treaty::saga::ParseSagaDefinition(
        "saga: fuzz\n"
        "steps:\n"
        "  - name: a\n"
        "    action: http://127.0.0.1:9000/a\n"
        "    compensate: http://127.0.0.1:9000/a/undo\n"
        "    payload: { sku: \"${input.sku}\", qty: \"${input.qty}\", text: \"x ${input.sku} y\",\n"
        "               nested: { deep: \"${input.a.b.c}\" }, list: [\"${input.qty}\", 1] }\n"
        "  - name: b\n"
        "    after: [a]\n"
        "    action: http://127.0.0.1:9000/b\n"
        "    payload: \"${input.whole}\"\n",
        "fuzz.yaml", [](const std::string&) { return std::nullopt; });
    if (!d.ok()) {
      std::fprintf(stderr, "%s\n", d.status().message().c_str());
      std::abort();
    }
    return *d;
  }();
  return def;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  Poco::JSON::Object::Ptr input;
  try {
    Poco::JSON::Parser parser;
    Poco::Dynamic::Var v = parser.parse(text);
    if (v.type() != typeid(Poco::JSON::Object::Ptr)) return 0;
    input = v.extract<Poco::JSON::Object::Ptr>();
  } catch (...) {
    return 0;  // not JSON: the API refuses it before templating
  }
  auto branches = treaty::saga::Instantiate(Definition(), input);
  if (!branches.ok()) return 0;
  for (const auto& b : *branches) {
    try {
      // Any JSON value is a payload; Poco's parser wants a document, so wrap it.
      Poco::JSON::Parser parser;
      parser.parse("{\"payload\":" + b.payload_json + "}");
    } catch (...) {
      std::fprintf(stderr, "step %s: payload is not JSON: %s\n", b.id.c_str(),
                   b.payload_json.c_str());
      std::abort();  // a payload that is not JSON would reach a participant
    }
  }
  return 0;
}
