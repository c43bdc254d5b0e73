#include "coordinator/store/slot_map.h"

#include <charconv>

namespace treaty::store {

uint16_t Crc16(std::string_view data) {
  uint16_t crc = 0;
  for (char ch : data) {
    crc = static_cast<uint16_t>(crc ^ (static_cast<uint8_t>(ch) << 8));
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

int SlotOf(std::string_view gid) { return Crc16(gid) % kSlotCount; }

SlotMap SlotMap::Even(int shards) {
  SlotMap m;
  m.shard_count_ = shards;
  m.owner_.resize(kSlotCount);
  for (int shard = 0; shard < shards; ++shard) {
    const int first = static_cast<int>(int64_t{shard} * kSlotCount / shards);
    const int end = static_cast<int>(int64_t{shard + 1} * kSlotCount / shards);
    for (int slot = first; slot < end; ++slot) m.owner_[static_cast<size_t>(slot)] = shard;
  }
  return m;
}

namespace {

bool ParseInt(std::string_view text, int* out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

Result<SlotMap> SlotMap::Parse(std::string_view text) {
  SlotMap m;
  m.owner_.assign(kSlotCount, -1);
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string_view item = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    size_t dash = item.find('-');
    size_t colon = item.find(':');
    int first = 0, last = 0, shard = 0;
    if (dash == std::string_view::npos || colon == std::string_view::npos || colon < dash ||
        !ParseInt(item.substr(0, dash), &first) ||
        !ParseInt(item.substr(dash + 1, colon - dash - 1), &last) ||
        !ParseInt(item.substr(colon + 1), &shard)) {
      return Status::InvalidArgument("slot map: \"" + std::string(item) +
                                     "\" is not first-last:shard");
    }
    if (first < 0 || last >= kSlotCount || first > last || shard < 0 || shard >= kSlotCount) {
      return Status::InvalidArgument("slot map: \"" + std::string(item) + "\" is out of range");
    }
    for (int slot = first; slot <= last; ++slot) {
      if (m.owner_[static_cast<size_t>(slot)] != -1) {
        return Status::InvalidArgument("slot map: slot " + std::to_string(slot) +
                                       " is owned twice");
      }
      m.owner_[static_cast<size_t>(slot)] = shard;
    }
    m.shard_count_ = std::max(m.shard_count_, shard + 1);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  std::vector<bool> owns(static_cast<size_t>(m.shard_count_), false);
  for (int slot = 0; slot < kSlotCount; ++slot) {
    int owner = m.owner_[static_cast<size_t>(slot)];
    if (owner == -1) {
      return Status::InvalidArgument("slot map: slot " + std::to_string(slot) + " has no shard");
    }
    owns[static_cast<size_t>(owner)] = true;
  }
  for (int shard = 0; shard < m.shard_count_; ++shard) {
    if (!owns[static_cast<size_t>(shard)]) {
      return Status::InvalidArgument("slot map: shard " + std::to_string(shard) + " owns no slot");
    }
  }
  return m;
}

std::string SlotMap::Text() const {
  std::string out;
  int first = 0;
  for (int slot = 1; slot <= kSlotCount; ++slot) {
    if (slot == kSlotCount ||
        owner_[static_cast<size_t>(slot)] != owner_[static_cast<size_t>(first)]) {
      out += (out.empty() ? "" : ",") + std::to_string(first) + "-" + std::to_string(slot - 1) +
             ":" + std::to_string(owner_[static_cast<size_t>(first)]);
      first = slot;
    }
  }
  return out;
}

std::string SlotMap::RangesOf(int shard) const {
  std::string out;
  for (int slot = 0; slot < kSlotCount;) {
    if (owner_[static_cast<size_t>(slot)] != shard) {
      ++slot;
      continue;
    }
    int last = slot;
    while (last + 1 < kSlotCount && owner_[static_cast<size_t>(last + 1)] == shard) ++last;
    out += (out.empty() ? "" : ",") + std::to_string(slot) +
           (last == slot ? "" : "-" + std::to_string(last));
    slot = last + 1;
  }
  return out;
}

}  // namespace treaty::store
