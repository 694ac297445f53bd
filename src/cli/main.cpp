// pg_hactl: command-line parsing (CLI11) and dispatch only.
//
//   pg_hactl boot --config FILE --pgdata DIR [--timeout SECONDS]     (cli/boot.cpp)
//   pg_hactl boot --patroni-config YAML --config FILE [--pgdata DIR]  (writes FILE from YAML first)
//   pg_hactl patroni-config YAML [--get KEY]                          (cli/patroni_config.cpp)
//   pg_hactl stop --config FILE --pgdata DIR [--mode fast] [--timeout S] (cli/stop.cpp)
//   pg_hactl list|switchover|failover|pause|resume|history|show-config|edit-config|restart|reinit
//                                                                      (cli/commands.cpp)
//
// One error model: every command throws cli::CommandError; main prints
// "pg_hactl: <message>" and exits with its code. Exit codes: 0 ok, 1 failed
// or refused, 2 usage error, 3 ZooKeeper or the REST API unreachable.
#include "core/no_postgres.hpp"

#include <cctype>
#include <cstdlib>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/boot.hpp"
#include "cli/commands.hpp"
#include "cli/patroni_config.hpp"
#include "cli/pgdata.hpp"
#include "cli/stop.hpp"
#include "core/dynamic_config.hpp"
#include "core/node_settings.hpp"
#include "core/settings_file.hpp"

namespace pgha::cli {
namespace {

void usage() {
    std::cerr << "usage: pg_hactl COMMAND [options]   (pg_hactl COMMAND --help for details)\n"
                 "  boot         --config FILE --pgdata DIR [--timeout SECONDS]\n"
                 "  boot         --patroni-config YAML --config FILE [--pgdata DIR] [--timeout SECONDS]\n"
                 "               (writes FILE from Patroni's YAML, $PGHA_PATRONI_CONFIG, then boots)\n"
                 "  stop         --pgdata DIR [--mode smart|fast|immediate] [--timeout SECONDS]\n"
                 "               (stops PostgreSQL; a primary hands the leader lock over at once)\n"
                 "  patroni-config YAML [--get data_dir|bin_dir|name|SETTING]\n"
                 "               (checks a Patroni YAML file: warnings for what pg_ha does not use)\n"
                 "  list         [--format table|json]\n"
                 "  switchover   [--leader L] [--candidate X] [--scheduled ISO8601|now] [--force]\n"
                 "  failover     --candidate X [--force]\n"
                 "  pause        [--wait [SECONDS]]\n"
                 "  resume       [--wait [SECONDS]]\n"
                 "  history      [--format table|json]\n"
                 "  show-config  [--format yaml|json]\n"
                 "  edit-config  (--set KEY=VALUE ... | --profile NAME | --file FILE | --file -) [--replace] [--force]\n"
                 "  restart      [MEMBER ...] [--pending] [--role primary|replica|any] [--scheduled TIME | --cancel] [--timeout S] [--force]\n"
                 "  reinit       MEMBER [--force]\n"
                 "Every command reads the settings file given by --config FILE (or $PGHA_CONFIG_FILE):\n"
                 "pg_ha.scope, pg_ha.namespace, pg_ha.zookeeper_hosts, and for the REST API\n"
                 "pg_ha.restapi_username/pg_ha.restapi_password and pg_ha.restapi_cafile.\n"
                 "Exit codes: 0 ok, 1 failed or refused, 2 usage error, 3 ZooKeeper or REST API unreachable.\n";
}

}  // namespace
}  // namespace pgha::cli

int main(int argc, char **argv) {
    namespace cli = pgha::cli;
    if (argc < 2) {
        cli::usage();
        return cli::kExitUsage;
    }

    CLI::App app{"pg_hactl: pg_ha bootstrap and operator commands"};
    app.fallthrough();  // global options (--config) also after the command
    app.require_subcommand(1);
    std::string config, format;
    app.add_option("-c,--config", config, "settings file (default: $PGHA_CONFIG_FILE)");

    std::string pgdata;
    int timeout = 300;
    auto *boot = app.add_subcommand("boot", "prepare the data directory before postgres starts");
    boot->add_option("-D,--pgdata", pgdata, "data directory (default: $PGDATA)");
    boot->add_option("--timeout", timeout, "seconds to wait for ZooKeeper / a leader");
    std::string patroni_config;
    boot->add_option("--patroni-config", patroni_config,
                     "Patroni YAML file to write the settings file (--config) from (default: $PGHA_PATRONI_CONFIG)");

    cli::StopOptions stop_o;
    auto *stop = app.add_subcommand("stop", "stop PostgreSQL; a primary hands the leader lock over at once");
    stop->add_option("-D,--pgdata", stop_o.pgdata, "data directory (default: $PGDATA)");
    stop->add_option("-m,--mode", stop_o.mode, "pg_ctl shutdown mode: smart, fast (default) or immediate");
    stop->add_option("-t,--timeout", stop_o.timeout_s, "seconds pg_ctl waits for the shutdown (default 120)");

    std::string settings_get;
    auto *settings = app.add_subcommand("settings", "check the settings file (--config) as the server reads it");
    settings->add_option("--get", settings_get, "print one value (not a password)");

    std::string patroni_file, patroni_get;
    auto *patroni = app.add_subcommand("patroni-config", "check a Patroni YAML file (what pg_ha uses of it)");
    patroni->add_option("file", patroni_file, "Patroni YAML file")->required();
    patroni->add_option("--get", patroni_get, "print one value: data_dir, bin_dir, name or a settings key");

    auto *list = app.add_subcommand("list", "members, roles, states and lag");
    list->add_option("--format", format, "table or json");

    cli::SwitchoverOptions sw;
    auto *switchover = app.add_subcommand("switchover", "hand the leader role to another member");
    switchover->add_option("--leader,--master", sw.leader, "the current leader (checked)");
    switchover->add_option("--candidate", sw.candidate, "the new leader (default: the leader picks)");
    switchover->add_option("--scheduled", sw.scheduled, "ISO 8601 time with a zone, or now");
    switchover->add_flag("--force", sw.force, "do not ask for confirmation");

    cli::SwitchoverOptions fo;
    fo.failover = true;
    auto *failover = app.add_subcommand("failover", "make a member the leader (also without a healthy leader)");
    failover->add_option("--candidate", fo.candidate, "the new leader")->required();
    failover->add_option("--leader,--master", fo.leader, "the current leader (checked)");
    failover->add_flag("--force", fo.force, "do not ask for confirmation");

    int wait_s = 0;
    auto *pause = app.add_subcommand("pause", "maintenance mode: no automatic failover");
    auto *resume = app.add_subcommand("resume", "leave maintenance mode");
    for (auto *sub : {pause, resume})
        sub->add_option("--wait", wait_s, "wait until every member reports it (seconds, default 60)")
            ->expected(0, 1)
            ->default_str("60");

    auto *history = app.add_subcommand("history", "timeline history (switchovers and failovers)");
    history->add_option("--format", format, "table or json");

    auto *show_config = app.add_subcommand("show-config", "the dynamic configuration (config znode)");
    show_config->add_option("--format", format, "yaml or json");

    cli::EditConfigOptions ec;
    auto *edit_config = app.add_subcommand("edit-config", "change the dynamic configuration (validated)");
    edit_config->add_option("-s,--set", ec.set, "KEY=VALUE (dotted keys for nested settings; null removes)");
    edit_config->add_option("--file,--apply", ec.file, "JSON merge patch from FILE, - for standard input");
    edit_config->add_option("--profile", ec.profile,
                            "timing profile: ttl, loop_wait and retry_timeout together (" + pgha::timing_profile_names() +
                                "); --set wins over it");
    edit_config->add_flag("--replace", ec.replace, "the file replaces the whole configuration");
    edit_config->add_flag("--force", ec.force, "do not ask for confirmation");

    std::string member;
    bool member_force = false;
    cli::RestartOptions ro;
    auto *restart = app.add_subcommand("restart", "restart members' PostgreSQL (via their REST API)");
    restart->add_option("member", ro.members, "member names (none: every member, the leader last)");
    restart->add_flag("--pending", ro.pending, "only members whose PostgreSQL has a pending restart");
    restart->add_option("--role", ro.role, "only members in this role")->check(CLI::IsMember({"primary", "replica", "any"}));
    restart->add_option("--scheduled", ro.scheduled,
                        "restart at this time (ISO 8601 with a time zone, e.g. 2026-12-24T03:00:00+00:00), not now");
    restart->add_flag("--cancel", ro.cancel, "cancel the members' scheduled restarts instead");
    restart->add_option("--timeout", ro.timeout_s,
                        "seconds a restarted primary may take to start before another member takes over "
                        "(POST /restart \"timeout\"; default: primary_start_timeout)")
        ->check(CLI::Range(1, 86400));
    restart->add_flag("--force", ro.force, "do not ask for confirmation");
    auto *reinit = app.add_subcommand("reinit", "re-clone a replica from the leader (via its REST API)");
    reinit->add_option("member", member, "member name")->required();
    reinit->add_flag("--force", member_force, "do not ask for confirmation");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp &e) {
        return app.exit(e);
    } catch (const CLI::ParseError &e) {
        std::cerr << "pg_hactl: " << e.what() << " (see pg_hactl --help)" << std::endl;
        return cli::kExitUsage;
    }
    // --wait given without a number: the default.
    for (auto *sub : {pause, resume})
        if (sub->parsed() && sub->count("--wait") > 0 && wait_s <= 0) wait_s = 60;

    if (patroni->parsed()) {
        // No secrets printed: --get of a password is refused.
        if (!pgha::cli::file_exists(patroni_file)) {
            std::cerr << "pg_hactl: cannot read " << patroni_file << std::endl;
            return cli::kExitFailed;
        }
        const cli::PatroniConfig pc = cli::read_patroni_config(cli::read_file(patroni_file));
        for (const auto &w : pc.warnings) std::cerr << "pg_hactl: warning: " << patroni_file << ": " << w << std::endl;
        for (const auto &e : pc.errors) std::cerr << "pg_hactl: error: " << patroni_file << ": " << e << std::endl;
        if (!pc.ok()) return cli::kExitFailed;
        if (patroni_get.empty()) return cli::kExitOk;
        if (patroni_get.find("password") != std::string::npos) {
            std::cerr << "pg_hactl: --get does not print passwords" << std::endl;
            return cli::kExitUsage;
        }
        if (patroni_get == "data_dir") std::cout << pc.data_dir << std::endl;
        else if (patroni_get == "bin_dir") std::cout << pc.bin_dir << std::endl;
        else if (patroni_get == "name") std::cout << pc.name << std::endl;
        else std::cout << pc.setting(patroni_get) << std::endl;
        return cli::kExitOk;
    }
    if (config.empty() && std::getenv("PGHA_CONFIG_FILE")) config = std::getenv("PGHA_CONFIG_FILE");
    if (config.empty()) {
        std::cerr << "pg_hactl: --config is required (or set PGHA_CONFIG_FILE)" << std::endl;
        return cli::kExitUsage;
    }
    if (settings->parsed()) {
        // The same reader pg_hactl uses everywhere (PostgreSQL's file syntax,
        // includes): what it prints is what the server reads.
        pgha::SettingsFile f;
        std::string err;
        if (!pgha::load_settings_file(config, f, err)) {
            std::cerr << "pg_hactl: " << err << std::endl;
            return cli::kExitUsage;
        }
        for (const auto &e : f.errors) std::cerr << "pg_hactl: error: " << e << std::endl;
        if (!f.errors.empty()) return cli::kExitFailed;
        if (settings_get.empty()) return cli::kExitOk;
        std::string key = settings_get;
        for (auto &ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        const std::string bare = key.rfind("pg_ha.", 0) == 0 ? key.substr(6) : key;
        for (const auto &row : pgha::setting_rows())
            if (row.secret && row.name == bare) {
                std::cerr << "pg_hactl: " << key << " is a secret; not printed" << std::endl;
                return cli::kExitUsage;
            }
        if (key.find("password") != std::string::npos) {
            std::cerr << "pg_hactl: " << key << " looks like a secret; not printed" << std::endl;
            return cli::kExitUsage;
        }
        std::cout << f.get(key) << std::endl;
        return cli::kExitOk;
    }
    try {
        if (boot->parsed()) {
            if (pgdata.empty() && std::getenv("PGDATA")) pgdata = std::getenv("PGDATA");
            if (patroni_config.empty() && std::getenv("PGHA_PATRONI_CONFIG")) patroni_config = std::getenv("PGHA_PATRONI_CONFIG");
            if (!patroni_config.empty()) {
                cli::NodeConfig c = cli::load_patroni_node_config(patroni_config, config, pgdata);
                c.timeout_s = timeout > 0 ? timeout : 300;
                return cli::cmd_boot(c);
            }
            if (pgdata.empty()) cli::fail(cli::kExitUsage, "boot needs --pgdata");
            cli::NodeConfig c = cli::load_node_config(config);
            c.timeout_s = timeout > 0 ? timeout : 300;
            c.pgdata = pgdata;
            return cli::cmd_boot(c);
        }
        if (stop->parsed()) {
            if (stop_o.pgdata.empty() && std::getenv("PGDATA")) stop_o.pgdata = std::getenv("PGDATA");
            stop_o.config = config;
            return cli::cmd_stop(stop_o);
        }
        const cli::OperatorSettings s = cli::load_operator_settings(config);
        if (list->parsed()) return cli::cmd_list(s, format.empty() ? "table" : format);
        if (switchover->parsed()) return cli::cmd_switchover(s, sw);
        if (failover->parsed()) return cli::cmd_switchover(s, fo);
        if (pause->parsed()) return cli::cmd_pause(s, true, wait_s);
        if (resume->parsed()) return cli::cmd_pause(s, false, wait_s);
        if (history->parsed()) return cli::cmd_history(s, format.empty() ? "table" : format);
        if (show_config->parsed()) return cli::cmd_show_config(s, format.empty() ? "yaml" : format);
        if (edit_config->parsed()) return cli::cmd_edit_config(s, ec);
        if (restart->parsed()) return cli::cmd_restart(s, ro);
        if (reinit->parsed()) return cli::cmd_member_action(s, "reinitialize", member, member_force);
    } catch (const cli::CommandError &e) {
        std::cerr << "pg_hactl: " << e.what() << std::endl;
        return e.code;
    } catch (const std::exception &e) {
        std::cerr << "pg_hactl: " << e.what() << std::endl;
        return cli::kExitFailed;
    }
    pgha::cli::usage();
    return cli::kExitUsage;
}
