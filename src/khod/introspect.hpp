// `khod --bus-introspect`: the XML that the running code really exports,
// obtained by serving the objects on a private socketpair and calling
// org.freedesktop.DBus.Introspectable.Introspect on them.
#pragma once

#include <string>

#include "khod/base/result.hpp"

namespace khod {

Result<std::string> introspect_exported_objects();

}  // namespace khod
