#include "coordinator/saga/saga_definition.h"

#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include <map>

namespace treaty::saga {
namespace {

Environment Env(std::map<std::string, std::string> vars = {{"INV", "http://127.0.0.1:8502"}}) {
  return [vars](const std::string& n) -> std::optional<std::string> {
    auto it = vars.find(n);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
}

constexpr const char* kGood = R"(saga: place-order
steps:
  - name: reserve
    action: ${env.INV}/saga/reserve
    compensate: ${env.INV}/saga/release
    payload: { sku: "${input.sku}", qty: "${input.qty}", note: "order ${input.sku} x${input.qty}", fixed: 3 }
    timeout: 2s
  - name: pay
    after: [reserve]
    action: http://127.0.0.1:8501/saga/pay
    compensate: http://127.0.0.1:8501/saga/refund
  - name: notify
    after: [pay]
    action: http://127.0.0.1:8501/saga/notify
)";

std::string ErrorOf(const std::string& yaml, Environment env = Env()) {
  auto r = ParseSagaDefinition(yaml, "s.yaml", env);
  EXPECT_FALSE(r.ok()) << yaml;
  return r.ok() ? "" : r.status().message();
}

TEST(SagaDefinition, ParsesStepsUrlsAndDependencies) {
  auto d = ParseSagaDefinition(kGood, "s.yaml", Env());
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->name, "place-order");
  EXPECT_EQ(d->version.size(), 12u);
  ASSERT_EQ(d->steps.size(), 3u);
  EXPECT_EQ(d->steps[0].action, "http://127.0.0.1:8502/saga/reserve");
  EXPECT_EQ(d->steps[0].timeout, std::chrono::seconds(2));
  EXPECT_EQ(d->steps[1].after, (std::vector<std::string>{"reserve"}));
  EXPECT_EQ(d->steps[2].compensate, "") << "forward only";
  auto again = ParseSagaDefinition(kGood, "s.yaml", Env());
  EXPECT_EQ(again->version, d->version) << "the same text, the same version";
}

TEST(SagaDefinition, InstantiateFillsPlaceholdersKeepingTypes) {
  auto d = ParseSagaDefinition(kGood, "s.yaml", Env());
  ASSERT_TRUE(d.ok());
  Poco::JSON::Parser parser;
  auto input = parser.parse(R"({"sku":"A1","qty":2})").extract<Poco::JSON::Object::Ptr>();
  auto b = Instantiate(*d, input);
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ((*b)[0].payload_json, R"({"fixed":3,"note":"order A1 x2","qty":2,"sku":"A1"})");
  EXPECT_EQ((*b)[1].payload_json, "{}");
  EXPECT_EQ((*b)[2].urls.count("compensate"), 0u);
  auto missing = parser.parse(R"({"sku":"A1"})").extract<Poco::JSON::Object::Ptr>();
  EXPECT_EQ(Instantiate(*d, missing).status().message(), "input.qty is missing");
}

TEST(SagaDefinition, EachInvalidDefinitionNamesFileLineAndKey) {
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n    after: [b]\n"),
            "s.yaml:5: steps[0].after: step a: after names unknown step b");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n    after: [b]\n"
                    "  - name: b\n    action: http://h/b\n    after: [a]\n"),
            "s.yaml:5: steps[0].after: steps form a cycle: a -> b -> a");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n  - name: a\n    "
                    "action: http://h/b\n"),
            "s.yaml:5: steps[1].name: duplicate step name a");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    compensate: http://h/a\n"),
            "s.yaml:3: steps[0].action: is required (a URL)");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: ftp://h/a\n"),
            "s.yaml:4: steps[0].action: must be an http:// URL");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n    payload: { q: "
                    "\"${input.}\" }\n"),
            "s.yaml:5: steps[0].payload.q: bad placeholder ${input.} (write ${input.name} or "
            "${steps.<step>.output.<field>})");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n    payload: { q: "
                    "\"${input.a\" }\n"),
            "s.yaml:5: steps[0].payload.q: unclosed ${ in \"${input.a\"");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n    payload: { q: "
                    "\"${system(rm)}\" }\n"),
            "s.yaml:5: steps[0].payload.q: bad placeholder ${system(rm)} (write ${input.name} or "
            "${steps.<step>.output.<field>})");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: ${env.NOPE}/a\n"),
            "s.yaml:4: steps[0].action: environment variable NOPE is not set");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n    retries: 3\n"),
            "s.yaml:5: steps[0].retries: unknown key (expected one of: action, after, compensate, "
            "compensate_payload, compensate_retry, compensate_timeout, name, payload, retry, "
            "timeout)");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n    timeout: soon\n"),
            "s.yaml:5: steps[0].timeout: not a positive duration (write e.g. 500ms, 3s)");
  EXPECT_EQ(ErrorOf("steps:\n  - name: a\n    action: http://h/a\n"),
            "s.yaml:1: saga: a name of 1 to 64 characters of A-Z a-z 0-9 . _ : - is required");
  EXPECT_EQ(ErrorOf("saga: x\nsteps: []\n"),
            "s.yaml:2: steps: a non-empty list of steps is required");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: [http://h/a\n"),
            "s.yaml:5: not valid YAML: end of sequence flow not found");
}

TEST(SagaDefinition, NotifyIsReadWithItsEnvAndCheckedNamingLineAndKey) {
  const std::string steps = "steps:\n  - name: a\n    action: http://h/a\n";
  auto d = ParseSagaDefinition(
      "saga: x\nnotify: { url: \"${env.INV}/hooks\", events: [committed, aborted] }\n" + steps,
      "s.yaml", Env());
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_TRUE(d->notify.has_value());
  EXPECT_EQ(d->notify->url, "http://127.0.0.1:8502/hooks");
  EXPECT_EQ(d->notify->events, (std::vector<std::string>{"committed", "aborted"}));
  auto all = ParseSagaDefinition("saga: x\nnotify:\n  url: http://h/n\n" + steps, "s.yaml", Env());
  ASSERT_TRUE(all.ok()) << all.status().message();
  EXPECT_TRUE(all->notify->events.empty()) << "no events: all of them";
  EXPECT_FALSE(ParseSagaDefinition("saga: x\n" + steps, "s.yaml", Env())->notify.has_value());

  EXPECT_EQ(ErrorOf("saga: x\nnotify:\n  url: ftp://h/n\n" + steps),
            "s.yaml:3: notify.url: must be an http:// URL");
  EXPECT_EQ(ErrorOf("saga: x\nnotify:\n  events: [committed]\n" + steps),
            "s.yaml:3: notify.url: is required (a URL)");
  EXPECT_EQ(ErrorOf("saga: x\nnotify:\n  url: http://h/n\n  events: [committed, done]\n" + steps),
            "s.yaml:4: notify.events[1]: \"done\" is not committed, aborted or attention");
  EXPECT_EQ(ErrorOf("saga: x\nnotify:\n  url: http://h/n\n  events: []\n" + steps),
            "s.yaml:4: notify.events: must be a non-empty list of committed, aborted, attention");
  EXPECT_EQ(ErrorOf("saga: x\nnotify:\n  url: http://h/n\n  secret: s\n" + steps),
            "s.yaml:4: notify.secret: unknown key (expected one of: events, url)");
  EXPECT_EQ(ErrorOf("saga: x\nnotify: http://h/n\n" + steps),
            "s.yaml:2: notify: must be a mapping of url and events");
  EXPECT_EQ(ErrorOf("saga: x\nnotify:\n  url: ${env.NOPE}/n\n" + steps),
            "s.yaml:3: notify.url: environment variable NOPE is not set");
  EXPECT_EQ(ErrorOf("saga: x\nnotfy: {}\n" + steps),
            "s.yaml:2: notfy: unknown key (expected one of: notify, saga, steps)");
}

constexpr const char* kWithOutputs = R"(saga: book
steps:
  - name: reserve
    action: http://127.0.0.1:1/reserve
    compensate: http://127.0.0.1:1/release
    compensate_payload: { id: "${steps.reserve.output.reservation_id}", sku: "${input.sku}" }
    compensate_timeout: 9s
    compensate_retry: { attempts: 8, backoff: 1s, max_backoff: 1m }
  - name: pay
    after: [reserve]
    action: http://127.0.0.1:1/pay
    payload: { reservation: "${steps.reserve.output.reservation_id}", qty: "${input.qty}" }
    retry: { attempts: 3, backoff: 250ms }
)";

TEST(SagaDefinition, StepOutputsAndRetryPoliciesReachTheBranches) {
  auto d = ParseSagaDefinition(kWithOutputs, "s.yaml", Env());
  ASSERT_TRUE(d.ok()) << d.status().message();
  Poco::JSON::Parser parser;
  auto input = parser.parse(R"({"sku":"A","qty":2})").extract<Poco::JSON::Object::Ptr>();
  auto branches = Instantiate(*d, input);
  ASSERT_TRUE(branches.ok()) << branches.status().message();
  const core::BranchSpec& reserve = (*branches)[0];
  const core::BranchSpec& pay = (*branches)[1];
  EXPECT_EQ(pay.payload_json, R"({"qty":2,"reservation":"${steps.reserve.output.reservation_id}"})")
      << "input filled now, outputs at the call";
  EXPECT_EQ(pay.retry, (core::OpRetry{.attempts = 3, .backoff = std::chrono::milliseconds(250)}));
  const core::OpSettings& c = reserve.op_settings.at("compensate");
  EXPECT_EQ(c.payload_json, R"({"id":"${steps.reserve.output.reservation_id}","sku":"A"})");
  EXPECT_EQ(c.timeout, std::chrono::seconds(9));
  EXPECT_EQ(c.retry, (core::OpRetry{.attempts = 8,
                                    .backoff = std::chrono::seconds(1),
                                    .max_backoff = std::chrono::minutes(1)}));
  EXPECT_EQ(d->text, kWithOutputs);
}

TEST(SagaDefinition, AnOutputOfAStepThatIsNotAnAncestorIsRefusedWithItsLineAndKey) {
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n"
                    "  - name: b\n    action: http://h/b\n"
                    "    payload: { id: \"${steps.a.output.id}\" }\n"),
            "s.yaml:7: steps[1].payload.id: names the output of step a, which is not one it runs "
            "after (list it, or a step after it, in after)");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n"
                    "    payload: { id: \"${steps.a.output}\" }\n"),
            "s.yaml:5: steps[0].payload.id: names the output of step a, its own (only its "
            "compensation's payload can)");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n"
                    "    payload: { id: \"${steps.a}\" }\n"),
            "s.yaml:5: steps[0].payload.id: bad placeholder ${steps.a} (write "
            "${steps.<step>.output} or ${steps.<step>.output.<field>})");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n"
                    "    payload: { id: \"${steps.zz.output.id}\" }\n"),
            "s.yaml:5: steps[0].payload.id: names the output of step zz, which does not exist");
}

TEST(SagaDefinition, ARetryPolicyIsChecked) {
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n"
                    "    retry: { attempts: 0 }\n"),
            "s.yaml:5: steps[0].retry.attempts: must be a whole number from 1 to 1000");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n"
                    "    retry: { backoff: soon }\n"),
            "s.yaml:5: steps[0].retry.backoff: not a positive duration of at most 24h (write e.g. "
            "500ms, 3s)");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n"
                    "    retry: { tries: 2 }\n"),
            "s.yaml:5: steps[0].retry.tries: unknown key (expected one of: attempts, backoff, "
            "max_backoff)");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n"
                    "    retry: { backoff: 2s, max_backoff: 1s }\n"),
            "s.yaml:5: steps[0].retry.max_backoff: must not be below backoff");
  EXPECT_EQ(ErrorOf("saga: x\nsteps:\n  - name: a\n    action: http://h/a\n"
                    "    compensate_timeout: 2s\n"),
            "s.yaml:5: steps[0].compensate_timeout: applies to a step with compensate");
}

}  // namespace
}  // namespace treaty::saga
