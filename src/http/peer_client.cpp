#include "core/no_postgres.hpp"

#include "http/peer_client.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "core/cluster.hpp"
#include "core/version.hpp"

namespace pgha {

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t ms_since(Clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// curl_global_init is not thread-safe in every libcurl version: run it once
// per process, from whichever thread needs libcurl first. Never cleaned up
// (curl_global_cleanup at exit would race with other users of OpenSSL).
CURLcode global_init_result() {
    static std::once_flag once;
    static CURLcode result = CURLE_FAILED_INIT;
    std::call_once(once, [] { result = curl_global_init(CURL_GLOBAL_DEFAULT); });
    return result;
}

// One request's libcurl state. Owns its easy handle and header list.
struct Transfer {
    CURL *easy = nullptr;
    curl_slist *headers = nullptr;
    std::string body;
    std::size_t max_body = kPeerReplyMaxBytes;
    bool body_too_large = false;
    bool out_of_memory = false;
    bool in_multi = false;
    bool finished = false;
    char errbuf[CURL_ERROR_SIZE] = {};

    Transfer() = default;
    Transfer(const Transfer &) = delete;
    Transfer &operator=(const Transfer &) = delete;
    ~Transfer() {
        if (easy) curl_easy_cleanup(easy);
        curl_slist_free_all(headers);
    }
};

// The multi handle plus every transfer added to it; tears down in libcurl's
// documented order (remove from multi, clean up easy handles, then multi).
class MultiSession {
  public:
    MultiSession() : multi_(curl_multi_init()) {}
    ~MultiSession() {
        for (auto &t : transfers_)
            if (t && t->in_multi) curl_multi_remove_handle(multi_, t->easy);
        transfers_.clear();
        if (multi_) curl_multi_cleanup(multi_);
    }
    MultiSession(const MultiSession &) = delete;
    MultiSession &operator=(const MultiSession &) = delete;

    CURLM *get() const { return multi_; }
    std::vector<std::unique_ptr<Transfer>> &transfers() { return transfers_; }

  private:
    CURLM *multi_;
    std::vector<std::unique_ptr<Transfer>> transfers_;  // index = request index; null = not started
};

// CURLOPT_WRITEFUNCTION: collect the body up to the cap. Returning less than
// asked aborts the transfer with CURLE_WRITE_ERROR. Must not throw (C caller).
size_t on_body_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
    auto *t = static_cast<Transfer *>(userdata);
    const std::size_t n = size * nmemb;
    if (n > t->max_body || t->body.size() > t->max_body - n) {
        t->body_too_large = true;
        return 0;
    }
    try {
        t->body.append(ptr, n);
    } catch (...) {
        t->out_of_memory = true;
        return 0;
    }
    return n;
}

// An HTTP method token (RFC 9110): no spaces, no CR/LF, nothing to inject.
bool valid_method(const std::string &m) {
    if (m.empty() || m.size() > 32) return false;
    return std::all_of(m.begin(), m.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_' || c == '.' || c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' ||
               c == '*' || c == '+' || c == '^' || c == '`' || c == '|' || c == '~';
    });
}

// Credentials go with the unsafe methods only (POST, PUT, PATCH, DELETE):
// GET/HEAD/OPTIONS are answered without them, so they need not travel.
bool credentials_method(const std::string &m) { return m != "GET" && m != "HEAD" && m != "OPTIONS"; }

bool is_https(const std::string &url) {
    return url.size() >= 8 && std::equal(url.begin(), url.begin() + 8, "https://", [](char a, char b) {
               return std::tolower(static_cast<unsigned char>(a)) == b;
           });
}

bool has_control_chars(const std::string &s) {
    return std::any_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

// Sets up one easy handle. Returns "" or why the request cannot be made.
// `req` must outlive the transfer (the body is not copied).
std::string setup_transfer(Transfer &t, const PeerRequest &req, long timeout_ms) {
    if (req.url.empty()) return "empty URL";
    if (has_control_chars(req.url)) return "invalid URL (control characters)";
    if (!valid_method(req.method)) return "invalid HTTP method \"" + req.method + "\"";
    if (has_control_chars(req.content_type)) return "invalid content type (control characters)";
    const bool send_credentials = !req.basic_auth.empty() && credentials_method(req.method);
    if (send_credentials && !req.allow_http_credentials && !is_https(req.url))
        return "refusing to send REST API credentials over plain http to " + req.url +
               " (serve the REST API over https, or set pg_ha.restapi_allow_http_credentials = on)";

    t.max_body = req.max_body_bytes;
    t.easy = curl_easy_init();
    if (!t.easy) return "curl_easy_init failed";

    CURLcode rc = CURLE_OK;
    CURLoption failed_option = CURLOPT_URL;
    // curl_easy_setopt is variadic: pass exactly long / pointer / curl_off_t.
    auto set = [&](CURLoption option, auto value) {
        if (rc != CURLE_OK) return;
        rc = curl_easy_setopt(t.easy, option, value);
        if (rc != CURLE_OK) failed_option = option;
    };

    set(CURLOPT_ERRORBUFFER, t.errbuf);
    set(CURLOPT_URL, req.url.c_str());
    set(CURLOPT_NOSIGNAL, 1L);  // no SIGALRM for DNS timeouts: we run inside PostgreSQL / with threads
#if LIBCURL_VERSION_NUM >= 0x075700
    // Cleanup must not wait for a pending threaded DNS lookup (it would outlast the deadline).
    set(CURLOPT_QUICK_EXIT, 1L);
#endif
#if LIBCURL_VERSION_NUM >= 0x075500
    set(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    set(CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    set(CURLOPT_FOLLOWLOCATION, 0L);
    set(CURLOPT_NOPROXY, "*");  // peers are reached directly, whatever http_proxy says
    set(CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    set(CURLOPT_TIMEOUT_MS, timeout_ms);
    set(CURLOPT_TCP_NODELAY, 1L);
    set(CURLOPT_USERAGENT, "pg_ha/" PG_HA_VERSION);
    set(CURLOPT_WRITEFUNCTION, &on_body_data);
    set(CURLOPT_WRITEDATA, static_cast<void *>(&t));
    if (req.max_body_bytes > 0)  // early refusal when Content-Length says it is too large (0 = unlimited to curl)
        set(CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(req.max_body_bytes));

    set(CURLOPT_SSL_VERIFYPEER, req.insecure ? 0L : 1L);
    set(CURLOPT_SSL_VERIFYHOST, req.insecure ? 0L : 2L);
    if (!req.ca_file.empty()) set(CURLOPT_CAINFO, req.ca_file.c_str());
    if (!req.client_cert_file.empty()) set(CURLOPT_SSLCERT, req.client_cert_file.c_str());
    if (!req.client_key_file.empty()) set(CURLOPT_SSLKEY, req.client_key_file.c_str());

    if (send_credentials) {
        set(CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
        set(CURLOPT_USERPWD, req.basic_auth.c_str());
    }

    bool send_body = false;
    if (req.method == "GET") {
        set(CURLOPT_HTTPGET, 1L);
    } else if (req.method == "HEAD") {
        set(CURLOPT_NOBODY, 1L);
    } else {
        if (req.method == "POST") {
            set(CURLOPT_POST, 1L);
            send_body = true;  // also an empty one: Content-Length: 0
        } else {
            send_body = !req.body.empty() && req.method != "OPTIONS";
        }
        set(CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }
    if (send_body) {
        set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
        set(CURLOPT_POSTFIELDS, req.body.c_str());
        if (!req.content_type.empty()) {
            const std::string ct = "Content-Type: " + req.content_type;
            curl_slist *h = curl_slist_append(t.headers, ct.c_str());
            if (!h) return "out of memory";
            t.headers = h;
        }
    }
    // No "Expect: 100-continue" round trip for larger bodies.
    curl_slist *h = curl_slist_append(t.headers, "Expect:");
    if (!h) return "out of memory";
    t.headers = h;
    set(CURLOPT_HTTPHEADER, t.headers);

    if (rc != CURLE_OK)
        return std::string("curl option ") + std::to_string(static_cast<int>(failed_option)) + ": " +
               curl_easy_strerror(rc);
    return std::string();
}

// Fills `reply` from a finished transfer.
void finish_reply(Transfer &t, CURLcode result, PeerReply &reply, std::int64_t elapsed_ms) {
    t.finished = true;
    reply.elapsed_ms = elapsed_ms;
    long code = 0;
    if (curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK) reply.status = code;
    if (result == CURLE_OK) {
        reply.ok = true;
        reply.body = std::move(t.body);
        return;
    }
    reply.ok = false;
    if (t.body_too_large || result == CURLE_FILESIZE_EXCEEDED) {
        reply.error = "response body larger than " + std::to_string(t.max_body) + " bytes";
    } else if (t.out_of_memory) {
        reply.error = "out of memory while reading the response";
    } else if (t.errbuf[0] != '\0') {
        reply.error = t.errbuf;
    } else {
        reply.error = curl_easy_strerror(result);
    }
}

std::vector<PeerReply> run_parallel(const std::vector<PeerRequest> &reqs, int timeout_ms) {
    const auto start = Clock::now();
    std::vector<PeerReply> replies(reqs.size());
    for (std::size_t i = 0; i < reqs.size(); ++i) replies[i].name = reqs[i].name;
    if (reqs.empty()) return replies;

    auto fail_all = [&](const std::string &why) {
        for (auto &r : replies)
            if (!r.ok && r.error.empty()) r.error = why;
    };
    if (timeout_ms <= 0) {
        fail_all("timeout must be positive (got " + std::to_string(timeout_ms) + " ms)");
        return replies;
    }
    if (const CURLcode g = global_init_result(); g != CURLE_OK) {
        fail_all(std::string("curl_global_init failed: ") + curl_easy_strerror(g));
        return replies;
    }

    const auto deadline = start + std::chrono::milliseconds(timeout_ms);
    MultiSession session;
    if (!session.get()) {
        fail_all("curl_multi_init failed");
        return replies;
    }
    auto &transfers = session.transfers();
    transfers.resize(reqs.size());
    std::size_t started = 0;
    for (std::size_t i = 0; i < reqs.size(); ++i) {
        auto t = std::make_unique<Transfer>();
        std::string why = setup_transfer(*t, reqs[i], timeout_ms);
        if (why.empty()) {
            curl_easy_setopt(t->easy, CURLOPT_PRIVATE, reinterpret_cast<char *>(i));  // request index
            const CURLMcode mc = curl_multi_add_handle(session.get(), t->easy);
            if (mc == CURLM_OK) {
                t->in_multi = true;
                ++started;
            } else {
                why = std::string("curl_multi_add_handle: ") + curl_multi_strerror(mc);
            }
        }
        if (!why.empty()) replies[i].error = std::move(why);
        transfers[i] = std::move(t);
    }

    std::size_t finished = 0;
    std::string multi_error;
    while (finished < started) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(session.get(), &running);
        if (mc != CURLM_OK) {
            multi_error = std::string("curl_multi_perform: ") + curl_multi_strerror(mc);
            break;
        }
        int queued = 0;
        while (CURLMsg *msg = curl_multi_info_read(session.get(), &queued)) {
            if (msg->msg != CURLMSG_DONE) continue;
            char *priv = nullptr;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            const std::size_t i = reinterpret_cast<std::size_t>(priv);
            if (i >= transfers.size() || !transfers[i] || transfers[i]->finished) continue;
            finish_reply(*transfers[i], msg->data.result, replies[i], ms_since(start));
            ++finished;
        }
        if (finished >= started || running == 0) break;

        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) break;
        mc = curl_multi_poll(session.get(), nullptr, 0, static_cast<int>(std::min<std::int64_t>(left, INT_MAX)),
                             nullptr);
        if (mc != CURLM_OK) {
            multi_error = std::string("curl_multi_poll: ") + curl_multi_strerror(mc);
            break;
        }
    }

    // Whatever has not finished by now ran out of time (or the multi handle failed).
    const std::int64_t elapsed = ms_since(start);
    for (std::size_t i = 0; i < reqs.size(); ++i) {
        const auto &t = transfers[i];
        if (!t || !t->in_multi || t->finished) continue;
        replies[i].ok = false;
        replies[i].elapsed_ms = elapsed;
        replies[i].error = !multi_error.empty()
                               ? multi_error
                               : "no complete answer within the deadline of " + std::to_string(timeout_ms) + " ms";
    }
    return replies;  // `session` tears the handles down
}

// ---- /patroni parsing -------------------------------------------------------

using nlohmann::json;

const json *member(const json &obj, const char *key) {
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
}

// Optional string field: absent/null leaves `out` alone; another type is an error.
bool read_string(const json &obj, const char *key, std::string &out, std::string &error, const char *where = "") {
    const json *v = member(obj, key);
    if (!v || v->is_null()) return true;
    if (!v->is_string()) {
        error = std::string("\"") + where + key + "\" is not a string";
        return false;
    }
    out = v->get<std::string>();
    return true;
}

bool read_bool(const json &obj, const char *key, bool &out, std::string &error, const char *where = "") {
    const json *v = member(obj, key);
    if (!v || v->is_null()) return true;
    if (!v->is_boolean()) {
        error = std::string("\"") + where + key + "\" is not a boolean";
        return false;
    }
    out = v->get<bool>();
    return true;
}

// Optional non-negative integer (LSNs can use all 64 bits).
bool read_u64(const json &obj, const char *key, std::uint64_t &out, std::string &error, const char *where = "") {
    const json *v = member(obj, key);
    if (!v || v->is_null()) return true;
    if (v->is_number_unsigned()) {
        out = v->get<std::uint64_t>();
        return true;
    }
    if (v->is_number_integer() && v->get<std::int64_t>() >= 0) {
        out = static_cast<std::uint64_t>(v->get<std::int64_t>());
        return true;
    }
    error = std::string("\"") + where + key + "\" is not a non-negative integer";
    return false;
}

bool parse_status(const std::string &body, PeerStatus &st) {
    json j;
    try {
        j = json::parse(body);
    } catch (const json::exception &e) {
        st.error = std::string("invalid JSON: ") + e.what();
        return false;
    }
    if (!j.is_object()) {
        st.error = "answer is not a JSON object";
        return false;
    }
    std::string &err = st.error;

    if (!read_string(j, "state", st.state, err) || !read_string(j, "role", st.role, err)) return false;
    if (st.role == "master") st.role = "primary";  // Patroni < 4 says "master"
    if (const json *p = member(j, "patroni"); p && !p->is_null()) {
        if (!p->is_object()) {
            err = "\"patroni\" is not an object";
            return false;
        }
        if (!read_string(*p, "name", st.name, err, "patroni.")) return false;
    }
    std::uint64_t timeline = 0;
    if (!read_u64(j, "timeline", timeline, err)) return false;
    if (timeline > static_cast<std::uint64_t>(INT_MAX)) {
        err = "\"timeline\" is out of range";
        return false;
    }
    st.timeline = static_cast<int>(timeline);
    if (!read_bool(j, "pause", st.paused, err) || !read_bool(j, "watchdog_failed", st.watchdog_failed, err) ||
        !read_bool(j, "sync_standby", st.sync_standby, err))
        return false;
    if (const json *d = member(j, "dcs_last_seen"); d && !d->is_null()) {
        if (!d->is_number_integer()) {  // unsigned counts as integer too
            err = "\"dcs_last_seen\" is not an integer";
            return false;
        }
        st.dcs_last_seen = d->is_number_unsigned()
                               ? static_cast<std::int64_t>(std::min<std::uint64_t>(d->get<std::uint64_t>(), INT64_MAX))
                               : d->get<std::int64_t>();
    }
    if (const json *tags = member(j, "tags"); tags && !tags->is_null()) {
        if (!tags->is_object()) {
            err = "\"tags\" is not an object";
            return false;
        }
        st.nofailover = Tags::from_json(*tags).nofailover;  // same reading as members/<name>
    }

    // Patroni: wal = json.get('wal', json.get('xlog')); without it the member is not usable.
    const json *wal = member(j, "wal");
    const char *wal_key = "wal.";
    if (!wal) {
        wal = member(j, "xlog");
        wal_key = "xlog.";
    }
    if (!wal || wal->is_null()) {
        err = "no \"xlog\" in the answer (state \"" + st.state + "\": PostgreSQL not running?)";
        return false;
    }
    if (!wal->is_object()) {
        err = std::string("\"") + std::string(wal_key, std::strlen(wal_key) - 1) + "\" is not an object";
        return false;
    }
    std::uint64_t location = 0, received = 0, replayed = 0;
    if (!read_u64(*wal, "location", location, err, wal_key) ||
        !read_u64(*wal, "received_location", received, err, wal_key) ||
        !read_u64(*wal, "replayed_location", replayed, err, wal_key) ||
        !read_bool(*wal, "paused", st.replay_paused, err, wal_key))
        return false;
    // Patroni: in_recovery = not bool(wal.get('location')). pg_ha: a member that
    // calls itself primary is not in recovery either (the safe reading when a
    // healthiest-node check asks "is the old primary still alive?").
    st.in_recovery = location == 0 && st.role != "primary";
    st.position = st.in_recovery ? std::max(received, replayed) : location;
    st.valid = true;
    err.clear();
    return true;
}

}  // namespace

std::vector<PeerReply> http_parallel(const std::vector<PeerRequest> &reqs, int timeout_ms) noexcept {
    try {
        return run_parallel(reqs, timeout_ms);
    } catch (const std::exception &e) {
        try {
            std::vector<PeerReply> replies(reqs.size());
            for (std::size_t i = 0; i < reqs.size(); ++i) {
                replies[i].name = reqs[i].name;
                replies[i].error = std::string("internal error: ") + e.what();
            }
            return replies;
        } catch (...) {
        }
    } catch (...) {
    }
    return {};  // out of memory even for the error replies
}

PeerStatus parse_patroni_status(const std::string &body) noexcept {
    PeerStatus st;
    try {
        if (!parse_status(body, st)) st.valid = false;
    } catch (const std::exception &e) {
        st.valid = false;
        try {
            st.error = std::string("internal error: ") + e.what();
        } catch (...) {
        }
    } catch (...) {
        st.valid = false;
    }
    return st;
}

}  // namespace pgha
