// Physical replication slots on this node: which to create, which to move
// forward and which to drop (use_slots, member_slots_ttl, ignore_slots,
// permanent `slots`). Pure: no I/O, no clocks (the caller passes now_ms).
//
// A leader keeps a slot for every member but itself, so a standby that
// falls behind or restarts finds its WAL. A member that leaves keeps its slot
// for member_slots_ttl (Patroni 4's default 30 min): it can come back
// without a new base backup, but a member that never returns does not pin
// WAL until the disk is full. The leader publishes the slots it keeps in
// the `status` key (`retain_slots`), so the next leader keeps them too.
//
// Every other inactive physical slot is dropped once it has been unknown for
// member_slots_ttl (Patroni drops it at once), unless it is a permanent slot
// of the config key or matches ignore_slots. Logical, temporary and active
// slots are never dropped.
//
// The config key's permanent physical slots are created on every node. On a
// standby they are moved forward to its replay position while inactive, so
// they pin no WAL there; a standby that takes over has the slot already, and
// the consumer goes on from the new leader's position (Patroni copies the
// leader's position instead; pg_ha does not publish slot positions yet).
//
// A standby keeps the same slots (the leader's included), so a standby that
// takes over has a slot for every member, the old leader too, before they
// connect: they are moved forward to the position each member reports (no
// further than the standby's replay position), so they pin no more WAL there
// than on the leader; the same ttl drops them.
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/lsn.hpp"

namespace pgha {

// One row of pg_replication_slots.
struct SlotRow {
    std::string name;
    std::string type;      // "physical" or "logical"
    std::string database;  // logical only
    std::string plugin;    // logical only
    bool temporary = false;
    bool active = false;
    Lsn restart_lsn = 0;   // 0: none reserved
};

// An entry of ignore_slots: every field given must match (Patroni's rule).
struct IgnoreSlot {
    std::string name, type, database, plugin;  // "" = any
};

// Parses ignore_slots ([{"name":..,"type":..,"database":..,"plugin":..}]):
// false with `error` for anything else.
bool parse_ignore_slots(const nlohmann::json &j, std::vector<IgnoreSlot> &out, std::string &error);
bool slot_ignored(const SlotRow &slot, const std::vector<IgnoreSlot> &ignore);

// PostgreSQL's rule for a slot name: 1 to 63 of a-z, 0-9 and _.
bool valid_slot_name(const std::string &name);

// The config key's permanent physical slots (`slots`: {name: {"type":
// "physical"} | 0 | null}); logical entries are not listed. False with
// `error` when `slots` is not an object (`out` empty) or a name is not a
// valid slot name (that entry left out, the others kept: no slot can have
// such a name, and the valid ones must stay protected).
bool permanent_physical_slots(const nlohmann::json &slots, std::set<std::string> &out, std::string &error);

struct SlotInputs {
    bool leader = false;
    std::int64_t now_ms = 0;
    std::int64_t ttl_ms = 1800 * 1000;
    std::string my_slot;                        // this node's own slot name
    std::map<std::string, Lsn> member_slots;    // other members' slot -> their reported position
    std::vector<std::string> retain_from_status;  // the status key's retain_slots
    std::vector<SlotRow> existing;
    std::vector<IgnoreSlot> ignore;
    std::set<std::string> permanent;
};

struct SlotPlan {
    std::vector<std::string> create;                    // a member or a permanent slot has none yet
    std::vector<std::pair<std::string, Lsn>> advance;   // standby: move forward to (capped at replay)
    std::vector<std::string> drop;                      // gone longer than the ttl
    std::vector<std::string> retain;                    // leader: for the status key (sorted)
};

// `last_seen` (slot name -> ms a member with it was seen, or when the slot
// was first seen unknown) is this node's memory; the call updates it and
// forgets names that are neither members nor present.
SlotPlan plan_slots(const SlotInputs &in, std::map<std::string, std::int64_t> &last_seen);

}  // namespace pgha
