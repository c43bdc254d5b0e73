#pragma once

// Where a transaction lives when the store is sharded (store.shards, docs/scaling.md): its gid
// hashes to one of 16,384 slots, as in Redis Cluster (CRC16/XMODEM of the whole gid, modulo
// 16,384; no hash tags), and each slot belongs to one shard. The hash is part of the stored
// format: changing it would move every existing transaction, so it never changes.
//
// The slot map is stored in every shard (treaty.shard_map, migration 14) and compared at start
// with the configured one: treatyd refuses to start with a map that disagrees (a list of shards
// reordered, one left out or added), since it would then look for transactions where they are
// not. Standard library only.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace treaty::store {

inline constexpr int kSlotCount = 16384;

// CRC16/XMODEM (polynomial 0x1021, initial 0), the checksum Redis Cluster uses for its slots.
uint16_t Crc16(std::string_view data);

// The slot of a gid: Crc16(gid) % 16384.
int SlotOf(std::string_view gid);

// Which shard owns each slot. Every slot has exactly one owner.
class SlotMap {
 public:
  // `shards` contiguous ranges of (nearly) equal size, in order: shard i owns slots
  // [i * 16384 / shards, (i + 1) * 16384 / shards). 1 <= shards <= 16384.
  static SlotMap Even(int shards);

  // Parses Text(): InvalidArgument naming the problem when a slot is missing, owned twice, out
  // of range, or a shard owns none.
  static Result<SlotMap> Parse(std::string_view text);

  int shard_count() const { return shard_count_; }
  int ShardOfSlot(int slot) const { return owner_[static_cast<size_t>(slot)]; }
  int ShardOf(std::string_view gid) const { return ShardOfSlot(SlotOf(gid)); }

  // Canonical text: the ranges in slot order, "first-last:shard" separated by commas, e.g.
  // "0-8191:0,8192-16383:1". Two maps are the same iff their texts are.
  std::string Text() const;
  // Only shard `shard`'s ranges, "0-8191" or "0-99,200-299" (for messages).
  std::string RangesOf(int shard) const;

  bool operator==(const SlotMap& other) const { return owner_ == other.owner_; }

 private:
  SlotMap() = default;
  int shard_count_ = 0;
  std::vector<int> owner_;  // by slot
};

}  // namespace treaty::store
