// The Kafka adapter (common/kafka) against the dev broker, read back by a separate consumer
// process: what treatyd's sink and the relay rely on when a message fails at produce time.

#include "common/kafka/kafka_publisher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "integration-tests/harness/dev_broker.h"

namespace treaty::harness {
namespace {

// A message the producer refuses outright (larger than message.max.bytes) holds back the later
// messages with its key in its own group, which would overtake it; a message with another key,
// and one with the same key in another group (another transaction's delivery in a shared
// publish), go on and reach the topic.
TEST(KafkaPublisherTest, AMessageRefusedAtProduceHoldsBackOnlyItsOwnGroupsLaterOnesWithItsKey) {
  auto broker = DevBroker::Start();
  ASSERT_TRUE(broker.ok()) << broker.status().message();
  auto publisher = kafka::KafkaPublisher::Create((*broker)->bootstrap(), std::chrono::seconds(10));
  ASSERT_TRUE(publisher.ok()) << publisher.status().message();

  const std::string topic = "publisher-groups";
  std::vector<kafka::OutgoingMessage> messages = {
      {topic, "k1", std::string(2 << 20, 'x'), {}, /*group=*/0},  // refused: too large
      {topic, "k1", "g0-after-the-refused-one", {}, 0},
      {topic, "k2", "g0-other-key", {}, 0},
      {topic, "k1", "g1-same-key", {}, 1},
  };
  std::vector<kafka::Delivery> results = (*publisher)->Publish(messages);
  ASSERT_EQ(results.size(), messages.size());
  EXPECT_FALSE(results[0].acked);
  EXPECT_TRUE(results[0].permanent) << results[0].error;
  EXPECT_FALSE(results[1].acked);
  EXPECT_NE(results[1].error.find("held back"), std::string::npos) << results[1].error;
  EXPECT_TRUE(results[2].acked) << results[2].error;
  EXPECT_TRUE(results[3].acked) << results[3].error;

  auto consumed = (*broker)->Consume(topic, 2);
  ASSERT_TRUE(consumed.ok()) << consumed.status().message();
  std::sort(consumed->begin(), consumed->end());  // two keys, maybe two partitions
  EXPECT_EQ(*consumed, (std::vector<std::string>{"k1\tg1-same-key", "k2\tg0-other-key"}));
}

// With `ordering` set (the relay's aggregate), a refused message holds back the later messages
// of its group with that ordering whatever their topic and key, and only those: one with its
// topic and key but another ordering goes on.
TEST(KafkaPublisherTest, AMessageRefusedAtProduceHoldsBackItsOrderingsLaterOnesOnAnyTopic) {
  auto broker = DevBroker::Start();
  ASSERT_TRUE(broker.ok()) << broker.status().message();
  auto publisher = kafka::KafkaPublisher::Create((*broker)->bootstrap(), std::chrono::seconds(10));
  ASSERT_TRUE(publisher.ok()) << publisher.status().message();

  const std::string topic = "publisher-orderings", other = "publisher-orderings-other";
  std::vector<kafka::OutgoingMessage> messages = {
      {topic, "k1", std::string(2 << 20, 'x'), {}, 0, "order:1"},  // refused: too large
      {other, "k2", "order-1-later-on-another-topic", {}, 0, "order:1"},
      {topic, "k1", "order-2-same-topic-and-key", {}, 0, "order:2"},
  };
  std::vector<kafka::Delivery> results = (*publisher)->Publish(messages);
  ASSERT_EQ(results.size(), messages.size());
  EXPECT_TRUE(results[0].permanent) << results[0].error;
  EXPECT_FALSE(results[1].acked);
  EXPECT_NE(results[1].error.find("held back"), std::string::npos) << results[1].error;
  EXPECT_TRUE(results[2].acked) << results[2].error;

  auto consumed = (*broker)->Consume(topic, 1);
  ASSERT_TRUE(consumed.ok()) << consumed.status().message();
  EXPECT_EQ(*consumed, (std::vector<std::string>{"k1\torder-2-same-topic-and-key"}));
}

}  // namespace
}  // namespace treaty::harness
