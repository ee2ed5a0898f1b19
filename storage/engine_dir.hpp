// Claiming an engine's directory: every engine directory holds an ENGINE marker naming its
// kind and format, and a LOCK file held while the engine is open.
#pragma once

#include <memory>

#include "storage/engine.hpp"

namespace apsis::storage {

/// Creates opts.dir if missing and locks it. A directory holding another kind's marker, or
/// files but no marker, is refused with invalid_argument and left untouched; a directory
/// locked by someone else gives busy.
Status claim_dir(const EngineOptions& opts, std::unique_ptr<FileLock>* lock);

}  // namespace apsis::storage
