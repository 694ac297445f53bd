// cli/pgdata: the parts of pg_hactl boot that need no server: what the log
// says after pg_rewind, emptying a data directory, finding PostgreSQL's programs.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "cli/commands.hpp"
#include "cli/pgdata.hpp"

using namespace pgha::cli;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/pgha-unit-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// Sets an environment variable for one scope.
struct ScopedEnv {
    std::string name;
    std::optional<std::string> old;
    ScopedEnv(const char *n, const char *value) : name(n) {
        if (const char *o = std::getenv(n)) old = o;
        if (value) setenv(n, value, 1);
        else unsetenv(n);
    }
    ~ScopedEnv() {
        if (old) setenv(name.c_str(), old->c_str(), 1);
        else unsetenv(name.c_str());
    }
};

}  // namespace

TEST(RewindLog, NoRewindRequiredIsNotReportedAsRewound) {
    // pg_rewind says where the timelines fork even when nothing is rewound;
    // the fork is then after the local WAL. The old log claimed "has been
    // rewound" with a range running backwards.
    RewindResult r;
    r.no_rewind_required = true;
    r.diverged_at = "0/5000108";
    const std::string said = rewind_outcome_text(r, "pg-2", "0/40000D8", true);
    EXPECT_EQ(said, "no rewind required: the local WAL (last checkpoint 0/40000D8) is part of pg-2's history; the "
                    "timelines fork at 0/5000108, after it");
    EXPECT_EQ(said.find("rewound"), std::string::npos);
}

TEST(RewindLog, RewoundRangeOnlyWhenItIsARange) {
    RewindResult r;
    r.diverged_at = "0/4044B18";
    EXPECT_EQ(rewind_outcome_text(r, "pg-2", "0/404AF30", true),
              "diverged: pg-2's timeline forked at 0/4044B18; the local WAL from 0/4044B18 to 0/404AF30 (last "
              "checkpoint) was never replicated and has been rewound (those transactions are gone)");
    // the last checkpoint before the fork: no backwards range
    EXPECT_EQ(rewind_outcome_text(r, "pg-2", "0/2000110", false),
              "diverged: pg-2's timeline forked at 0/4044B18; the local WAL after 0/4044B18 was never replicated and "
              "would be discarded");
    r.exit_code = 1;  // failed: reported elsewhere
    EXPECT_EQ(rewind_outcome_text(r, "pg-2", "0/404AF30", true), "");
    RewindResult quiet;
    EXPECT_EQ(rewind_outcome_text(quiet, "pg-2", "0/1", true), "");
}

TEST(PgData, RemoveDirContentsWithoutAShell) {
    TempDir d;
    TempDir outside;
    fs::create_directories(d.path / "base" / "1");
    std::ofstream(d.path / "base" / "1" / "f") << "x";
    std::ofstream(d.path / ".hidden") << "x";
    std::ofstream(d.path / "it's a file; rm -rf /") << "x";
    std::ofstream(outside.path / "keep") << "x";
    fs::create_directory_symlink(outside.path, d.path / "link");
    EXPECT_FALSE(dir_empty(d.path.string()));
    remove_dir_contents(d.path.string());
    EXPECT_TRUE(dir_empty(d.path.string()));
    EXPECT_TRUE(fs::exists(d.path));                   // the directory itself stays
    EXPECT_TRUE(fs::exists(outside.path / "keep"));    // a symlink is removed, not followed
    EXPECT_TRUE(dir_empty((d.path / "missing").string()));
}

TEST(PgData, BindirFromPgVersionThenClearError) {
    TempDir d;
    ScopedEnv pgbin("PGBIN", nullptr);
    ScopedEnv path("PATH", "/nonexistent");  // no pg_config
    try {
        find_bindir(d.path.string());
        ADD_FAILURE() << "found a bindir without any hint";
    } catch (const CommandError &e) {
        EXPECT_EQ(e.code, kExitFailed);
        EXPECT_NE(std::string(e.what()).find("set PGBIN"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("pg_config --bindir: no answer"), std::string::npos) << e.what();
    }
    // The major that is installed (scripts/install-deps.sh installs one).
    std::string major;
    for (const auto &e : fs::directory_iterator("/usr/lib/postgresql"))
        if (fs::exists(e.path() / "bin" / "postgres")) major = e.path().filename().string();
    ASSERT_FALSE(major.empty()) << "no PostgreSQL server under /usr/lib/postgresql";
    std::ofstream(d.path / "PG_VERSION") << major << "\n";
    EXPECT_EQ(find_bindir(d.path.string()), "/usr/lib/postgresql/" + major + "/bin");
    std::ofstream(d.path / "PG_VERSION", std::ios::trunc) << "99\n";  // not installed: no guess
    EXPECT_THROW(find_bindir(d.path.string()), CommandError);
}

// postgresql.conf / postgresql.auto.conf unescape backslashes in quoted
// values; SQL literals (standard_conforming_strings) do not.
TEST(PgData, ConfAndSqlQuotingOfPasswords) {
    EXPECT_EQ(pgha::cli::conf_quote("rep l'a\\ss"), "'rep l''a\\\\ss'");
    EXPECT_EQ(pgha::sql_literal("rep l'a\\ss"), "'rep l''a\\ss'");
}

// pg_rewind gets --restore-target-wal exactly when the target's
// configuration sets restore_command (fake postgres and pg_rewind).
TEST(PgData, RewindFetchesFromTheArchiveWhenRestoreCommandIsSet) {
    TempDir bin, data;
    const fs::path args = bin.path / "rewind-args";
    auto script = [&](const char *name, const std::string &body) {
        const fs::path p = bin.path / name;
        std::ofstream(p) << "#!/bin/sh\n" << body;
        fs::permissions(p, fs::perms::owner_all);
    };
    script("pg_rewind", "echo \"$*\" > '" + args.string() + "'\necho 'pg_rewind: no rewind required'\n");
    const PgData pg{data.path.string(), bin.path.string()};
    for (const bool set : {true, false}) {
        script("postgres", set ? "[ \"$3\" = -C ] && [ \"$4\" = restore_command ] && echo 'cp /archive/%f %p'\n"
                               : "echo ''\n");
        EXPECT_EQ(restore_command_set(pg), set);
        const RewindResult r = pg_rewind(pg, "host=x", "pw", false);
        EXPECT_EQ(r.exit_code, 0);
        EXPECT_TRUE(r.no_rewind_required);
        std::ifstream in(args);
        std::string line;
        std::getline(in, line);
        EXPECT_EQ(line.find("--restore-target-wal") != std::string::npos, set) << line;
        EXPECT_NE(line.find("--target-pgdata=" + data.path.string()), std::string::npos) << line;
    }
    script("postgres", "exit 1\n");  // cannot tell: as without one
    EXPECT_FALSE(restore_command_set(pg));
}
