#include "common/json_text.h"

#include <Poco/JSONString.h>

namespace treaty {

std::string JsonQuote(std::string_view s) {
  // Without JSON_ESCAPE_UNICODE Poco leaves UTF-8 and '/' as they are: readable logs and URLs.
  return Poco::toJSON(std::string(s), Poco::JSON_WRAP_STRINGS);
}

}  // namespace treaty
