#include "core/sync_rules.hpp"

#include <algorithm>
#include <cctype>

namespace pgha {

namespace {

bool contains(const std::vector<std::string> &v, const std::string &s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

std::string join(const std::vector<std::string> &v) {
    std::string out;
    for (const auto &s : v) out += (out.empty() ? "" : ",") + s;
    return out;
}

std::string list_or_none(const std::vector<std::string> &v) { return v.empty() ? "none" : join(v); }

const WalSender *walsender(const SyncInput &in, const std::string &name) {
    const WalSender *best = nullptr;
    for (const auto &w : in.walsenders)
        if (w.application_name == name && (!best || w.state == "streaming")) best = &w;
    return best;
}

Lsn lag_of(const SyncInput &in, const WalSender &w) {
    return in.primary_lsn > w.flush_lsn ? in.primary_lsn - w.flush_lsn : 0;
}

std::string trim(const std::string &s) {
    std::size_t a = 0, b = s.size();
    while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
    return s.substr(a, b - a);
}

// Splits a standby list: names separated by commas, optionally double-quoted ("" inside = ").
bool split_names(const std::string &text, std::vector<std::string> &names) {
    std::size_t i = 0;
    const std::size_t n = text.size();
    while (i < n) {
        while (i < n && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
        std::string name;
        if (i < n && text[i] == '"') {
            ++i;
            bool closed = false;
            while (i < n) {
                if (text[i] == '"') {
                    if (i + 1 < n && text[i + 1] == '"') { name += '"'; i += 2; continue; }
                    ++i;
                    closed = true;
                    break;
                }
                name += text[i++];
            }
            if (!closed) return false;
            while (i < n && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
        } else {
            while (i < n && text[i] != ',') name += text[i++];
            name = trim(name);
        }
        if (name.empty()) return false;
        names.push_back(name);
        if (i < n) {
            if (text[i] != ',') return false;
            ++i;
            if (i >= n) return false;
        }
    }
    return true;
}

}  // namespace

std::string format_synchronous_standby_names(const std::vector<std::string> &names) {
    if (names.empty()) return "";
    std::string list;
    for (const auto &name : names) {
        std::string q = "\"";
        for (char ch : name) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
        list += (list.empty() ? "" : ",") + q + "\"";
    }
    return std::to_string(names.size()) + " (" + list + ")";
}

bool parse_synchronous_standby_names(const std::string &text_in, int &num, std::vector<std::string> &names,
                                     bool &any) {
    num = 0;
    names.clear();
    any = false;
    std::string text = trim(text_in);
    if (text.empty()) return true;
    std::string upper;
    for (char ch : text) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    std::size_t i = 0;
    if (upper.rfind("FIRST ", 0) == 0) i = 6;
    else if (upper.rfind("ANY ", 0) == 0) { i = 4; any = true; }
    std::size_t j = i;
    while (j < text.size() && std::isspace(static_cast<unsigned char>(text[j]))) ++j;
    std::size_t digits = j;
    while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
    std::vector<std::string> out;
    if (digits > j) {
        std::size_t open = digits;
        while (open < text.size() && std::isspace(static_cast<unsigned char>(text[open]))) ++open;
        if (open >= text.size() || text[open] != '(' || text.back() != ')') return false;
        if (digits - j > 6) return false;
        num = std::stoi(text.substr(j, digits - j));
        if (!split_names(text.substr(open + 1, text.size() - open - 2), out) || num < 1) {
            num = 0;
            return false;
        }
    } else {
        if (i != 0) return false;  // FIRST/ANY without a number
        if (!split_names(text, out)) return false;
        num = 1;
    }
    names = out;
    return true;
}

std::string sync_candidate_problem(const SyncInput &in, const std::string &name) {
    if (name == in.me) return name + " is the leader";
    const Member *m = nullptr;
    for (const auto &x : in.members)
        if (x.name == name) m = &x;
    if (!m) return name + " is not a member of the cluster";
    if (m->tags.nosync) return name + " is tagged nosync";
    const WalSender *w = walsender(in, name);
    if (!w) return name + " is not connected for replication";
    if (w->state != "streaming") return name + " is not streaming (" + w->state + ")";
    const std::int64_t max_lag = in.config.maximum_lag_on_syncnode;
    if (max_lag > 0 && lag_of(in, *w) > static_cast<Lsn>(max_lag))
        return name + " lags " + std::to_string(lag_of(in, *w)) + " bytes, more than maximum_lag_on_syncnode (" +
               std::to_string(max_lag) + ")";
    return "";
}

SyncPlan plan_sync(const SyncInput &in) {
    SyncPlan p;
    const DynamicConfig &cfg = in.config;
    int cur_num = 0;
    bool cur_any = false;
    std::vector<std::string> current;
    const bool parsed = parse_synchronous_standby_names(in.ssn, cur_num, current, cur_any);
    std::vector<std::string> key_set = in.key.leader == in.me ? in.key.sync_standby : std::vector<std::string>{};

    if (!cfg.synchronous_mode) {
        // Off: the key first (nobody is promised), then the server stops waiting.
        if (!in.key.empty()) {
            p.step = SyncStep::WriteKey;
            p.key = SyncState{};
            p.message = "synchronous_mode is off: clearing the sync key";
        } else if (in.ssn_managed && !in.ssn.empty()) {
            p.step = SyncStep::SetSsn;
            p.ssn = "";
            p.message = "synchronous_mode is off: clearing synchronous_standby_names";
        }
        return p;
    }
    if (in.key.leader != in.me) {
        // A new leader (or the key was empty): only we hold every commit now.
        p.step = SyncStep::WriteKey;
        p.key.leader = in.me;
        p.message = "synchronous mode: taking over the sync key as the leader (was " +
                    (in.key.leader.empty() ? std::string("empty") : in.key.leader) + ")";
        return p;
    }
    if (!parsed) current.clear();  // written by someone else: replaced below

    // Candidates, least lag first, names break ties.
    std::vector<std::pair<Lsn, std::string>> healthy;
    for (const auto &m : in.members) {
        if (!sync_candidate_problem(in, m.name).empty()) continue;
        healthy.emplace_back(lag_of(in, *walsender(in, m.name)), m.name);
    }
    std::sort(healthy.begin(), healthy.end());
    auto is_healthy = [&](const std::string &n) {
        return std::any_of(healthy.begin(), healthy.end(), [&](const auto &h) { return h.second == n; });
    };
    const std::size_t wanted = static_cast<std::size_t>(std::max(1, cfg.synchronous_node_count));

    // Stable: the listed standbys stay while healthy, or unhealthy for less than the grace.
    std::vector<std::string> kept_unhealthy;
    for (const auto &n : current) {
        if (n == kStrictPlaceholder || p.picked.size() >= wanted || contains(p.picked, n)) continue;
        if (is_healthy(n)) {
            p.picked.push_back(n);
            continue;
        }
        // A member that can never be a candidate (nosync, gone) goes at once.
        bool member = false, nosync = false;
        for (const auto &m : in.members)
            if (m.name == n) { member = true; nosync = m.tags.nosync; }
        auto it = in.unhealthy_ms.find(n);
        const std::int64_t for_ms = it == in.unhealthy_ms.end() ? 0 : it->second;
        if (member && !nosync && n != in.me && for_ms < in.grace_ms) {
            p.picked.push_back(n);
            kept_unhealthy.push_back(n);
        }
    }
    for (const auto &h : healthy)
        if (p.picked.size() < wanted && !contains(p.picked, h.second)) p.picked.push_back(h.second);

    std::vector<std::string> target = p.picked;
    if (!kept_unhealthy.empty()) {
        std::string why;
        for (const auto &n : kept_unhealthy) why += (why.empty() ? "" : "; ") + sync_candidate_problem(in, n);
        if (cfg.synchronous_mode_strict) {
            p.message = "synchronous standby unhealthy (" + why + "); strict mode: commits wait for it";
        } else {
            p.degrade_pending = true;
            p.message = "synchronous standby unhealthy (" + why + "); it is replaced or, with no other candidate, "
                        "replication degrades to asynchronous " + std::to_string(in.grace_ms / 1000) +
                        " s after it failed";
        }
    }
    bool any_healthy = std::any_of(target.begin(), target.end(), is_healthy);
    if (target.empty() && cfg.synchronous_mode_strict) {
        // Strict: keep waiting for the listed standbys (still in the key), or a placeholder.
        std::vector<std::string> real;
        for (const auto &n : current)
            if (n != kStrictPlaceholder) real.push_back(n);
        target = real.empty() ? std::vector<std::string>{kStrictPlaceholder} : real;
        p.picked = real;
    }
    if (cfg.synchronous_mode_strict && !any_healthy) {
        p.strict_waiting = true;
        std::string why;
        for (const auto &m : in.members)
            if (m.name != in.me) why += (why.empty() ? "" : "; ") + sync_candidate_problem(in, m.name);
        p.message = "strict synchronous mode: no synchronous standby is streaming (" +
                    (why.empty() ? std::string("no other member") : why) + "); commits wait for " +
                    (p.picked.empty() ? std::string("a standby to connect") : join(p.picked));
    }

    // 1. Remove from the key first (promising less is always safe).
    std::vector<std::string> keep;
    for (const auto &n : key_set)
        if (contains(target, n)) keep.push_back(n);
    if (keep.size() != key_set.size()) {
        p.step = SyncStep::WriteKey;
        p.key.leader = in.me;
        p.key.sync_standby = keep;
        if (p.message.empty())
            p.message = "synchronous standbys " + list_or_none(key_set) + " -> " + list_or_none(target) +
                        ": removing from the sync key first";
        return p;
    }
    // 2. The server waits for exactly the target set.
    const std::string want_ssn = format_synchronous_standby_names(target);
    if (!parsed || cur_any || current != target || (cur_num != static_cast<int>(current.size()) && !target.empty())) {
        p.step = SyncStep::SetSsn;
        p.ssn = want_ssn;
        if (p.message.empty())
            p.message = target.empty() ? "no synchronous standby candidate: replication is asynchronous now"
                                       : "synchronous_standby_names = '" + want_ssn + "'";
        return p;
    }
    // 3. Name in the key what the server confirms it waits for.
    std::vector<std::string> add;
    for (const auto &n : target) {
        const WalSender *w = walsender(in, n);
        if (!contains(key_set, n) && w && (w->sync_state == "sync" || w->sync_state == "quorum")) add.push_back(n);
    }
    if (!add.empty()) {
        p.step = SyncStep::WriteKey;
        p.key.leader = in.me;
        p.key.sync_standby = key_set;
        for (const auto &n : add) p.key.sync_standby.push_back(n);
        if (p.message.empty()) p.message = "synchronous standby " + join(add) + " confirmed: naming it in the sync key";
    }
    return p;
}

bool sync_mode_active(const ClusterView &c) { return c.config.synchronous_mode && !c.sync.empty(); }

std::string sync_ineligibility(const ClusterView &c, const std::string &name) {
    if (!sync_mode_active(c)) return "";
    if (c.sync.leader == name || contains(c.sync.sync_standby, name)) return "";
    return name + " is not a synchronous standby (sync key: " + list_or_none(c.sync.sync_standby) +
           "); with synchronous_mode only a synchronous standby holds every acknowledged commit";
}

}  // namespace pgha
