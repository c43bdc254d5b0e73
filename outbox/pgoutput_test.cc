#include "outbox/pgoutput.h"

#include <gtest/gtest.h>

namespace treaty::outbox {
namespace {

// Builds protocol messages the way the server writes them (big-endian fields).
class Bytes {
 public:
  Bytes& Byte(char c) {
    s_ += c;
    return *this;
  }
  Bytes& Int(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) s_ += static_cast<char>((v >> (8 * i)) & 0xff);
    return *this;
  }
  Bytes& Str(const std::string& v) {
    s_ += v;
    s_ += '\0';
    return *this;
  }
  Bytes& Text(const std::string& v) {
    Byte('t').Int(v.size(), 4);
    s_ += v;
    return *this;
  }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

std::string Relation(uint32_t oid, const std::string& name, const std::vector<std::string>& cols) {
  Bytes b;
  b.Byte('R').Int(oid, 4).Str("public").Str(name).Byte('d').Int(cols.size(), 2);
  for (const std::string& c : cols) b.Byte(0).Str(c).Int(25, 4).Int(0xffffffff, 4);
  return b.str();
}

TEST(PgOutputDecoderTest, AnInsertIntoTheOutboxIsAnEventWithItsColumns) {
  PgOutputDecoder d("treaty_outbox");
  ASSERT_TRUE(d.Decode(Relation(16400, "treaty_outbox",
                                {"id", "event_id", "aggregate_type", "aggregate_id", "event_type",
                                 "topic", "key", "payload", "headers", "status"}))
                  .ok());
  Bytes insert;
  insert.Byte('I').Int(16400, 4).Byte('N').Int(10, 2);
  insert.Text("7").Text("e-1").Text("order").Text("o-1").Text("OrderPlaced").Text("t");
  insert.Byte('n').Text(R"({"a": 1})").Text("{}").Text("pending");
  auto item = d.Decode(insert.str());
  ASSERT_TRUE(item.ok()) << item.status().message();
  ASSERT_EQ(item->kind, PgOutputItem::Kind::kEvent);
  EXPECT_EQ(item->event.event_id, "e-1");
  EXPECT_EQ(item->event.aggregate_id, "o-1");
  EXPECT_EQ(item->event.topic, "t");
  EXPECT_EQ(item->event.key, "");
  EXPECT_EQ(item->event.payload, R"({"a": 1})");
  EXPECT_EQ(item->event.status, "pending");
}

TEST(PgOutputDecoderTest, AnInsertIntoAnotherTableIsNoEvent) {
  PgOutputDecoder d("treaty_outbox");
  ASSERT_TRUE(d.Decode(Relation(1, "orders", {"id"})).ok());
  Bytes insert;
  insert.Byte('I').Int(1, 4).Byte('N').Int(1, 2).Text("5");
  auto item = d.Decode(insert.str());
  ASSERT_TRUE(item.ok());
  EXPECT_EQ(item->kind, PgOutputItem::Kind::kOther);
}

TEST(PgOutputDecoderTest, AnInsertBeforeItsRelationOrCutShortIsAnError) {
  PgOutputDecoder d("treaty_outbox");
  Bytes insert;
  insert.Byte('I').Int(9, 4).Byte('N').Int(1, 2).Text("5");
  EXPECT_FALSE(d.Decode(insert.str()).ok());
  ASSERT_TRUE(d.Decode(Relation(9, "treaty_outbox", {"event_id"})).ok());
  std::string cut = insert.str().substr(0, insert.str().size() - 1);
  EXPECT_FALSE(d.Decode(cut).ok());
}

TEST(PgOutputDecoderTest, BeginAndCommitGiveTheTransactionsEnd) {
  PgOutputDecoder d("treaty_outbox");
  Bytes begin, commit;
  begin.Byte('B').Int(0x100, 8).Int(0, 8).Int(42, 4);
  commit.Byte('C').Byte(0).Int(0x100, 8).Int(0x128, 8).Int(0, 8);
  EXPECT_EQ(d.Decode(begin.str())->kind, PgOutputItem::Kind::kBegin);
  auto c = d.Decode(commit.str());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->kind, PgOutputItem::Kind::kCommit);
  EXPECT_EQ(c->commit_end_lsn, 0x128u);
}

std::string Message(const std::string& prefix, const std::string& content, bool transactional) {
  Bytes b;
  b.Byte('M').Byte(transactional ? 1 : 0).Int(0x200, 8).Str(prefix).Int(content.size(), 4);
  return b.str() + content;
}

TEST(PgOutputDecoderTest, AMessageWithTheTablesPrefixIsAnEvent) {
  PgOutputDecoder d("treaty_outbox");
  auto item = d.Decode(Message("treaty_outbox",
                               R"({"event_id":"e","aggregate_type":"order","aggregate_id":"o",)"
                               R"("event_type":"X","topic":"t","payload":{"n":[1,2]},)"
                               R"("headers":{"h":"v"}})",
                               true));
  ASSERT_TRUE(item.ok());
  ASSERT_EQ(item->kind, PgOutputItem::Kind::kEvent);
  EXPECT_TRUE(item->transactional);
  EXPECT_EQ(item->event.event_id, "e");
  EXPECT_EQ(item->event.payload, R"({"n":[1,2]})");
  EXPECT_EQ(item->event.headers, R"({"h":"v"})");
  EXPECT_EQ(item->event.malformed, "");
  EXPECT_EQ(d.Decode(Message("other", "x", true))->kind, PgOutputItem::Kind::kOther);
}

// The trace context of the writing transaction: the table's traceparent column (absent from a
// table of before, NULL for a row written without one), or a message's "traceparent".
TEST(PgOutputDecoderTest, TheTraceparentOfARowOrAMessageIsKept) {
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  PgOutputDecoder d("treaty_outbox");
  ASSERT_TRUE(d.Decode(Relation(16400, "treaty_outbox",
                                {"id", "event_id", "aggregate_type", "aggregate_id", "event_type",
                                 "topic", "key", "payload", "headers", "status", "traceparent"}))
                  .ok());
  for (bool traced : {true, false}) {
    Bytes insert;
    insert.Byte('I').Int(16400, 4).Byte('N').Int(11, 2);
    insert.Text("7").Text("e-1").Text("order").Text("o-1").Text("OrderPlaced").Text("t");
    insert.Byte('n').Text("{}").Text("{}").Text("pending");
    if (traced) {
      insert.Text(tp);
    } else {
      insert.Byte('n');
    }
    auto item = d.Decode(insert.str());
    ASSERT_TRUE(item.ok()) << item.status().message();
    EXPECT_EQ(item->event.traceparent, traced ? tp : "");
  }
  auto message = d.Decode(Message("treaty_outbox",
                                  R"({"event_id":"e","aggregate_type":"order","aggregate_id":"o",)"
                                  R"("event_type":"X","topic":"t","payload":{},"traceparent":")" +
                                      tp + R"("})",
                                  true));
  ASSERT_TRUE(message.ok());
  EXPECT_EQ(message->event.malformed, "");
  EXPECT_EQ(message->event.traceparent, tp);
}

TEST(PgOutputDecoderTest, AMessagesStringsAreUnescapedAndItsValuesKeptAsWritten) {
  PgOutputDecoder d("treaty_outbox");
  auto item = d.Decode(Message(
      "treaty_outbox",
      R"( { "event_id" : "a\"b\u00e9\ud83d\ude00", "aggregate_type":"o", "aggregate_id":"1",)"
      R"( "event_type":"X", "topic":"t", "key": null, "extra": [1, {"x": "}"}],)"
      R"( "payload": {"s": "x\"}", "n": [1.5e3, true, null]} } )",
      true));
  ASSERT_TRUE(item.ok());
  EXPECT_EQ(item->event.malformed, "");
  EXPECT_EQ(item->event.event_id, "a\"b\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(item->event.key, "");
  EXPECT_EQ(item->event.payload, R"({"s": "x\"}", "n": [1.5e3, true, null]})");
  EXPECT_EQ(item->event.headers, "{}");
}

TEST(PgOutputDecoderTest, AMalformedMessageIsAnEventMarkedMalformed) {
  PgOutputDecoder d("treaty_outbox");
  auto bad = d.Decode(Message("treaty_outbox", "not json", true));
  ASSERT_TRUE(bad.ok());
  EXPECT_NE(bad->event.malformed, "");
  auto missing = d.Decode(Message("treaty_outbox", R"({"event_id":"e"})", true));
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->event.malformed, "no aggregate_type");
  for (const char* bad : {R"({"event_id":"e")", R"({"event_id":"e"} x)", R"([1])",
                          R"({"event_id":1,"aggregate_type":"o"})", R"({"headers":[1]})"}) {
    auto r = d.Decode(Message("treaty_outbox", bad, true));
    ASSERT_TRUE(r.ok());
    EXPECT_NE(r->event.malformed, "") << bad;
  }
}

TEST(ReplicationFrameTest, XLogDataAndKeepaliveAreParsed) {
  Bytes w, k;
  w.Byte('w').Int(0x10, 8).Int(0x20, 8).Int(0, 8).Byte('B');
  k.Byte('k').Int(0x30, 8).Int(0, 8).Byte(1);
  auto fw = ParseReplicationFrame(w.str());
  ASSERT_TRUE(fw.ok());
  EXPECT_EQ(fw->wal_end, 0x20u);
  EXPECT_EQ(fw->payload, "B");
  auto fk = ParseReplicationFrame(k.str());
  ASSERT_TRUE(fk.ok());
  EXPECT_EQ(fk->wal_end, 0x30u);
  EXPECT_TRUE(fk->reply_requested);
  EXPECT_FALSE(ParseReplicationFrame("k\x01").ok());
}

TEST(ReplicationFrameTest, TheStatusUpdateCarriesThePositions) {
  std::string s = StandbyStatusUpdate(0x1122, 0x3344, 5);
  ASSERT_EQ(s.size(), 34u);
  EXPECT_EQ(s[0], 'r');
  EXPECT_EQ(static_cast<unsigned char>(s[7]), 0x11);
  EXPECT_EQ(static_cast<unsigned char>(s[16]), 0x44);
  EXPECT_EQ(static_cast<unsigned char>(s[24]), 0x44);  // applied = flushed
}

TEST(LsnTest, TextAndNumberRoundTrip) {
  EXPECT_EQ(ParseLsn("16/B374D848"), 0x16B374D848u);
  EXPECT_EQ(FormatLsn(0x16B374D848u), "16/B374D848");
  EXPECT_FALSE(ParseLsn("nope").has_value());
}

}  // namespace
}  // namespace treaty::outbox
