#include "common/log.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include <vector>

#include "common/json_text.h"

namespace treaty {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogSink([this](std::string_view line) { lines_.emplace_back(line); });
  }
  void TearDown() override {
    SetLogSink({});
    SetLogLevel(LogLevel::kInfo);
  }
  std::vector<std::string> lines_;
};

TEST_F(LogTest, WritesOneJsonObjectPerLine) {
  Logger log("treatyd");
  log.Info("branch \"stock\" said\nno", {{"gid", "g-1"}, {"status", "409"}});
  ASSERT_EQ(lines_.size(), 1u);
  ASSERT_EQ(lines_[0].back(), '\n');
  EXPECT_EQ(lines_[0].find('\n'), lines_[0].size() - 1) << "a message's newline must be escaped";

  Poco::JSON::Parser parser;
  auto obj = parser.parse(lines_[0]).extract<Poco::JSON::Object::Ptr>();
  EXPECT_EQ(obj->getValue<std::string>("level"), "info");
  EXPECT_EQ(obj->getValue<std::string>("component"), "treatyd");
  EXPECT_EQ(obj->getValue<std::string>("message"), "branch \"stock\" said\nno");
  EXPECT_EQ(obj->getValue<std::string>("gid"), "g-1");
  EXPECT_EQ(obj->getValue<std::string>("time").size(),
            std::string("2026-01-01T00:00:00.000Z").size());
}

TEST_F(LogTest, DropsLinesBelowTheLevel) {
  Logger log("x");
  SetLogLevel(LogLevel::kWarn);
  log.Info("hidden");
  log.Error("shown");
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_NE(lines_[0].find("shown"), std::string::npos);
}

TEST(ParseLogLevel, KnowsTheFourLevels) {
  EXPECT_EQ(ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(ParseLogLevel("error"), LogLevel::kError);
  EXPECT_EQ(ParseLogLevel("verbose"), std::nullopt);
}

}  // namespace
TEST(JsonText, InvalidUtf8BecomesTheReplacementCharacter) {
  EXPECT_EQ(ValidUtf8("plain and \xC3\xA9t\xC3\xA9"), "plain and \xC3\xA9t\xC3\xA9");
  EXPECT_EQ(ValidUtf8("mo\xE4"
                      "e"),
            "mo\xEF\xBF\xBD"
            "e");                                                                // a lone lead byte
  EXPECT_EQ(ValidUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong '/'
  EXPECT_EQ(ValidUtf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  EXPECT_EQ(ValidUtf8("cut \xE2\x82"), "cut \xEF\xBF\xBD\xEF\xBF\xBD");          // cut short
  EXPECT_EQ(JsonQuote("k\xFFy"), "\"k\xEF\xBF\xBDy\"");
}

TEST(JsonText, QuotingEscapesOnlyWhatJsonRequires) {
  EXPECT_EQ(JsonQuote("http://h:1/2pc/prepare?a=b"), "\"http://h:1/2pc/prepare?a=b\"");
  EXPECT_EQ(JsonQuote(""), "\"\"");
  EXPECT_EQ(JsonQuote("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
  EXPECT_EQ(JsonQuote("tab\tnl\n"), "\"tab\\tnl\\n\"");
  EXPECT_EQ(JsonQuote("\xC3\xA9"), "\"\xC3\xA9\"");
}

}  // namespace treaty
