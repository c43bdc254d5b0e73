#pragma once

// The whole core (every mode's processor, the driver, the service) over the in-memory store and
// the fakes, for tests and fuzz targets that exercise what sits on top of it (the REST API). The
// driver is not started: transactions are driven only when a test asks (DriveNow).

#include "coordinator/core/testing/fakes.h"
#include "coordinator/core/testing/in_memory_store.h"
#include "coordinator/core/transaction_service.h"
#include "coordinator/core/twopc_processor.h"
#include "coordinator/saga/saga_processor.h"
#include "mqtx/msg_processor.h"
#include "tcc/tcc_processor.h"

namespace treaty::core::testing {

struct InMemoryCoordinator {
  InMemoryCoordinator()
      : driver(DriverOptions{.owner = "node-a"}, store, transport, clock, ids, crash,
               {&twopc, &tcc, &saga, &msg}),
        service(store, driver, clock, ids, crash, std::chrono::seconds(10)) {}

  InMemoryStore store;
  ScriptedTransport transport;
  FakeClock clock;
  CountingIds ids;
  RecordingCrashPoints crash;
  TwoPhaseCommitProcessor twopc;
  TccProcessor tcc;
  SagaProcessor saga;
  MsgProcessor msg{3};
  TransactionDriver driver;
  TransactionService service;
};

}  // namespace treaty::core::testing
