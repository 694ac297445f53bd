// For the unit tests: the C boundary around an engine built with fakes.
#pragma once

#include "core/no_postgres.hpp"

#include <memory>

#include "engine/deps.hpp"
#include "engine/engine.hpp"
#include "pg/engine_api.h"

PgHaEngine *pgha_engine_wrap(std::unique_ptr<pgha::Engine> engine, pgha::Clock clock);
