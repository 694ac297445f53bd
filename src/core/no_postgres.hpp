// Included first by every file under src/core, src/dcs, src/http and
// src/watchdog. Those files run on threads other than the worker's main
// thread (or are pure logic), so they must never see PostgreSQL's API: a
// palloc/elog/ereport from them would be a memory-corruption or longjmp bug.
#pragma once
#ifdef POSTGRES_H
#error "this file must not include PostgreSQL headers: only src/pg may (README, Design notes)"
#endif
#define PGHA_NO_POSTGRES 1
