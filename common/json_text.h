#pragma once

#include <string>
#include <string_view>

namespace treaty {

// `s` as a JSON string literal, quotes included; UTF-8 is kept as it is, and bytes that are not
// well-formed UTF-8 become U+FFFD (see ValidUtf8), so the result is always valid JSON.
std::string JsonQuote(std::string_view s);

// `s` with every byte that is not part of a well-formed UTF-8 sequence (overlong forms,
// surrogates and code points beyond U+10FFFF included) replaced by U+FFFD. For text from outside
// (a request, a participant's answer) that ends up in JSON or logs.
std::string ValidUtf8(std::string_view s);

}  // namespace treaty
