// GPU ballast for scripts/gpu-check.sh: hold all but LEAVE_MIB of the GPU's free memory, so that
// the engine the check starts afterwards meets a real CUDA out-of-memory at a known budget.
//
//   gpu-ballast LEAVE_MIB [MAX_SECONDS]
//
// Prints one line, "holding H MiB in N allocations; F MiB of T MiB free", once the memory is held,
// then sleeps until SIGTERM. It also exits (and the driver frees its memory) when its parent dies or
// after MAX_SECONDS (default 1800), so a killed check never leaves the GPU full.
// Exit codes: 2 usage or not enough free memory, 3 a CUDA call failed.

#include <cuda_runtime.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sys/prctl.h>
#include <unistd.h>
#include <vector>

static const size_t MiB = size_t(1) << 20;

static bool ok(cudaError_t err, const char *what) {
    if (err == cudaSuccess) return true;
    fprintf(stderr, "gpu-ballast: %s failed: %s\n", what, cudaGetErrorString(err));
    return false;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s LEAVE_MIB [MAX_SECONDS]\n", argv[0]);
        return 2;
    }
    const size_t leave = size_t(strtoull(argv[1], nullptr, 10)) * MiB;
    const long max_seconds = argc == 3 ? strtol(argv[2], nullptr, 10) : 1800;
    const pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // the check died without cleaning up: release the GPU
    if (getppid() != parent) return 0;

    if (!ok(cudaSetDevice(0), "cudaSetDevice") || !ok(cudaFree(nullptr), "creating the CUDA context")) return 3;
    size_t free_bytes = 0, total_bytes = 0;
    if (!ok(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo")) return 3;
    if (free_bytes <= leave + 64 * MiB) {
        fprintf(stderr, "gpu-ballast: only %zu MiB free, not more than the %zu MiB to leave\n",
                free_bytes / MiB, leave / MiB);
        return 2;
    }

    // Chunks rather than one huge block: a fragmented or nearly full GPU still fills up, and a
    // failed chunk is retried at half the size down to 2 MiB.
    const size_t target = free_bytes - leave;
    size_t held = 0, chunk = size_t(1) << 30;
    std::vector<void *> blocks;
    while (target - held >= 2 * MiB && chunk >= 2 * MiB) {
        size_t size = target - held < chunk ? (target - held) / MiB * MiB : chunk;
        void *p = nullptr;
        if (cudaMalloc(&p, size) != cudaSuccess) {
            cudaGetLastError();  // clear the error, try smaller pieces
            chunk /= 2;
            continue;
        }
        // cudaMalloc commits memory already; writing it makes sure nothing is lazily backed.
        if (!ok(cudaMemset(p, 0, size), "cudaMemset")) return 3;
        blocks.push_back(p);
        held += size;
    }
    if (!ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize")) return 3;
    if (!ok(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo")) return 3;
    printf("holding %zu MiB in %zu allocations; %zu MiB of %zu MiB free\n", held / MiB, blocks.size(),
           free_bytes / MiB, total_bytes / MiB);
    fflush(stdout);

    const time_t started = time(nullptr);
    for (;;) {
        sleep(1);
        if (getppid() != parent) return 0;
        if (time(nullptr) - started > max_seconds) {
            fprintf(stderr, "gpu-ballast: held for %ld s, the most allowed; releasing\n", max_seconds);
            return 0;
        }
    }
}
