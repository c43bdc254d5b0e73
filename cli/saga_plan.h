#pragma once

// `treatyctl saga plan FILE --input JSON`: what a saga definition would do with that input,
// without calling anything: its steps in DAG order, each call's URL and payload as it would be
// sent (outputs of earlier steps shown as the placeholders they are until the call), each step's
// timeout and retry policy, and the order compensation would undo them in.

#include <ostream>
#include <string>

#include "config/config_reader.h"

namespace treaty::cli {

// Prints the plan of the definition in `file` for `input_json` to `out`. 0 when it could be
// planned; 2 (after printing why to `err`) when the file or the input is not valid.
int PrintSagaPlan(const std::string& file, const std::string& input_json, const Environment& env,
                  std::ostream& out, std::ostream& err);

}  // namespace treaty::cli
