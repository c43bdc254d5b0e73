#pragma once

// The versioned schema of the store. A migration is never edited once released: a change is a
// new migration with the next version.

#include <string_view>
#include <vector>

namespace treaty::store {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

// In ascending version order, without gaps.
const std::vector<Migration>& Migrations();

}  // namespace treaty::store
