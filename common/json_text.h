#pragma once

#include <string>
#include <string_view>

namespace treaty {

// `s` as a JSON string literal, quotes included; UTF-8 is kept as it is.
std::string JsonQuote(std::string_view s);

}  // namespace treaty
