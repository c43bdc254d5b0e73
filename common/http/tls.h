#pragma once

// OpenSSL through Poco's NetSSL, set up once per process: certificates that do not verify are
// rejected (never accepted on a prompt or by default), whatever context a session uses.

namespace treaty::http {

// Idempotent and thread-safe; every TLS user calls it before making a context.
void InitTls();

}  // namespace treaty::http
