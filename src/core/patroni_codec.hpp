// Patroni's ZooKeeper data formats. Everything that reads znodes written by
// someone else validates and reports errors instead of throwing or guessing.
#pragma once
#include "core/no_postgres.hpp"

#include <optional>
#include <map>
#include <string>
#include <vector>

#include "core/cluster.hpp"

namespace pgha {

// members/<name>
std::string encode_member(const Member &m);
// True when the rows encode alike once their WAL positions (xlog_location,
// receive_lsn, replay_lsn) are set aside. Such a change is published at most
// once per loop_wait, as Patroni's members do once per HA loop: every write
// wakes each watcher (the leader, and the writer itself), and under write load
// the positions change on every loop. Peers that race for the lock ask each
// other's REST API for fresh positions; the znode's are for display.
bool differs_only_in_position(const Member &a, const Member &b);
// Returns nullopt (and an error text) when the data is not a JSON object.
std::optional<Member> decode_member(const std::string &name, const std::string &data, std::string &error);

// sync: {"leader":..,"sync_standby":"a,b"}; "{}" or empty means none.
std::string encode_sync(const SyncState &s);
SyncState decode_sync(const std::string &data, std::string &error);
// The `failsafe` key: {"member name": "api_url", ...}.
std::string encode_failsafe(const std::map<std::string, std::string> &members);
std::map<std::string, std::string> decode_failsafe(const std::string &data, std::string &error);

// failover: {"leader":..,"member":..,"scheduled_at":..}
std::string encode_failover(const FailoverRequest &f);
std::optional<FailoverRequest> decode_failover(const std::string &data, std::string &error);

// status: {"optime":<int>,"slots":{name:<int>}|null,"retain_slots":[names]}
// (Patroni 4; retain_slots only when given, slots null when empty). The
// leader's `slots` are the positions of the other members' slots: standbys
// move their copies with them (member rows carry positions too, but only the
// leader watches those). `retain_slots` and `slots`, when not null, receive
// the list and the map (entries of the wrong type are an error and are left out).
std::string encode_status(Lsn optime, const std::vector<std::string> &retain_slots = {},
                          const std::map<std::string, Lsn> &slots = {});
Lsn decode_status(const std::string &data, std::string &error, std::vector<std::string> *retain_slots = nullptr,
                  std::map<std::string, Lsn> *slots = nullptr);

// history: [[tl, lsn, reason, timestamp, new_leader], ...]
std::string encode_history(const std::vector<HistoryEntry> &h);
std::vector<HistoryEntry> decode_history(const std::string &data, std::string &error);

// Patroni's slot name for a member: lower case, [a-z0-9_] only, at most 63 bytes.
std::string slot_name_for_member(const std::string &member_name);

}  // namespace pgha
