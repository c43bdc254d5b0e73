#include "coordinator/saga/step_payloads.h"

#include <gtest/gtest.h>

namespace treaty::core {
namespace {

TEST(StepPayloadsTest, AWholeStringPlaceholderKeepsTheOutputsType) {
  auto out = JsonStepPayloads().Render(
      R"({"id":"${steps.reserve.output.reservation_id}","all":"${steps.reserve.output}",)"
      R"("n":"${steps.reserve.output.lines.1.qty}"})",
      {{"reserve", R"({"reservation_id":42,"lines":[{"qty":1},{"qty":3}]})"}}, false);
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(*out, R"({"id":42,"all":{"reservation_id":42,"lines":[{"qty":1},{"qty":3}]},"n":3})");
}

TEST(StepPayloadsTest, APlaceholderInsideTextIsSplicedAsText) {
  auto out =
      JsonStepPayloads().Render(R"j({"note":"order ${steps.a.output.no} (${steps.a.output.x})"})j",
                                {{"a", R"({"no":"A-7","x":{"k":1}})"}}, false);
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(*out, R"j({"note":"order A-7 ({\"k\":1})"})j");
}

TEST(StepPayloadsTest, AMissingOutputNamesThePlaceholderOrIsNullForACompensation) {
  auto missing =
      JsonStepPayloads().Render(R"({"id":"${steps.a.output.id}"})", {{"a", "{}"}}, false);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), "steps.a.output.id is missing");
  auto no_output = JsonStepPayloads().Render(R"({"id":"${steps.b.output.id}"})", {}, false);
  ASSERT_FALSE(no_output.ok());
  EXPECT_NE(no_output.status().message().find("step b kept no output"), std::string::npos);
  auto as_null = JsonStepPayloads().Render(R"({"id":"${steps.b.output.id}"})", {}, true);
  ASSERT_TRUE(as_null.ok());
  EXPECT_EQ(*as_null, R"({"id":null})");
}

TEST(StepPayloadsTest, ReferencesAreFoundAndBadShapesRefused) {
  auto refs = StepOutputReferences(R"({"a":"${steps.x.y.output.id}","b":"${steps.z.output}"})");
  ASSERT_TRUE(refs.ok());
  EXPECT_EQ(*refs, (std::vector<std::string>{"x.y", "z"}));
  EXPECT_FALSE(StepOutputReferences(R"("${steps.x}")").ok());
  EXPECT_FALSE(StepOutputReferences(R"("${steps.x.output.}")").ok());
  EXPECT_FALSE(StepOutputReferences(R"("${steps.x.output)").ok());
  EXPECT_FALSE(NamesStepOutputs(R"({"a":"${input.x}"})"));
}

}  // namespace
}  // namespace treaty::core
