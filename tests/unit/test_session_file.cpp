// The ZooKeeper session file (dcs/session_file): written by the worker, read
// by the worker after a restart and by `pg_hactl stop`.
#include "core/no_postgres.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "dcs/session_file.hpp"

using namespace pgha;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/pgha-sessfile-XXXXXX";
        path = ::mkdtemp(t);
    }
    ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

ZkCredentials creds() {
    ZkCredentials c;
    c.session_id = 0x10a2b3c4d5e6f7;
    c.password = std::string("\x00\x01\xfe\xff\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0\xb0\xc0", 16);
    return c;
}

}  // namespace

TEST(SessionFile, RoundTripPrivateAndNamed) {
    TempDir d;
    const std::string f = session_file_path(d.path);
    EXPECT_EQ(f, d.path + "/pg_ha.zksession");
    ASSERT_TRUE(write_session_file(f, "pg-1", creds(), 20000));
    struct stat st{};
    ASSERT_EQ(::stat(f.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << "the session password must not be readable by others";
    ZkCredentials got;
    int timeout = 0;
    ASSERT_TRUE(read_session_file(f, "pg-1", got, timeout));
    EXPECT_EQ(got.session_id, creds().session_id);
    EXPECT_EQ(got.password, creds().password);
    EXPECT_EQ(timeout, 20000);
    // a clone carries its source's file: another member never resumes it
    EXPECT_FALSE(read_session_file(f, "pg-2", got, timeout));
    EXPECT_EQ(session_id_hex(0x10a2b3c4d5e6f7), "10a2b3c4d5e6f7");
}

TEST(SessionFile, MalformedOrMissingIsNotASession) {
    TempDir d;
    const std::string f = session_file_path(d.path);
    ZkCredentials got;
    int timeout = 30000;
    EXPECT_FALSE(read_session_file(f, "pg-1", got, timeout));
    for (const char *bad : {"pg-1", "pg-1 zz 00", "pg-1 10 0011", "pg-1 10x 000102030405060708090a0b0c0d0e0f",
                            "pg-1 10 000102030405060708090a0b0c0d0e0g", "pg-1 0 000102030405060708090a0b0c0d0e0f"}) {
        std::ofstream(f) << bad << "\n";
        EXPECT_FALSE(read_session_file(f, "pg-1", got, timeout)) << bad;
    }
    // without the timeout field (older files): the caller's default stays
    std::ofstream(f) << "pg-1 10 000102030405060708090a0b0c0d0e0f\n";
    timeout = 30000;
    ASSERT_TRUE(read_session_file(f, "pg-1", got, timeout));
    EXPECT_EQ(timeout, 30000);
    EXPECT_EQ(got.session_id, 0x10);
}
