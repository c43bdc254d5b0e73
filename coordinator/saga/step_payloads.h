#pragma once

// A saga step's payload may name the outputs of the steps before it:
// ${steps.<step>.output} (the whole answer) or ${steps.<step>.output.a.b} (a field of it). The
// processor fills them just before each call, from the outputs stored with the op states; this
// header is what it needs of that, without reading any JSON itself.

#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace treaty::core {

class StepPayloads {
 public:
  virtual ~StepPayloads() = default;

  // `payload` (JSON) with every ${steps.<step>.output...} filled from `outputs` (step name -> its
  // output, JSON). A string that is exactly one placeholder takes the value with its JSON type;
  // inside a longer string the value's text is spliced in. A step with no output, or a path its
  // output lacks, is InvalidArgument naming it ("steps.reserve.output.id is missing"), or null
  // when `missing_as_null`. Thread-safe.
  virtual Result<std::string> Render(const std::string& payload,
                                     const std::map<std::string, std::string>& outputs,
                                     bool missing_as_null) const = 0;
};

// The implementation over Poco's JSON (step_payloads.cc). Lives for the program's life.
const StepPayloads& JsonStepPayloads();

// Whether `payload` has a ${steps...} placeholder at all (most have none: nothing to fill).
bool NamesStepOutputs(const std::string& payload);

// The steps that `text` (a payload's JSON, or one YAML scalar) names in ${steps.<step>.output...}
// placeholders, in order. InvalidArgument for a ${steps...} placeholder of another shape.
Result<std::vector<std::string>> StepOutputReferences(const std::string& text);

}  // namespace treaty::core
