#pragma once
#include "core/no_postgres.hpp"
#define PG_HA_VERSION "0.1.0"
