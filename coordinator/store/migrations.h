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

// In ascending version order. Gaps are allowed: a version may be reserved by work on another
// branch, and the runner (PgStore::Migrate) applies each version not yet recorded in
// treaty.schema_migrations, so a migration must not depend on a lower version that may arrive
// later.
const std::vector<Migration>& Migrations();

}  // namespace treaty::store
