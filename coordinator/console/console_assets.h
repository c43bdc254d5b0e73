#pragma once

// The operator console: a static page (index.html, console.js, pictures.js, console.css in this
// folder), compiled into treatyd and served at "/" and "/console/<file>". It talks to the REST
// API only.
// docs/openapi.yaml is compiled in beside it.

#include <string>
#include <string_view>
#include <vector>

#include "common/http/router.h"

namespace treaty::console {

struct EmbeddedFile {
  std::string_view name;
  std::string_view bytes;
};

// The files of this folder, embedded at build time (cmake/embed_files.cmake).
extern const std::vector<EmbeddedFile> kAssets;

// docs/openapi.yaml, embedded the same way.
std::string_view OpenApiDocument();

// Adds GET "/" (the page) and GET "/console/{file}" to `router`. The answers carry their content
// type and a Content-Security-Policy that allows nothing but this origin.
void RegisterConsole(http::Router& router);

}  // namespace treaty::console
