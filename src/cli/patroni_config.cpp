// Patroni YAML -> pg_ha configuration. See patroni_config.hpp.
#include "cli/patroni_config.hpp"

#include <algorithm>
#include <cctype>
#include <regex>
#include <set>
#include <tuple>

#include <yaml-cpp/yaml.h>

#include "cli/pgdata.hpp"
#include "core/patroni_parameters.hpp"

namespace pgha::cli {

using nlohmann::json;

namespace {

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}
std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
    return s;
}

// YAML 1.1 booleans (PyYAML, which Patroni uses, reads `on`/`yes` as true).
bool yaml_bool(const std::string &text, bool &out) {
    const std::string s = lower(text);
    if (s == "true" || s == "yes" || s == "on" || s == "y") out = true;
    else if (s == "false" || s == "no" || s == "off" || s == "n") out = false;
    else return false;
    return true;
}

// A YAML node as JSON, scalars typed the way PyYAML types plain scalars;
// quoted scalars stay strings.
json to_json(const YAML::Node &n) {
    switch (n.Type()) {
        case YAML::NodeType::Map: {
            json j = json::object();
            for (const auto &kv : n) j[kv.first.Scalar()] = to_json(kv.second);
            return j;
        }
        case YAML::NodeType::Sequence: {
            json j = json::array();
            for (const auto &e : n) j.push_back(to_json(e));
            return j;
        }
        case YAML::NodeType::Scalar: {
            const std::string &s = n.Scalar();
            if (n.Tag() == "!") return s;  // quoted
            bool b;
            if (yaml_bool(s, b)) return b;
            if (s == "~" || lower(s) == "null") return nullptr;
            static const std::regex integer("[-+]?[0-9]+"), real("[-+]?([0-9]+\\.[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?");
            try {
                if (std::regex_match(s, integer)) return std::stoll(s);
                if (std::regex_match(s, real)) return std::stod(s);
            } catch (const std::exception &) {
            }
            return s;
        }
        default: return nullptr;
    }
}

class Reader {
  public:
    PatroniConfig c;

    void warn(const std::string &path, const std::string &why) { c.warnings.push_back(path + ": " + why); }
    void error(const std::string &path, const std::string &why) { c.errors.push_back(path + ": " + why); }
    void set(const std::string &key, const std::string &value) {
        for (auto &kv : c.settings)
            if (kv.first == key) {
                kv.second = value;
                return;
            }
        c.settings.emplace_back(key, value);
    }

    // A scalar's text, or an error naming the path.
    bool scalar(const YAML::Node &n, const std::string &path, std::string &out) {
        if (!n || n.IsNull()) return false;
        if (!n.IsScalar()) {
            error(path, "expected a single value");
            return false;
        }
        out = n.Scalar();
        return true;
    }
    void setting(const YAML::Node &n, const std::string &path, const std::string &key) {
        std::string v;
        if (scalar(n, path, v)) set("pg_ha." + key, v);
    }
    void bool_setting(const YAML::Node &n, const std::string &path, const std::string &key) {
        std::string v;
        bool b;
        if (!scalar(n, path, v)) return;
        if (!yaml_bool(v, b)) return error(path, "\"" + v + "\" is not a boolean");
        set("pg_ha." + key, b ? "on" : "off");
    }
    // Every key of `map` not in `known` is a warning.
    void unknown_keys(const YAML::Node &map, const std::string &prefix, const std::set<std::string> &known,
                      const std::string &why = "not supported by pg_ha; ignored") {
        for (const auto &kv : map) {
            const std::string k = kv.first.Scalar();
            if (!known.count(k)) warn(prefix + k, why);
        }
    }
    bool map_at(const YAML::Node &n, const std::string &path) {
        if (!n || n.IsNull()) return false;
        if (!n.IsMap()) {
            error(path, "expected a mapping");
            return false;
        }
        return true;
    }

    void read(const YAML::Node &root);

  private:
    void restapi(const YAML::Node &n);
    void zookeeper(const YAML::Node &n);
    void bootstrap(const YAML::Node &n);
    void postgresql(const YAML::Node &n);
    void watchdog(const YAML::Node &n);
    void tags(const YAML::Node &n);
    void dcs(const YAML::Node &n);
    void local_pg_hba(const YAML::Node &n, const std::string &path, std::vector<std::string> &out);
};

void Reader::read(const YAML::Node &root) {
    if (!root.IsMap()) return error("(top level)", "expected a mapping of Patroni settings");
    static const std::set<std::string> known = {"scope", "namespace", "name", "restapi", "zookeeper", "bootstrap",
                                                "postgresql", "watchdog", "tags", "log", "ctl"};
    for (const auto &kv : root) {
        const std::string k = kv.first.Scalar();
        if (k == "etcd" || k == "etcd3" || k == "consul" || k == "kubernetes" || k == "raft" || k == "exhibitor")
            warn(k, "pg_ha uses ZooKeeper only (zookeeper.hosts); this DCS section is ignored");
        else if (!known.count(k)) warn(k, "not supported by pg_ha; ignored");
    }
    std::string v;
    if (scalar(root["scope"], "scope", v)) set("pg_ha.scope", v);
    else error("scope", "missing: the cluster's name is required");
    if (scalar(root["namespace"], "namespace", v)) {
        while (v.size() > 1 && v.back() == '/') v.pop_back();
        if (v.empty() || v[0] != '/') v = "/" + v;
        set("pg_ha.namespace", v);
    }
    if (scalar(root["name"], "name", v)) {
        c.name = v;
        set("pg_ha.node_name", v);
    } else {
        error("name", "missing: this member's name is required");
    }
    if (map_at(root["restapi"], "restapi")) restapi(root["restapi"]);
    if (map_at(root["zookeeper"], "zookeeper")) zookeeper(root["zookeeper"]);
    else error("zookeeper", "missing: pg_ha needs zookeeper.hosts");
    if (map_at(root["postgresql"], "postgresql")) postgresql(root["postgresql"]);
    else error("postgresql", "missing");
    if (map_at(root["bootstrap"], "bootstrap")) bootstrap(root["bootstrap"]);
    if (map_at(root["watchdog"], "watchdog")) watchdog(root["watchdog"]);
    if (map_at(root["tags"], "tags")) tags(root["tags"]);
    if (map_at(root["log"], "log"))
        unknown_keys(root["log"], "log.", {}, "pg_ha logs through PostgreSQL's server log (logging_collector, log_directory); ignored");
    if (map_at(root["ctl"], "ctl")) {
        const YAML::Node ctl = root["ctl"];
        unknown_keys(ctl, "ctl.", {"certfile", "keyfile", "insecure"});
        setting(ctl["certfile"], "ctl.certfile", "ctl_certfile");
        setting(ctl["keyfile"], "ctl.keyfile", "ctl_keyfile");
        bool_setting(ctl["insecure"], "ctl.insecure", "ctl_insecure");
    }
}

// "host:port" with a non-wildcard host (peers use it to reach this node).
void check_connect_address(Reader &r, const std::string &path, const std::string &v) {
    const auto colon = v.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == v.size())
        return r.error(path, "\"" + v + "\" is not host:port");
    const std::string host = v.substr(0, colon);
    if (host == "0.0.0.0" || host == "::" || host == "[::]" || host == "*")
        r.warn(path, "\"" + v + "\" is a wildcard address other members cannot connect to; use this host's name or address");
}

void Reader::restapi(const YAML::Node &n) {
    unknown_keys(n, "restapi.", {"listen", "connect_address", "certfile", "keyfile", "keyfile_password", "cafile",
                                 "verify_client", "authentication", "allowlist", "allowlist_include_members"});
    setting(n["listen"], "restapi.listen", "api_listen");
    if (const YAML::Node a = n["allowlist"]; a && a.IsSequence()) {
        std::string list;
        for (const auto &e : a) {
            std::string one;
            if (scalar(e, "restapi.allowlist", one)) list += (list.empty() ? "" : ",") + one;
        }
        set("pg_ha.restapi_allowlist", list);
    } else if (a && !a.IsNull()) {
        error("restapi.allowlist", "expected a list of addresses or networks");
    }
    bool_setting(n["allowlist_include_members"], "restapi.allowlist_include_members",
                 "restapi_allowlist_include_members");
    std::string v;
    if (scalar(n["connect_address"], "restapi.connect_address", v)) {
        check_connect_address(*this, "restapi.connect_address", v);
        set("pg_ha.api_connect_address", v);
    }
    setting(n["certfile"], "restapi.certfile", "restapi_certfile");
    setting(n["keyfile"], "restapi.keyfile", "restapi_keyfile");
    setting(n["keyfile_password"], "restapi.keyfile_password", "restapi_keyfile_password");
    setting(n["cafile"], "restapi.cafile", "restapi_cafile");
    setting(n["verify_client"], "restapi.verify_client", "restapi_verify_client");
    if (map_at(n["authentication"], "restapi.authentication")) {
        const YAML::Node a = n["authentication"];
        unknown_keys(a, "restapi.authentication.", {"username", "password"});
        setting(a["username"], "restapi.authentication.username", "restapi_username");
        setting(a["password"], "restapi.authentication.password", "restapi_password");
    }
}

void Reader::zookeeper(const YAML::Node &n) {
    unknown_keys(n, "zookeeper.", {"hosts", "auth_data", "set_acls"});
    // Patroni 3.3's auth_data: {digest: "user:password"} (or a list of
    // [scheme, credential] pairs); pg_ha takes one digest identity.
    if (const YAML::Node a = n["auth_data"]; a && !a.IsNull()) {
        std::string cred;
        if (a.IsMap() && a["digest"] && a["digest"].IsScalar()) cred = a["digest"].Scalar();
        else if (a.IsSequence())
            for (const auto &e : a)
                if (e.IsSequence() && e.size() == 2 && e[0].IsScalar() && e[0].Scalar() == "digest" && e[1].IsScalar())
                    cred = e[1].Scalar();
        const auto colon = cred.find(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == cred.size()) {
            error("zookeeper.auth_data", "expected {digest: \"user:password\"}");
        } else {
            set("pg_ha.zookeeper_user", cred.substr(0, colon));
            set("pg_ha.zookeeper_password", cred.substr(colon + 1));
        }
    }
    if (const YAML::Node acl = n["set_acls"]; acl && acl.IsMap()) {
        // {principal: [PERM, ...]} -> "principal PERM,PERM;..."
        std::string out;
        for (const auto &kv : acl) {
            if (!kv.first.IsScalar()) continue;
            std::string perms;
            if (kv.second.IsSequence())
                for (const auto &p : kv.second)
                    if (p.IsScalar()) perms += (perms.empty() ? "" : ",") + p.Scalar();
            if (perms.empty()) return error("zookeeper.set_acls", "each principal needs a list of permissions");
            out += (out.empty() ? "" : ";") + kv.first.Scalar() + " " + perms;
        }
        set("pg_ha.zookeeper_set_acls", out);
    } else if (acl && !acl.IsNull()) {
        error("zookeeper.set_acls", "expected {principal: [PERMISSION, ...]}");
    }
    const YAML::Node h = n["hosts"];
    std::string hosts;
    if (h && h.IsSequence()) {
        for (const auto &e : h) {
            std::string one;
            if (!scalar(e, "zookeeper.hosts", one)) continue;
            hosts += (hosts.empty() ? "" : ",") + one;
        }
    } else if (h && h.IsScalar()) {
        hosts = h.Scalar();
    }
    hosts.erase(std::remove_if(hosts.begin(), hosts.end(), [](unsigned char ch) { return std::isspace(ch); }),
                hosts.end());
    if (hosts.empty()) return error("zookeeper.hosts", "missing: a list of host:port or a \"h1:p1,h2:p2\" string");
    set("pg_ha.zookeeper_hosts", hosts);
}

void Reader::local_pg_hba(const YAML::Node &n, const std::string &path, std::vector<std::string> &out) {
    if (!n || n.IsNull()) return;
    if (!n.IsSequence()) return error(path, "expected a list of pg_hba.conf lines");
    for (const auto &e : n) {
        std::string line;
        if (!scalar(e, path, line)) continue;
        if (line.find('\n') != std::string::npos) return error(path, "a pg_hba.conf line cannot span lines");
        out.push_back(line);
    }
}

void Reader::postgresql(const YAML::Node &n) {
    unknown_keys(n, "postgresql.",
                 {"listen", "connect_address", "data_dir", "bin_dir", "config_dir", "pgpass", "authentication",
                  "parameters", "pg_hba", "use_pg_rewind", "remove_data_directory_on_rewind_failure",
                  "create_replica_methods"});
    std::string v;
    if (n["pgpass"]) warn("postgresql.pgpass", "not needed: pg_ha passes passwords without a password file; ignored");
    if (n["create_replica_methods"])
        warn("postgresql.create_replica_methods", "not supported yet: new replicas are cloned with pg_basebackup; ignored");
    if (scalar(n["listen"], "postgresql.listen", v)) {
        const auto colon = v.rfind(':');
        if (colon == std::string::npos) {
            set("listen_addresses", v);
        } else {
            set("listen_addresses", v.substr(0, colon));
            set("port", v.substr(colon + 1));
        }
    }
    if (scalar(n["connect_address"], "postgresql.connect_address", v)) {
        check_connect_address(*this, "postgresql.connect_address", v);
        set("pg_ha.connect_address", v);
    } else {
        error("postgresql.connect_address", "missing: other members reach this server there");
    }
    if (scalar(n["data_dir"], "postgresql.data_dir", v)) {
        while (v.size() > 1 && v.back() == '/') v.pop_back();
        c.data_dir = v;
    } else {
        error("postgresql.data_dir", "missing");
    }
    if (scalar(n["bin_dir"], "postgresql.bin_dir", v)) c.bin_dir = v;
    if (scalar(n["config_dir"], "postgresql.config_dir", v) && v != c.data_dir)
        warn("postgresql.config_dir", "pg_ha keeps postgresql.conf in the data directory; ignored");

    // Roles. Without a rewind user Patroni rewinds as the superuser.
    set("pg_ha.rewind_user", "");
    set("pg_ha.admin_user", "");  // bootstrap.users creates the user's roles instead
    if (map_at(n["authentication"], "postgresql.authentication")) {
        const YAML::Node a = n["authentication"];
        unknown_keys(a, "postgresql.authentication.", {"superuser", "replication", "rewind"});
        for (const auto &[role, user_key, pw_key] :
             std::vector<std::tuple<std::string, std::string, std::string>>{
                 {"superuser", "superuser", "superuser_password"},
                 {"replication", "replication_user", "replication_password"},
                 {"rewind", "rewind_user", "rewind_password"}}) {
            const std::string path = "postgresql.authentication." + role;
            if (!map_at(a[role], path)) continue;
            const YAML::Node r = a[role];
            unknown_keys(r, path + ".", {"username", "password"},
                         "not supported by pg_ha (connection options of this role); ignored");
            if (!scalar(r["username"], path + ".username", v)) v = role == "rewind" ? "" : role == "superuser" ? "postgres" : "replicator";
            set("pg_ha." + user_key, v);
            if (scalar(r["password"], path + ".password", v)) set("pg_ha." + pw_key, v);
        }
    }
    if (map_at(n["parameters"], "postgresql.parameters")) {
        for (const auto &kv : n["parameters"]) {
            const std::string name = lower(kv.first.Scalar());
            const std::string path = "postgresql.parameters." + kv.first.Scalar();
            std::string value;
            if (!parameter_text(to_json(kv.second), value)) {
                error(path, "expected a single value");
                continue;
            }
            if (is_cluster_only_parameter(name)) {
                warn(path, "set cluster-wide in bootstrap.dcs (Patroni ignores it in the local configuration); ignored");
                continue;
            }
            if (name == "listen_addresses" || name == "port") {
                warn(path, "postgresql.listen sets it; ignored");
                continue;
            }
            if (name == "unix_socket_directories" && !c.data_dir.empty()) {
                // PostgreSQL reads relative directories from the data directory;
                // pg_ha's own connections need them absolute.
                std::string out, item;
                std::size_t start = 0;
                for (;;) {
                    const auto comma = value.find(',', start);
                    item = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
                    item.erase(0, item.find_first_not_of(' '));
                    if (!item.empty() && item[0] != '/') item = item == "." ? c.data_dir : c.data_dir + "/" + item;
                    out += (out.empty() ? "" : ",") + item;
                    if (comma == std::string::npos) break;
                    start = comma + 1;
                }
                value = out;
            }
            set(name, value);
        }
    }
    c.has_local_pg_hba = bool(n["pg_hba"]);
    local_pg_hba(n["pg_hba"], "postgresql.pg_hba", c.pg_hba);
    // Patroni's local use_pg_rewind / remove_data_directory_on_rewind_failure
    // are cluster-wide in pg_ha: they seed the config key (bootstrap.dcs wins).
    for (const char *k : {"use_pg_rewind", "remove_data_directory_on_rewind_failure"}) {
        if (!n[k]) continue;
        bool b;
        if (!scalar(n[k], std::string("postgresql.") + k, v)) continue;
        if (!yaml_bool(v, b)) {
            error(std::string("postgresql.") + k, "\"" + v + "\" is not a boolean");
            continue;
        }
        json &pg = c.dcs["postgresql"];
        if (!pg.is_object()) pg = json::object();
        if (!pg.contains(k)) pg[k] = b;
        warn(std::string("postgresql.") + k,
             "cluster-wide in pg_ha (the config key's postgresql." + std::string(k) + "); used as its initial value");
    }
}

void Reader::dcs(const YAML::Node &n) {
    json d = to_json(n);
    // Local postgresql.use_pg_rewind etc. seeded c.dcs above; bootstrap.dcs wins.
    json seeded = c.dcs;
    c.dcs = d;
    if (seeded.contains("postgresql")) {
        if (!c.dcs["postgresql"].is_object()) c.dcs["postgresql"] = json::object();
        for (auto &[k, v] : seeded["postgresql"].items())
            if (!c.dcs["postgresql"].contains(k)) c.dcs["postgresql"][k] = v;
    }
    static const std::set<std::string> acted = {"ttl",           "loop_wait",       "retry_timeout",
                                                "maximum_lag_on_failover",          "synchronous_mode",
                                                "synchronous_mode_strict",          "failsafe_mode",
                                                "use_pg_rewind", "use_slots",       "remove_data_directory_on_rewind_failure",
                                                "pause",         "postgresql",      "master_start_timeout",
                                                "primary_start_timeout"};
    for (auto &[k, v] : c.dcs.items())
        if (!acted.count(k)) warn("bootstrap.dcs." + k, "written to the config key, but pg_ha does not act on it");
    if (c.dcs.contains("postgresql") && c.dcs["postgresql"].is_object()) {
        static const std::set<std::string> pg_acted = {"parameters", "use_pg_rewind", "use_slots",
                                                       "remove_data_directory_on_rewind_failure", "pg_hba"};
        for (auto &[k, v] : c.dcs["postgresql"].items()) {
            (void)v;
            if (!pg_acted.count(k))
                warn("bootstrap.dcs.postgresql." + k, "written to the config key, but pg_ha does not act on it");
        }
        // Shell commands in the node's own bootstrap.dcs: the operator trusts
        // them, so this member applies them from the config key.
        if (auto p = c.dcs["postgresql"].find("parameters"); p != c.dcs["postgresql"].end() && p->is_object())
            for (auto &[k, v] : p->items()) {
                (void)v;
                if (is_shell_parameter(lower(k))) {
                    set("pg_ha.dcs_shell_parameters", "on");
                    warn("bootstrap.dcs.postgresql.parameters." + k,
                         "runs a shell command: this member accepts shell-command parameters from the config key "
                         "(pg_ha.dcs_shell_parameters = on, because its own file sets them)");
                }
            }
        // The node's own bootstrap.dcs sets pg_hba: this member writes pg_hba.conf
        // from the config key, unless its postgresql section has a pg_hba of its own
        // (Patroni: the local one wins; boot writes it at every start).
        if (auto h = c.dcs["postgresql"].find("pg_hba"); h != c.dcs["postgresql"].end() && !h->is_null()) {
            if (c.has_local_pg_hba)
                warn("bootstrap.dcs.postgresql.pg_hba", "this member keeps its own postgresql.pg_hba (the local one wins)");
            else set("pg_ha.dcs_pg_hba", "on");
        }
    }
}

void Reader::bootstrap(const YAML::Node &n) {
    std::set<std::string> known = {"dcs", "initdb", "pg_hba", "users", "post_bootstrap", "post_init", "method"};
    std::string v;
    if (scalar(n["method"], "bootstrap.method", v)) {
        c.bootstrap.method = v;
        known.insert(v);
    }
    unknown_keys(n, "bootstrap.", known);
    if (map_at(n["dcs"], "bootstrap.dcs")) dcs(n["dcs"]);

    const YAML::Node init = n["initdb"];
    auto add_option = [&](const std::string &key, const std::string *value) {
        static const std::set<std::string> forbidden = {"pgdata", "D", "nosync", "N", "pwfile", "pwprompt", "W",
                                                        "sync-only", "S", "version", "V", "username", "U"};
        if (forbidden.count(key)) return warn("bootstrap.initdb." + key, "pg_ha sets it itself; ignored");
        if (key.rfind("auth", 0) == 0) c.bootstrap.initdb_auth_given = true;
        c.bootstrap.initdb_options.push_back("--" + key + (value ? "=" + *value : ""));
    };
    if (init && init.IsSequence()) {
        for (const auto &e : init) {
            if (e.IsScalar()) {
                add_option(e.Scalar(), nullptr);
            } else if (e.IsMap()) {
                for (const auto &kv : e) {
                    std::string val;
                    if (scalar(kv.second, "bootstrap.initdb." + kv.first.Scalar(), val)) add_option(kv.first.Scalar(), &val);
                }
            } else {
                error("bootstrap.initdb", "expected options (\"data-checksums\") or option: value pairs");
            }
        }
    } else if (init && init.IsMap()) {
        for (const auto &kv : init) {
            std::string val;
            if (scalar(kv.second, "bootstrap.initdb." + kv.first.Scalar(), val)) add_option(kv.first.Scalar(), &val);
        }
    } else if (init && !init.IsNull()) {
        error("bootstrap.initdb", "expected a list of options");
    }

    local_pg_hba(n["pg_hba"], "bootstrap.pg_hba", c.bootstrap.pg_hba);

    if (map_at(n["users"], "bootstrap.users")) {
        static const std::regex flag("(NO)?(SUPERUSER|CREATEDB|CREATEROLE|INHERIT|LOGIN|REPLICATION|BYPASSRLS)"),
            limit("CONNECTION LIMIT -?[0-9]+");
        for (const auto &kv : n["users"]) {
            BootstrapUser u;
            u.name = kv.first.Scalar();
            const std::string path = "bootstrap.users." + u.name;
            if (!map_at(kv.second, path)) continue;
            unknown_keys(kv.second, path + ".", {"password", "options"});
            scalar(kv.second["password"], path + ".password", u.password);
            const YAML::Node opts = kv.second["options"];
            if (opts && opts.IsSequence()) {
                for (const auto &o : opts) {
                    std::string opt;
                    if (!scalar(o, path + ".options", opt)) continue;
                    opt = upper(opt);
                    if (std::regex_match(opt, flag) || std::regex_match(opt, limit)) u.options.push_back(opt);
                    else error(path + ".options", "\"" + opt + "\" is not a role option pg_ha accepts");
                }
            } else if (opts && !opts.IsNull()) {
                error(path + ".options", "expected a list");
            }
            c.bootstrap.users.push_back(u);
        }
    }
    for (const char *k : {"post_bootstrap", "post_init"})
        if (scalar(n[k], std::string("bootstrap.") + k, v)) {
            if (!c.bootstrap.post_bootstrap.empty() && c.bootstrap.post_bootstrap != v)
                error(std::string("bootstrap.") + k, "post_bootstrap and post_init name different scripts");
            c.bootstrap.post_bootstrap = v;
        }

    if (c.bootstrap.method != "initdb") {
        const std::string path = "bootstrap." + c.bootstrap.method;
        if (!map_at(n[c.bootstrap.method], path))
            return error(path, "missing: the custom bootstrap method named by bootstrap.method");
        const YAML::Node m = n[c.bootstrap.method];
        if (!scalar(m["command"], path + ".command", c.bootstrap.method_command))
            return error(path + ".command", "missing");
        bool no_params = false;
        if (m["no_params"] && scalar(m["no_params"], path + ".no_params", v)) yaml_bool(v, no_params);
        for (const auto &kv : m) {
            const std::string k = kv.first.Scalar();
            if (k == "command" || k == "no_params") continue;
            if (k == "recovery_conf" || k == "keep_existing_recovery_conf") {
                warn(path + "." + k, "not supported by pg_ha; ignored");
                continue;
            }
            std::string val;
            if (!no_params && scalar(kv.second, path + "." + k, val)) c.bootstrap.method_args.push_back("--" + k + "=" + val);
        }
    }
}

void Reader::watchdog(const YAML::Node &n) {
    unknown_keys(n, "watchdog.", {"mode", "device", "safety_margin"});
    std::string v;
    if (scalar(n["mode"], "watchdog.mode", v)) {
        bool b;
        if (yaml_bool(v, b)) v = b ? "automatic" : "off";
        set("pg_ha.watchdog_mode", lower(v));
    }
    setting(n["device"], "watchdog.device", "watchdog_device");
    setting(n["safety_margin"], "watchdog.safety_margin", "watchdog_safety_margin");
}

void Reader::tags(const YAML::Node &n) {
    unknown_keys(n, "tags.", {"nofailover", "noloadbalance", "clonefrom", "nosync"},
                 "a tag pg_ha does not publish or act on; ignored");
    for (const char *t : {"nofailover", "noloadbalance", "clonefrom", "nosync"})
        bool_setting(n[t], std::string("tags.") + t, t);
}

}  // namespace

std::string PatroniConfig::setting(const std::string &key) const {
    for (const auto &kv : settings)
        if (kv.first == key) return kv.second;
    return "";
}

PatroniConfig read_patroni_config(const std::string &yaml_text) {
    Reader r;
    YAML::Node root;
    try {
        root = YAML::Load(yaml_text);
    } catch (const YAML::Exception &e) {
        r.c.errors.push_back(std::string("not valid YAML: ") + e.what());
        return r.c;
    }
    try {
        r.read(root);
    } catch (const YAML::Exception &e) {
        r.c.errors.push_back(std::string("unexpected structure: ") + e.what());
    }
    return r.c;
}

std::string settings_file_text(const PatroniConfig &c, const std::string &source) {
    std::string out = "# written by pg_hactl boot from the Patroni configuration " + source +
                      "; edits here are overwritten at the next boot\n";
    for (const auto &[k, v] : c.settings) out += k + " = " + conf_quote(v) + "\n";
    return out;
}

}  // namespace pgha::cli
