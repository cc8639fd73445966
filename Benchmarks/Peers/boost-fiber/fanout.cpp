// fanout for Boost.Fiber: 10,000 fibers x 10 steps on one thread, `yield`
// (boost::this_fiber::yield) or `timer` (sleep_for zero, Boost.Fiber's own timer queue). Prints
// one JSON line per trial: {"ms": <wall ms>, "completed": <fibers that finished all their steps>}.
// usage: fanout yield|timer OPS STEPS TRIALS
#include <boost/fiber/all.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char **argv) {
    if (argc != 5 || (std::strcmp(argv[1], "yield") != 0 && std::strcmp(argv[1], "timer") != 0)) {
        std::fprintf(stderr, "usage: fanout yield|timer OPS STEPS TRIALS\n");
        return 2;
    }
    const bool yield = std::strcmp(argv[1], "yield") == 0;
    const int ops = std::atoi(argv[2]), steps = std::atoi(argv[3]), trials = std::atoi(argv[4]);
    for (int t = 0; t < trials; t++) {
        long completed = 0, taken = 0;
        std::vector<boost::fibers::fiber> fibers;
        fibers.reserve(ops);
        auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < ops; i++) {
            fibers.emplace_back([&] {
                for (int s = 0; s < steps; s++) {
                    if (yield) boost::this_fiber::yield();
                    else boost::this_fiber::sleep_for(std::chrono::milliseconds(0));
                    taken++;
                }
                completed++;
            });
        }
        for (auto &fiber : fibers) fiber.join();
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        if (taken != long(ops) * steps) {
            std::fprintf(stderr, "took %ld steps, expected %ld\n", taken, long(ops) * steps);
            return 1;
        }
        std::printf("{\"ms\": %f, \"completed\": %ld}\n", ms, completed);
    }
    return 0;
}
