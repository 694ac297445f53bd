// pg_hactl operator commands (like patronictl): list, switchover, failover,
// pause, resume, history, show-config, edit-config, restart, reinit.
//
// They read the cluster from ZooKeeper (Patroni's layout) and act through the
// members' REST APIs (switchover, failover, restart, reinitialize) or through
// versioned writes of the `config` znode (pause, resume, edit-config).
//
// Exit codes: 0 ok, 1 failed or refused, 2 usage error, 3 ZooKeeper or the
// REST API could not be reached. Messages go to stderr, data to stdout.
#pragma once
#include "core/no_postgres.hpp"

#include <stdexcept>
#include <string>
#include <vector>

#include "dcs/zk_acl.hpp"

namespace pgha::cli {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

// The CLI's one error model: every command (boot included) throws it, and
// main() prints "pg_hactl: <what>" and exits with `code`. Nothing below main
// calls std::exit.
struct CommandError : std::runtime_error {
    int code;
    CommandError(int c, const std::string &msg) : std::runtime_error(msg), code(c) {}
};

[[noreturn]] inline void fail(int code, const std::string &msg) { throw CommandError(code, msg); }

// What the operator commands need from the node's settings file. A node's
// file works as is; an operator may use a small file with just the first three.
// Settings only pg_hactl reads (its client certificate for verify_client),
// besides the table in core/settings.def.
inline const std::vector<std::string> kCliOnlySettings = {"ctl_certfile", "ctl_keyfile", "ctl_insecure"};

struct OperatorSettings {
    std::string scope;            // pg_ha.scope (required)
    std::string ns = "/service";  // pg_ha.namespace
    std::string zk_hosts;         // pg_ha.zookeeper_hosts (required)
    ZkAuth zk_auth;               // pg_ha.zookeeper_user/_password/_set_acls (never printed)
    std::string rest_username;    // pg_ha.restapi_username: basic auth on unsafe methods
    std::string rest_password;    // pg_ha.restapi_password
    std::string rest_cafile;      // pg_ha.restapi_cafile: CA for https api_urls
    std::string rest_certfile;    // pg_ha.ctl_certfile: client certificate (verify_client)
    std::string rest_keyfile;     // pg_ha.ctl_keyfile
    bool rest_allow_http_credentials = false;  // pg_ha.restapi_allow_http_credentials
    bool rest_insecure = false;   // pg_ha.ctl_insecure: do not verify the members' certificates
};

// Throws CommandError(kExitUsage) for a missing/unreadable file or missing keys.
OperatorSettings load_operator_settings(const std::string &path);

int cmd_list(const OperatorSettings &s, const std::string &format);

struct SwitchoverOptions {
    std::string leader;     // --leader: must match the current leader
    std::string candidate;  // --candidate: "" = the leader picks the best member
    std::string scheduled;  // --scheduled: ISO 8601 with zone, or "" / "now"
    bool force = false;     // --force: no confirmation
    bool failover = false;  // `failover` instead of `switchover`
};
int cmd_switchover(const OperatorSettings &s, const SwitchoverOptions &o);

// pause (true) / resume (false); wait_s > 0: wait until every member shows it.
int cmd_pause(const OperatorSettings &s, bool pause, int wait_s);

int cmd_history(const OperatorSettings &s, const std::string &format);
int cmd_show_config(const OperatorSettings &s, const std::string &format);

struct EditConfigOptions {
    std::vector<std::string> set;  // --set key=value (dotted keys for nested objects, value JSON or text)
    std::string file;              // --file F ("-" = stdin): a JSON merge patch
    std::string profile;           // --profile NAME: ttl, loop_wait, retry_timeout of a timing profile
    bool replace = false;          // --replace: the file is the whole new configuration
    bool force = false;            // --force: no confirmation
};
int cmd_edit_config(const OperatorSettings &s, const EditConfigOptions &o);

// action: "restart" or "reinitialize"
int cmd_member_action(const OperatorSettings &s, const std::string &action, const std::string &member, bool force);

// pg_hactl restart [MEMBER ...] [--pending] [--role R] [--force]: POST /restart
// to each member in turn (none named: every member, replicas first, the
// leader last, as a rolling change of a postmaster parameter wants) with
// Patroni's conditions; a member whose conditions do not hold is skipped.
struct RestartOptions {
    std::vector<std::string> members;
    bool pending = false;
    std::string role;  // "", primary, replica, any
    bool force = false;
    std::string scheduled;  // "" / "now" = now; else ISO 8601 with a time zone (POST /restart "schedule")
    bool cancel = false;    // DELETE /restart: drop the members' scheduled restarts
    int timeout_s = 0;      // POST /restart "timeout" (0: none): the restarted primary's start timeout
};
int cmd_restart(const OperatorSettings &s, const RestartOptions &o);

}  // namespace pgha::cli
