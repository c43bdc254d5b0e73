#include "outbox/pgoutput.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>

#include <cstdio>
#include <sstream>

namespace treaty::outbox {
namespace {

// Big-endian fields of a protocol message; every read checks the length.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool ok() const { return ok_; }
  size_t left() const { return data_.size() - pos_; }

  uint64_t Int(int bytes) {
    if (!Need(static_cast<size_t>(bytes))) return 0;
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(data_[pos_++]);
    return v;
  }
  char Byte() { return static_cast<char>(Int(1)); }
  // A NUL-terminated string.
  std::string_view String() {
    size_t end = data_.find('\0', pos_);
    if (end == std::string_view::npos) {
      ok_ = false;
      return {};
    }
    std::string_view s = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }
  std::string_view Bytes(size_t n) {
    if (!Need(n)) return {};
    std::string_view s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string_view Rest() { return Bytes(left()); }

 private:
  bool Need(size_t n) {
    if (!ok_ || left() < n) {
      ok_ = false;
      return false;
    }
    return true;
  }
  std::string_view data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

Status Malformed(char kind) {
  return Status::Internal(std::string("malformed pgoutput message '") + kind + "'");
}

}  // namespace

Result<PgOutputItem> PgOutputDecoder::Decode(std::string_view message) {
  Reader r(message);
  const char kind = r.Byte();
  PgOutputItem item;
  switch (kind) {
    case 'B':
      r.Int(8);  // final LSN
      r.Int(8);  // commit time
      r.Int(4);  // xid
      item.kind = PgOutputItem::Kind::kBegin;
      break;
    case 'C':
      r.Int(1);  // flags
      r.Int(8);  // commit LSN
      item.commit_end_lsn = r.Int(8);
      r.Int(8);  // commit time
      item.kind = PgOutputItem::Kind::kCommit;
      break;
    case 'R': {
      const auto oid = static_cast<uint32_t>(r.Int(4));
      r.String();  // namespace
      std::string_view name = r.String();
      r.Int(1);  // replica identity
      const auto ncols = static_cast<int>(r.Int(2));
      Relation rel;
      rel.outbox = name == table_;
      for (int i = 0; i < ncols && r.ok(); ++i) {
        r.Int(1);  // flags
        rel.columns.emplace_back(r.String());
        r.Int(4);  // type
        r.Int(4);  // typmod
      }
      if (!r.ok()) return Malformed(kind);
      relations_[oid] = std::move(rel);
      return item;
    }
    case 'I':
      return DecodeInsert(r.Rest());
    case 'M': {
      const auto flags = r.Int(1);
      item.message_lsn = r.Int(8);
      std::string_view prefix = r.String();
      const auto length = static_cast<size_t>(r.Int(4));
      std::string_view content = r.Bytes(length);
      if (!r.ok()) return Malformed(kind);
      if (prefix != table_) return item;
      item.kind = PgOutputItem::Kind::kEvent;
      item.transactional = (flags & 1) != 0;
      DecodeMessageContent(content, &item.event);
      return item;
    }
    default:
      // Update, delete, truncate, type, origin: not the outbox's (the publication publishes
      // inserts), or nothing the relay needs.
      return item;
  }
  if (!r.ok()) return Malformed(kind);
  return item;
}

Result<PgOutputItem> PgOutputDecoder::DecodeInsert(std::string_view body) {
  Reader r(body);
  const auto oid = static_cast<uint32_t>(r.Int(4));
  const char n = r.Byte();
  const auto ncols = static_cast<size_t>(r.Int(2));
  if (!r.ok() || n != 'N') return Malformed('I');
  PgOutputItem item;
  auto rel = relations_.find(oid);
  if (rel == relations_.end()) {
    return Status::Internal("pgoutput insert into relation " + std::to_string(oid) +
                            " before its description");
  }
  if (!rel->second.outbox) return item;
  item.kind = PgOutputItem::Kind::kEvent;
  WalEvent& e = item.event;
  const std::vector<std::string>& cols = rel->second.columns;
  for (size_t i = 0; i < ncols; ++i) {
    const char k = r.Byte();
    std::string_view value;
    if (k == 't' || k == 'b') value = r.Bytes(static_cast<size_t>(r.Int(4)));
    if (!r.ok()) return Malformed('I');
    if (k != 't' || i >= cols.size()) continue;  // NULL, unchanged TOAST (not in an insert)
    const std::string& c = cols[i];
    if (c == "event_id") {
      e.event_id = value;
    } else if (c == "aggregate_type") {
      e.aggregate_type = value;
    } else if (c == "aggregate_id") {
      e.aggregate_id = value;
    } else if (c == "event_type") {
      e.event_type = value;
    } else if (c == "topic") {
      e.topic = value;
    } else if (c == "key") {
      e.key = value;
    } else if (c == "payload") {
      e.payload = value;
    } else if (c == "headers") {
      e.headers = value;
    } else if (c == "status") {
      e.status = value;
    }
  }
  return item;
}

// The content of an outbox message: one JSON object with the table's columns, the payload and
// headers as JSON values:
//   {"event_id":"..","aggregate_type":"..","aggregate_id":"..","event_type":"..","topic":"..",
//    "key":"..","payload":{..},"headers":{..}}
void PgOutputDecoder::DecodeMessageContent(std::string_view content, WalEvent* e) {
  try {
    Poco::JSON::Parser parser;
    auto o = parser.parse(std::string(content)).extract<Poco::JSON::Object::Ptr>();
    auto text = [&](const char* field, bool required) -> std::string {
      if (!o->has(field) || o->isNull(field)) {
        if (required && e->malformed.empty()) e->malformed = std::string("no ") + field;
        return {};
      }
      return o->getValue<std::string>(field);
    };
    e->event_id = text("event_id", true);
    e->aggregate_type = text("aggregate_type", true);
    e->aggregate_id = text("aggregate_id", true);
    e->event_type = text("event_type", true);
    e->topic = text("topic", true);
    e->key = text("key", false);
    for (auto [field, out] : {std::pair{"payload", &e->payload}, {"headers", &e->headers}}) {
      if (!o->has(field) || o->isNull(field)) continue;
      std::ostringstream s;
      Poco::JSON::Stringifier::condense(o->get(field), s);
      *out = s.str();
    }
  } catch (const std::exception& ex) {
    e->malformed = std::string("not an outbox message (a JSON object): ") + ex.what();
  }
}

std::string StandbyStatusUpdate(uint64_t written, uint64_t flushed, int64_t now_us,
                                bool reply_requested) {
  std::string out(1 + 8 * 4 + 1, '\0');
  out[0] = 'r';
  size_t pos = 1;
  auto put = [&](uint64_t v) {
    for (int i = 7; i >= 0; --i) out[pos++] = static_cast<char>((v >> (8 * i)) & 0xff);
  };
  put(written);
  put(flushed);
  put(flushed);  // applied: the relay applies nothing beyond what it confirms
  put(static_cast<uint64_t>(now_us));
  out[pos] = reply_requested ? 1 : 0;
  return out;
}

Result<ReplicationFrame> ParseReplicationFrame(std::string_view data) {
  Reader r(data);
  ReplicationFrame f;
  f.kind = r.Byte();
  if (f.kind == 'w') {
    f.wal_start = r.Int(8);
    f.wal_end = r.Int(8);
    r.Int(8);  // send time
    f.payload = r.Rest();
  } else if (f.kind == 'k') {
    f.wal_end = r.Int(8);
    r.Int(8);  // send time
    f.reply_requested = r.Byte() != 0;
  }
  if (!r.ok()) return Status::Internal("malformed replication message");
  return f;
}

std::optional<uint64_t> ParseLsn(std::string_view text) {
  unsigned hi = 0, lo = 0;
  char extra = 0;
  std::string s(text);
  if (std::sscanf(s.c_str(), "%X/%X%c", &hi, &lo, &extra) != 2) return std::nullopt;
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

std::string FormatLsn(uint64_t lsn) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32),
                static_cast<unsigned>(lsn & 0xffffffffU));
  return buf;
}

}  // namespace treaty::outbox
