#include "coordinator/core/trace_context.h"

#include <gtest/gtest.h>

#include "coordinator/core/testing/fakes.h"

namespace treaty::core {
namespace {

TEST(TraceContext, ParsesAValidTraceparent) {
  auto tp = ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ASSERT_TRUE(tp.has_value());
  EXPECT_EQ(tp->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(tp->span_id, "00f067aa0ba902b7");
  EXPECT_EQ(tp->flags, "01");
  // A later version may append fields; version 00 may not.
  EXPECT_TRUE(ParseTraceParent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz"));
  EXPECT_FALSE(ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz"));
}

TEST(TraceContext, RefusesWhatTheSpecSaysToIgnore) {
  for (const char* bad : {
           "",
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero span id
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
           "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",  // misplaced dash
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",  // bad flags
       }) {
    EXPECT_FALSE(ParseTraceParent(bad).has_value()) << bad;
  }
}

TEST(TraceContext, KeepsTheCallersTraceAndStartsItsOwnSpan) {
  testing::CountingIds ids;
  CallContext c = NewCallContext(ids, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                                 "k=v", {{"authorization", "Bearer x"}, {"x-tenant-id", "t1"}});
  EXPECT_EQ(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(c.parent_span_id, "00f067aa0ba902b7");
  EXPECT_EQ(c.span_id.size(), 16u);
  EXPECT_EQ(c.trace_flags, "00");
  EXPECT_EQ(c.tracestate, "k=v");
  EXPECT_EQ(c.secret, (std::set<std::string>{"authorization"}));
  auto shown = ShownHeaders(c);
  EXPECT_EQ(shown["authorization"], kMaskedValue);
  EXPECT_EQ(shown["x-tenant-id"], "t1");

  auto headers = CallHeaders(c, ids);
  auto tp = ParseTraceParent(headers["traceparent"]);
  ASSERT_TRUE(tp.has_value()) << headers["traceparent"];
  EXPECT_EQ(tp->trace_id, c.trace_id);
  EXPECT_EQ(tp->flags, "00");
  EXPECT_EQ(headers["tracestate"], "k=v");
  EXPECT_EQ(headers["authorization"], "Bearer x");
}

TEST(TraceContext, StartsANewTraceWithoutAValidParent) {
  testing::CountingIds ids;
  CallContext c = NewCallContext(ids, "garbage", "k=v", {});
  EXPECT_TRUE(ParseTraceParent(FormatTraceParent(c.trace_id, c.span_id, c.trace_flags)))
      << c.trace_id << " " << c.span_id;
  EXPECT_EQ(c.parent_span_id, "");
  EXPECT_EQ(c.tracestate, "") << "a tracestate means nothing without its traceparent";
  EXPECT_EQ(CallHeaders(c, ids).count("tracestate"), 0u);
  EXPECT_TRUE(CallHeaders(CallContext{}, ids).empty()) << "no context, nothing sent";
}

}  // namespace
}  // namespace treaty::core
