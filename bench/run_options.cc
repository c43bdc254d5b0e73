#include "bench/run_options.h"

#include <iostream>

namespace treaty::bench {

RunOptions OptionsFor(const std::string& kind) {
  if (kind == "smoke") {
    return {std::chrono::milliseconds(300),
            std::chrono::seconds(1),
            {1, 8},
            {2, 4},
            8,
            2000,
            2000,
            5000,
            kind};
  }
  if (kind == "quick") {
    return {std::chrono::seconds(1),
            std::chrono::seconds(4),
            {1, 8, 32, 128},
            {2, 4, 8},
            32,
            50000,
            20000,
            100000,
            kind};
  }
  return {std::chrono::seconds(3),
          std::chrono::seconds(15),
          {1, 8, 32, 128},
          {2, 4, 8},
          32,
          200000,
          100000,
          500000,
          kind};
}

std::string Say(const std::string& line) {
  std::cerr << "==> " << line << std::endl;
  return line;
}

}  // namespace treaty::bench
