// The cluster model: what ZooKeeper says about the cluster and what the local
// PostgreSQL server says about itself. Plain data, no I/O.
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dynamic_config.hpp"
#include "core/lsn.hpp"

namespace pgha {

using Json = nlohmann::json;

// Per-node tags, as in Patroni's `tags:` section.
struct Tags {
    bool nofailover = false;
    bool noloadbalance = false;
    bool nosync = false;
    bool clonefrom = false;
    Json to_json() const;
    static Tags from_json(const Json &j);  // tolerant: unknown keys ignored
    bool operator==(const Tags &o) const {
        return nofailover == o.nofailover && noloadbalance == o.noloadbalance && nosync == o.nosync &&
               clonefrom == o.clonefrom;
    }
};

// A restart a member has scheduled (POST /restart with "schedule"), as it
// publishes it in its member znode and /patroni (Patroni's
// "scheduled_restart"): the time and the conditions checked when it is due.
struct ScheduledRestart {
    std::string schedule;          // ISO 8601 (format_iso8601)
    std::string role;              // "" = any
    std::string postgres_version;  // "" = any
    bool restart_pending = false;
    Json to_json() const;
    static std::optional<ScheduledRestart> from_json(const Json &j);  // nullopt unless {"schedule": string, ...}
    bool operator==(const ScheduledRestart &o) const {
        return schedule == o.schedule && role == o.role && postgres_version == o.postgres_version &&
               restart_pending == o.restart_pending;
    }
};

// One members/<name> znode (Patroni's member JSON).
struct Member {
    std::string name;
    std::string conn_url;  // postgres://host:port/postgres
    std::string api_url;   // http://host:port/patroni
    std::string state;     // running, starting, stopped, crashed, ...
    std::string role;      // primary, replica, standby_leader, uninitialized
    std::string version;   // pg_ha version
    Lsn xlog_location = 0;
    int timeline = 0;
    std::string replication_state;  // streaming, in archive recovery, ""
    std::optional<Lsn> receive_lsn;
    std::optional<Lsn> replay_lsn;
    Tags tags;
    bool pause = false;
    bool pending_restart = false;  // Patroni's "pending_restart": a setting needs a restart
    std::optional<ScheduledRestart> scheduled_restart;
    std::int64_t session = 0;  // ephemeralOwner of the znode (not part of the JSON)

    // host and port from conn_url ("" / 0 when unparsable)
    std::string host() const;
    int port() const;
    // best position this member has: receive/replay for replicas, xlog for the primary
    Lsn position() const;
    // Another endpoint of the REST API this member published as api_url:
    // "http://h:8008/patroni" + "/primary" -> "http://h:8008/primary".
    // "" when api_url is empty or has no scheme.
    std::string api_endpoint(const std::string &path) const;
};

struct SyncState {
    std::string leader;
    std::vector<std::string> sync_standby;  // Patroni 4: the voters besides the leader
    // Quorum commit: a member of sync_standby racing for the lock needs this
    // many votes (members of sync_standby + leader not ahead of it). 0 = none.
    int quorum = 0;
    // False when the znode could not be read (written by someone else): with
    // synchronous mode on, nobody but the leader it names may be promoted.
    bool valid = true;
    bool empty() const { return leader.empty() && valid; }
};

struct FailoverRequest {
    std::string leader;     // switchover: the current leader; "" for failover
    std::string candidate;  // "member" in Patroni's JSON
    std::string scheduled_at;  // ISO8601 or ""
};

struct HistoryEntry {
    int timeline = 0;
    Lsn lsn = 0;
    std::string reason;
    std::string timestamp;
    std::string new_leader;
};

// Everything read from /<namespace>/<scope>/ in one pass.
struct ClusterView {
    std::optional<std::string> leader;  // leader znode content (member name)
    std::int64_t leader_owner = 0;      // ephemeralOwner (session id) of the leader znode
    std::vector<Member> members;
    DynamicConfig config;
    bool config_present = false;
    std::int64_t config_version = -1;
    std::optional<std::string> initialize;  // system identifier, "" while bootstrap runs
    SyncState sync;
    std::int64_t sync_version = -1;  // -1: no `sync` znode
    std::optional<FailoverRequest> failover;
    Lsn status_optime = 0;
    std::vector<std::string> status_retain_slots;  // the status key's retain_slots
    std::map<std::string, Lsn> status_slots;       // the status key's slots (slot name -> position)
    std::vector<HistoryEntry> history;
    // failsafe_mode: the members (name -> api_url) the leader listed while
    // ZooKeeper answered; they are the ones it asks for promises when it
    // cannot reach ZooKeeper, and only they may win a race for the lock
    // while the key exists (Patroni's `failsafe` key). `failsafe_valid` is
    // false when the key exists but could not be read (someone else's data):
    // nobody takes over on it.
    std::optional<std::map<std::string, std::string>> failsafe;
    bool failsafe_valid = true;
    // Data we could not parse (written by someone else): shown, never acted upon.
    std::vector<std::string> warnings;

    const Member *member(const std::string &name) const;
    const Member *leader_member() const;
    // Where member `m` stands, as well as this view knows: its row's
    // positions, or the newer one the leader published in the status key
    // (its optime for itself, `slots` for the others). A standby does not
    // watch member rows (dcs/cluster_cache.hpp), so its copy of a row's
    // positions is as of that member's last news; the status key is current.
    Lsn position_of(const Member &m) const;
    // Where a new replica `self` copies its data from (Patroni's
    // get_clone_member): a running member tagged clonefrom (the first by
    // name: stable), else the leader's member data; nullptr when neither.
    const Member *clone_member(const std::string &self) const;
};

// The local server as the worker observes it.
enum class PgState { Stopped, Starting, Running, Crashed };
const char *to_string(PgState s);

struct WalSender {
    std::string application_name;
    std::string client_addr;
    std::string state;       // streaming, catchup, ...
    std::string sync_state;  // async, sync, potential, quorum
    Lsn sent_lsn = 0, write_lsn = 0, flush_lsn = 0, replay_lsn = 0;
};

struct LocalState {
    PgState state = PgState::Starting;
    bool in_recovery = true;
    bool accepts_connections = false;  // a local libpq probe succeeded
    std::string system_identifier;
    int server_version = 0;  // e.g. 150020
    int timeline = 0;
    Lsn write_lsn = 0;    // primary: insert/flush position
    Lsn receive_lsn = 0;  // replica: WAL received
    Lsn replay_lsn = 0;   // replica: WAL replayed
    std::string replication_state;  // "streaming" when the WAL receiver streams
    std::string upstream_host;      // host of primary_conninfo ("" when none)
    int upstream_port = 0;
    std::vector<WalSender> replication;
    bool pending_restart = false;

    Lsn position() const { return in_recovery ? std::max(receive_lsn, replay_lsn) : write_lsn; }
};

// "postgres://host:port/db" -> host, port. Returns false when unparsable.
bool parse_conn_url(const std::string &url, std::string &host, int &port);
// "host:port" -> host, port (IPv6 in brackets, split on the last colon
// otherwise). Returns false when unparsable.
bool parse_host_port(const std::string &text, std::string &host, int &port);

// The same parser with a reason and the forms a listen address may take.
enum class HostPortForm {
    Address,  // a host to connect to: host required, port 1..65535
    Listen,   // a listen address: "" or "*" host = all addresses (host ""), port 0 = any free port
};
bool parse_host_port(const std::string &text, HostPortForm form, std::string &host, int &port, std::string &why);

}  // namespace pgha
