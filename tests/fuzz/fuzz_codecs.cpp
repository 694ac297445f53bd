// libFuzzer target: the JSON codecs for ZooKeeper and peer data
// (core/patroni_codec decoders, DynamicConfig / config patches, a peer's
// /patroni answer). Properties: nothing throws; what decodes re-encodes and
// decodes to the same text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "core/dynamic_config.hpp"
#include "core/patroni_codec.hpp"
#include "http/peer_client.hpp"

using namespace pgha;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    if (size == 0) return 0;
    const std::string text(reinterpret_cast<const char *>(data) + 1, size - 1);
    std::string err;
    try {
        switch (data[0] % 7) {
        case 0:
            if (auto m = decode_member("pg-1", text, err)) {
                std::string err2;
                auto again = decode_member("pg-1", encode_member(*m), err2);
                if (!again || encode_member(*again) != encode_member(*m)) std::abort();
            }
            break;
        case 1: {
            SyncState s = decode_sync(text, err);
            if (err.empty()) (void)encode_sync(s);
            break;
        }
        case 2:
            if (auto f = decode_failover(text, err)) (void)encode_failover(*f);
            break;
        case 3: {
            std::vector<std::string> retain, again;
            std::map<std::string, Lsn> slots, slots_again;
            const Lsn optime = decode_status(text, err, &retain, &slots);
            std::string err2;
            if (err.empty() && decode_status(encode_status(optime, retain, slots), err2, &again, &slots_again) != optime)
                std::abort();
            if (err.empty() && (again != retain || slots_again != slots)) std::abort();
            break;
        }
        case 4: {
            auto h = decode_history(text, err);
            if (err.empty()) (void)encode_history(h);
            break;
        }
        case 5: {
            auto j = nlohmann::json::parse(text, nullptr, false);
            if (j.is_discarded()) break;
            std::vector<std::string> errors;
            DynamicConfig c = DynamicConfig::from_json(j, errors);
            (void)c.validate();
            (void)c.to_json().dump();
            if (errors.empty()) {
                // The timings (to the millisecond) survive their own encoding.
                std::vector<std::string> again;
                DynamicConfig d = DynamicConfig::from_json(c.to_json(), again);
                if (!again.empty() || d.ttl_ms != c.ttl_ms || d.loop_wait_ms != c.loop_wait_ms ||
                    d.retry_timeout_ms != c.retry_timeout_ms)
                    std::abort();
            }
            auto r = apply_config_patch(nlohmann::json::object(), j, false);
            (void)r.merged.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
            break;
        }
        case 6:
            (void)parse_patroni_status(text);
            break;
        }
    } catch (...) {
        std::abort();  // the decoders promise not to throw
    }
    return 0;
}
