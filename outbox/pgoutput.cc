#include "outbox/pgoutput.h"

#include <cctype>
#include <cstdio>

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
    } else if (c == "traceparent") {
      e.traceparent = value;
    } else if (c == "status") {
      e.status = value;
    }
  }
  return item;
}

namespace {

// Just enough JSON for an outbox message, without building a document: the top-level object's
// string fields decoded, and the raw text of its other values (payload, headers) kept as they
// are. Poco's parser and stringifier were most of the relay's CPU for this form (finding 37).
class JsonScan {
 public:
  explicit JsonScan(std::string_view s) : s_(s) {}
  bool ok() const { return ok_; }
  size_t at() const { return i_; }

  void Ws() {
    while (i_ < s_.size() &&
           (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) {
      ++i_;
    }
  }
  bool Eat(char c) {
    Ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  char Peek() {
    Ws();
    return i_ < s_.size() ? s_[i_] : '\0';
  }
  void Fail() { ok_ = false; }

  // A string literal, escapes decoded (\uXXXX, surrogate pairs included, as UTF-8).
  bool String(std::string* out) {
    if (!Eat('"')) return Bad();
    out->clear();
    while (i_ < s_.size()) {
      const char c = s_[i_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return Bad();
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (i_ >= s_.size()) return Bad();
      const char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!Hex4(&cp)) return Bad();
          if (cp >= 0xD800 && cp < 0xDC00 && i_ + 1 < s_.size() && s_[i_] == '\\' &&
              s_[i_ + 1] == 'u') {
            i_ += 2;
            uint32_t low = 0;
            if (!Hex4(&low) || low < 0xDC00 || low >= 0xE000) return Bad();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          Utf8(cp, out);
          break;
        }
        default:
          return Bad();
      }
    }
    return Bad();
  }

  // Any value, skipped; its text (trimmed) in `raw`.
  bool Value(std::string_view* raw) {
    Ws();
    const size_t from = i_;
    if (!Skip(0)) return false;
    *raw = s_.substr(from, i_ - from);
    return true;
  }

 private:
  bool Bad() {
    ok_ = false;
    return false;
  }
  bool Hex4(uint32_t* v) {
    if (i_ + 4 > s_.size()) return false;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      *v <<= 4;
      if (c >= '0' && c <= '9') {
        *v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        *v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        *v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    return true;
  }
  static void Utf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  bool Skip(int depth) {
    if (depth > 64) return Bad();
    const char c = Peek();
    if (c == '"') {
      std::string ignored;
      return String(&ignored);
    }
    if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++i_;
      if (Eat(close)) return true;
      do {
        if (c == '{') {
          std::string key;
          if (!String(&key) || !Eat(':')) return Bad();
        }
        if (!Skip(depth + 1)) return false;
      } while (Eat(','));
      return Eat(close) || Bad();
    }
    // A number or a literal.
    const size_t from = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '-' ||
                              s_[i_] == '+' || s_[i_] == '.')) {
      ++i_;
    }
    return i_ > from || Bad();
  }

  std::string_view s_;
  size_t i_ = 0;
  bool ok_ = true;
};

}  // namespace

// The content of an outbox message: one JSON object with the table's columns, the payload and
// headers as JSON values:
//   {"event_id":"..","aggregate_type":"..","aggregate_id":"..","event_type":"..","topic":"..",
//    "key":"..","payload":{..},"headers":{..},"traceparent":".."}
void PgOutputDecoder::DecodeMessageContent(std::string_view content, WalEvent* e) {
  JsonScan j(content);
  std::string key;
  bool seen[5] = {};
  static constexpr const char* kRequired[5] = {"event_id", "aggregate_type", "aggregate_id",
                                               "event_type", "topic"};
  std::string* required[5] = {&e->event_id, &e->aggregate_type, &e->aggregate_id, &e->event_type,
                              &e->topic};
  if (!j.Eat('{')) j.Fail();
  if (j.ok() && !j.Eat('}')) {
    do {
      if (!j.String(&key) || !j.Eat(':')) break;
      int field = -1;
      for (int f = 0; f < 5; ++f) {
        if (key == kRequired[f]) field = f;
      }
      std::string_view raw;
      if (field >= 0 || key == "key" || key == "traceparent") {
        if (j.Peek() == 'n') {  // null: as if absent
          j.Value(&raw);
          continue;
        }
        if (j.Peek() != '"') {
          e->malformed = key + ": not a string";
          return;
        }
        if (!j.String(field >= 0 ? required[field] : key == "key" ? &e->key : &e->traceparent)) {
          break;
        }
        if (field >= 0) seen[field] = true;
      } else if (key == "payload" || key == "headers") {
        if (!j.Value(&raw)) break;
        if (raw == "null") continue;
        if (key == "headers" && raw.front() != '{') {
          e->malformed = "headers: not an object";
          return;
        }
        (key == "payload" ? e->payload : e->headers) = raw;
      } else if (!j.Value(&raw)) {
        break;
      }
    } while (j.Eat(','));
    if (j.ok() && !j.Eat('}')) j.Fail();
  }
  if (j.ok() && j.Peek() != '\0') j.Fail();  // text after the object
  if (!j.ok()) {
    e->malformed =
        "not an outbox message (a JSON object): bad JSON at byte " + std::to_string(j.at());
    return;
  }
  for (int f = 0; f < 5; ++f) {
    if (!seen[f]) {
      e->malformed = std::string("no ") + kRequired[f];
      return;
    }
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
