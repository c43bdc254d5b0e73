#include "coordinator/console/console_assets.h"

namespace treaty::console {
namespace {

std::string ContentType(std::string_view name) {
  auto ends_with = [&](std::string_view suffix) {
    return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  };
  if (ends_with(".html")) return "text/html; charset=utf-8";
  if (ends_with(".js")) return "text/javascript; charset=utf-8";
  if (ends_with(".css")) return "text/css; charset=utf-8";
  return "application/octet-stream";
}

http::ApiResponse Serve(const EmbeddedFile& file) {
  http::ApiResponse r{200, ContentType(file.name), std::string(file.bytes)};
  r.headers = {
      // The page loads nothing from anywhere else, and nothing may frame it.
      {"Content-Security-Policy",
       "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"},
      {"X-Frame-Options", "DENY"},
      {"Referrer-Policy", "no-referrer"},
      {"Cache-Control", "no-cache"},
  };
  return r;
}

const EmbeddedFile* Find(std::string_view name) {
  for (const EmbeddedFile& f : kAssets) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

}  // namespace

std::string_view OpenApiDocument() { return Find("openapi.yaml")->bytes; }

void RegisterConsole(http::Router& router) {
  router.Add("GET", "/", [](const http::ApiRequest&) { return Serve(*Find("index.html")); });
  router.Add("GET", "/console/{file}", [](const http::ApiRequest& r) {
    const std::string& name = r.path_params.at("file");
    // Only the page's own script and style sheet; the page itself is "/".
    const EmbeddedFile* f = name.ends_with(".js") || name.ends_with(".css") ? Find(name) : nullptr;
    if (f == nullptr) return http::JsonError(404, "not_found", "no console file " + name);
    return Serve(*f);
  });
}

}  // namespace treaty::console
