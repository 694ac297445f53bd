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

std::vector<std::string> sorted_unique(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
}

std::vector<std::string> set_union(const std::vector<std::string> &a, const std::vector<std::string> &b) {
    std::vector<std::string> out = a;
    out.insert(out.end(), b.begin(), b.end());
    return sorted_unique(out);
}

std::string describe(const QuorumKey &k) {
    return k.voters.empty() ? std::string("no voters") : "quorum " + std::to_string(k.quorum) + " of " + join(k.voters);
}

std::string describe(const QuorumSsn &g) {
    return g.k == 0 ? std::string("'' (asynchronous)") : "'" + format_quorum_ssn(g) + "'";
}

SyncPlan plan_quorum(const SyncInput &in, SyncPlan p);

}  // namespace

bool operator==(const QuorumKey &a, const QuorumKey &b) { return a.voters == b.voters && a.quorum == b.quorum; }
bool operator==(const QuorumSsn &a, const QuorumSsn &b) { return a.k == b.k && a.names == b.names; }

bool quorum_safe(const QuorumKey &key, const QuorumSsn &ssn) {
    if (key.voters.empty()) return true;
    if (ssn.k < 1 || ssn.names.empty()) return false;
    const int voters = static_cast<int>(key.voters.size());
    // A candidate's own position plus q votes: q + 1 voters (a vote from the
    // leader itself proves everything). More than the voters there are: only
    // with the leader's vote, safe.
    if (key.quorum + 1 > voters) return true;
    int outside = 0;  // voters that confirm nothing (not in S)
    for (const auto &v : key.voters)
        if (!contains(ssn.names, v)) ++outside;
    // The q + 1 voters with the fewest members of S; the commit's k
    // confirmations avoid them if S has k members besides those.
    const int in_s = std::max(0, key.quorum + 1 - outside);
    return static_cast<int>(ssn.names.size()) - in_s < ssn.k;
}

bool quorum_stronger(const QuorumKey &a, const QuorumKey &b) {
    if (a.voters.empty()) return true;
    for (const auto &v : a.voters)
        if (!contains(b.voters, v)) return false;
    return a.quorum >= b.quorum;
}

QuorumSsn quorum_ssn_of(const std::string &ssn) {
    QuorumSsn g;
    int num = 0;
    bool any = false;
    std::vector<std::string> names;
    if (!parse_synchronous_standby_names(ssn, num, names, any) || names.empty()) return g;
    if (contains(names, "*")) return g;  // any standby, names unknown: no guarantee we can use
    g.names = sorted_unique(names);
    g.k = std::min(num, static_cast<int>(g.names.size()));
    return g;
}

std::string format_quorum_ssn(const QuorumSsn &g) {
    if (g.k < 1 || g.names.empty()) return "";
    std::string list = format_synchronous_standby_names(g.names);  // `N ("a","b")`
    return "ANY " + std::to_string(g.k) + list.substr(list.find(' '));
}

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
    if (cfg.synchronous_mode_quorum) return plan_quorum(in, p);
    if (in.key.quorum != 0 || (cur_any && !key_set.empty())) {
        // From quorum commit: its voters need votes, not every commit. Promise
        // nothing (the leader only) before changing synchronous_standby_names.
        p.step = SyncStep::WriteKey;
        p.key.leader = in.me;
        p.message = "synchronous_mode on (was quorum): the sync key names the leader only until the standbys are "
                    "synchronous";
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
        if (p.message.empty()) {
            std::string why;
            for (const auto &n : key_set)
                if (!contains(target, n))
                    if (const std::string problem = sync_candidate_problem(in, n); !problem.empty())
                        why += (why.empty() ? " (" : "; ") + problem;
            p.message = "synchronous standbys " + list_or_none(key_set) + " -> " + list_or_none(target) +
                        ": removing from the sync key first" + (why.empty() ? "" : why + ")");
        }
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

namespace {

SyncPlan plan_quorum(const SyncInput &in, SyncPlan p) {
    const DynamicConfig &cfg = in.config;
    const QuorumSsn g = quorum_ssn_of(in.ssn);
    const QuorumKey k{sorted_unique(in.key.sync_standby), in.key.quorum};
    const QuorumProgress &pr = in.quorum;

    // Confirmed: k members of S flushed past the point where this
    // synchronous_standby_names was in force everywhere.
    int flushed = 0;
    for (const auto &n : g.names) {
        const WalSender *w = walsender(in, n);
        if (w && pr.confirm_lsn != 0 && w->flush_lsn >= pr.confirm_lsn) ++flushed;
    }
    const bool confirmed = g.k == 0 || (pr.confirm_lsn != 0 && flushed >= g.k);
    p.quorum_confirmed = confirmed;
    auto live_ok = [&](const QuorumKey &key) {
        if (!quorum_safe(key, g)) return false;
        if (confirmed || pr.prev == QuorumProgress::Prev::None) return true;
        if (pr.prev == QuorumProgress::Prev::Known) return quorum_safe(key, pr.prev_ssn);
        return quorum_stronger(key, pr.frozen);
    };

    // The wanted state: every healthy candidate (and a listed one within its
    // grace) votes and is listed; k = synchronous_node_count (at most all).
    std::vector<std::pair<Lsn, std::string>> healthy;
    for (const auto &m : in.members)
        if (sync_candidate_problem(in, m.name).empty()) healthy.emplace_back(lag_of(in, *walsender(in, m.name)), m.name);
    std::vector<std::string> active, kept_unhealthy;
    for (const auto &h : healthy) {
        auto it = in.healthy_ms.find(h.second);
        const bool listed = contains(g.names, h.second) || contains(k.voters, h.second);
        if (listed || it == in.healthy_ms.end() || it->second >= in.grace_ms) active.push_back(h.second);
    }
    for (const auto &n : set_union(g.names, k.voters)) {
        if (contains(active, n) || n == kStrictPlaceholder || n == in.me) continue;
        bool member = false, nosync = false;
        for (const auto &m : in.members)
            if (m.name == n) { member = true; nosync = m.tags.nosync; }
        auto it = in.unhealthy_ms.find(n);
        const std::int64_t for_ms = it == in.unhealthy_ms.end() ? 0 : it->second;
        if (member && !nosync && for_ms < in.grace_ms) {
            active.push_back(n);
            kept_unhealthy.push_back(n);
        }
    }
    active = sorted_unique(active);
    QuorumSsn want_g;
    QuorumKey want_k;
    if (!active.empty()) {
        want_g.names = active;
        want_g.k = std::min(std::max(1, cfg.synchronous_node_count), static_cast<int>(active.size()));
        want_k.voters = active;
        want_k.quorum = static_cast<int>(active.size()) - want_g.k;
    } else if (cfg.synchronous_mode_strict) {
        // Strict: keep waiting for the listed standbys, or for a name no standby uses.
        want_g = g.k > 0 ? g : QuorumSsn{1, {kStrictPlaceholder}};
        want_k = quorum_safe(k, want_g) ? k : QuorumKey{};
    }
    p.picked = active;
    if (!kept_unhealthy.empty()) {
        std::string why;
        for (const auto &n : kept_unhealthy) why += (why.empty() ? "" : "; ") + sync_candidate_problem(in, n);
        p.degrade_pending = !cfg.synchronous_mode_strict;
        p.message = "quorum standby unhealthy (" + why + "); it leaves the quorum " +
                    std::to_string(in.grace_ms / 1000) + " s after it failed";
    }
    if (cfg.synchronous_mode_strict && healthy.empty()) {
        std::string why;
        for (const auto &m : in.members)
            if (m.name != in.me) why += (why.empty() ? "" : "; ") + sync_candidate_problem(in, m.name);
        p.strict_waiting = true;
        p.message = "strict synchronous mode (quorum): no synchronous standby is streaming (" +
                    (why.empty() ? std::string("no other member") : why) + "); commits wait for " +
                    (active.empty() ? std::string("a standby to connect") : join(active));
    }
    auto say = [&](const std::string &m) {
        if (p.message.empty()) p.message = m;
    };

    if (!(k == want_k) && live_ok(want_k)) {
        p.step = SyncStep::WriteKey;
        p.key.leader = in.me;
        p.key.sync_standby = want_k.voters;
        p.key.quorum = want_k.quorum;
        say("quorum commit: sync key " + describe(k) + " -> " + describe(want_k));
        return p;
    }
    if (!(g == want_g)) {
        // A standby that cannot confirm (gone) must not hold the change up.
        int can_confirm = 0;
        for (const auto &n : g.names)
            if (sync_candidate_problem(in, n).empty()) ++can_confirm;
        // (At most one change a second: confirm_lsn is taken a second after one.)
        const bool may_change =
            confirmed || pr.prev == QuorumProgress::Prev::None || (can_confirm < g.k && pr.confirm_lsn != 0);
        if (!may_change) {
            say("quorum commit: waiting for " + std::to_string(g.k) + " of " + join(g.names) +
                " to confirm the current synchronous_standby_names");
            return p;
        }
        if (quorum_safe(k, want_g)) {
            p.step = SyncStep::SetSsn;
            p.ssn = format_quorum_ssn(want_g);
            say("quorum commit: synchronous_standby_names " + describe(g) + " -> " + describe(want_g));
            return p;
        }
        // First a key that stands with both: the voters of both, the fewest votes that are safe.
        const std::vector<std::string> both = set_union(k.voters, want_k.voters);
        for (int q = 0; q < static_cast<int>(both.size()); ++q) {
            QuorumKey mid{both, q};
            if (live_ok(mid) && quorum_safe(mid, want_g)) {
                if (mid == k) break;
                p.step = SyncStep::WriteKey;
                p.key.leader = in.me;
                p.key.sync_standby = mid.voters;
                p.key.quorum = mid.quorum;
                say("quorum commit: sync key " + describe(k) + " -> " + describe(mid) + " before " +
                    "synchronous_standby_names changes");
                return p;
            }
        }
        // Else no voters for a moment: nobody but the leader may be promoted.
        p.step = SyncStep::WriteKey;
        p.key.leader = in.me;
        say("quorum commit: sync key " + describe(k) + " -> no voters before synchronous_standby_names changes");
        return p;
    }
    if (!(k == want_k))
        say("quorum commit: waiting for " + std::to_string(g.k) + " of " + join(g.names) +
            " to confirm before the sync key names them");
    return p;
}

}  // namespace

void quorum_progress_after(QuorumProgress &pr, const SyncInput &in, const SyncPlan &p) {
    if (p.quorum_confirmed) pr.prev = QuorumProgress::Prev::None;
    const QuorumKey current{in.key.leader == in.me ? sorted_unique(in.key.sync_standby) : std::vector<std::string>{},
                            in.key.leader == in.me ? in.key.quorum : 0};
    if (p.step == SyncStep::WriteKey && in.key.leader != in.me) {
        pr.prev = QuorumProgress::Prev::Unknown;
        pr.frozen = QuorumKey{sorted_unique(p.key.sync_standby), p.key.quorum};
    } else if (p.step == SyncStep::SetSsn) {
        // Whether or not the change takes, the old value may be in force.
        if (pr.prev == QuorumProgress::Prev::None) {
            pr.prev = QuorumProgress::Prev::Known;
            pr.prev_ssn = quorum_ssn_of(in.ssn);
        } else {
            pr.prev = QuorumProgress::Prev::Unknown;
            pr.frozen = current;
        }
        pr.confirm_lsn = 0;
    }
}

std::string quorum_vote_problem(const ClusterView &c, const std::string &name, Lsn pos,
                                const std::map<std::string, Lsn> &positions) {
    if (!sync_mode_active(c) || c.sync.quorum <= 0 || name == c.sync.leader) return "";
    std::vector<std::string> voting = c.sync.sync_standby;
    voting.push_back(c.sync.leader);
    int votes = 0;
    std::string seen;
    for (const auto &v : sorted_unique(voting)) {
        if (v == name) continue;
        auto it = positions.find(v);
        if (it != positions.end() && it->second <= pos) {
            ++votes;
            seen += (seen.empty() ? "" : ",") + v;
        }
    }
    if (votes >= c.sync.quorum) return "";
    return "quorum commit: " + name + " has " + std::to_string(votes) + " of the " + std::to_string(c.sync.quorum) +
           " votes it needs (members of the sync key that answered and are not ahead: " +
           (seen.empty() ? std::string("none") : seen) + ")";
}

bool sync_mode_active(const ClusterView &c) { return c.config.synchronous_mode && !c.sync.empty(); }

std::string sync_ineligibility(const ClusterView &c, const std::string &name) {
    if (!sync_mode_active(c)) return "";
    if (!c.sync.valid)
        return name + " may not be promoted: the sync key cannot be read (see the warnings) and synchronous_mode is "
                      "on";
    if (c.sync.leader == name || contains(c.sync.sync_standby, name)) return "";
    return name + " is not a synchronous standby (sync key: " + list_or_none(c.sync.sync_standby) +
           "); with synchronous_mode only a synchronous standby holds every acknowledged commit";
}

}  // namespace pgha
