// Background: jobs run on the helper thread, continuations on the caller's
// thread in drain(), after the waker's eventfd became readable.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <thread>

#include "engine/background.hpp"

using namespace pgha;

TEST(Background, JobRunsOffThreadAndContinuationOnDrain) {
    Waker waker;
    Background bg(waker);
    const std::thread::id loop = std::this_thread::get_id();
    std::thread::id job_thread, cont_thread;
    bool continued = false;
    bg.submit([&]() -> Background::Continuation {
        job_thread = std::this_thread::get_id();
        return [&] {
            cont_thread = std::this_thread::get_id();
            continued = true;
        };
    });
    EXPECT_EQ(bg.pending(), 1);
    struct pollfd p = {waker.fd(), POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1) << "the helper thread signals the waker when the job is done";
    EXPECT_FALSE(continued) << "continuations never run on the helper thread";
    waker.clear();
    EXPECT_EQ(bg.drain(), 1);
    EXPECT_TRUE(continued);
    EXPECT_NE(job_thread, loop);
    EXPECT_EQ(cont_thread, loop);
    EXPECT_EQ(bg.pending(), 0);
}

TEST(Background, AThrowingJobHandsBackNothingAndTheThreadGoesOn) {
    Waker waker;
    Background bg(waker);
    bg.submit([]() -> Background::Continuation { throw std::runtime_error("boom"); });
    std::atomic<bool> second{false};
    bg.submit([&]() -> Background::Continuation {
        return [&] { second = true; };
    });
    for (int i = 0; i < 100 && bg.pending() > 0; ++i) {
        struct pollfd p = {waker.fd(), POLLIN, 0};
        poll(&p, 1, 50);
        waker.clear();
        bg.drain();
    }
    EXPECT_EQ(bg.pending(), 0);
    EXPECT_TRUE(second);
}
