#pragma once

// The barrier in SQL: the C++ kit's barrier (tcc/barrier.h) as PL/pgSQL functions in a service's
// own database, so a participant in any language gets the same guarantees with one SQL call
// inside its own transaction:
//
//   SELECT treaty.barrier_enter(gid, branch_id, op);   -- in the transaction of the change
//
// answers 'applied' (run the business change, then commit), 'duplicate' or 'null_compensation'
// (do nothing, commit, answer 200), or 'hanging' (a try or action after its cancel or
// compensation: do nothing, answer 409). An op other than try, confirm, cancel, action and
// compensate, or an empty gid or branch id, raises SQLSTATE 22023 (invalid_parameter_value).
//
// It writes the same rows as the kit, in the same table (public.treaty_barrier, the table the
// kit creates under the default search_path), by the same rules: a service may mix both, and a
// cancel through one sees the try made through the other. `treatyctl barrier install` runs
// Script(); running it again is harmless (IF NOT EXISTS, CREATE OR REPLACE, under an advisory
// lock so concurrent installs do not collide).

namespace treaty::participant {

class SqlBarrier {
 public:
  // The version of the functions Script() installs; treaty.barrier_version() returns it.
  static constexpr int kVersion = 1;

  // The whole installation, one transaction (BEGIN ... COMMIT), for libpq or psql.
  static const char* Script();
};

}  // namespace treaty::participant
