/* A stand-in for the driver's libnvidia-ml.so.1 on machines without a GPU (tests/test_hardware.py):
 * the NVML calls alpacare.hardware makes, answering from FAKE_NVML_GPUS, e.g. "8.0:A100:40,7.0:V100:16"
 * (compute capability, name, free GiB per device, in NVML's index order; UUIDs are GPU-<index>). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { unsigned long long total, free, used; } memory_t;
typedef struct { int major, minor; char name[64]; unsigned long long free; } gpu_t;
static gpu_t gpus[16];
static unsigned n_gpus;

int nvmlInit_v2(void) {
    const char *spec = getenv("FAKE_NVML_GPUS");
    char buffer[1024], *save = NULL;
    n_gpus = 0;
    if (!spec) return 0;
    strncpy(buffer, spec, sizeof buffer - 1);
    buffer[sizeof buffer - 1] = 0;
    for (char *item = strtok_r(buffer, ",", &save); item && n_gpus < 16; item = strtok_r(NULL, ",", &save)) {
        gpu_t *g = &gpus[n_gpus++];
        unsigned gib = 0;
        if (sscanf(item, "%d.%d:%63[^:]:%u", &g->major, &g->minor, g->name, &gib) != 4) return 1;
        g->free = (unsigned long long)gib << 30;
    }
    return 0;
}
int nvmlShutdown(void) { return 0; }
int nvmlDeviceGetCount_v2(unsigned *count) { *count = n_gpus; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned index, void **handle) {
    if (index >= n_gpus) return 2;
    *handle = &gpus[index];
    return 0;
}
int nvmlDeviceGetHandleByUUID(const char *uuid, void **handle) {
    unsigned index;
    if (sscanf(uuid, "GPU-%u", &index) != 1) return 2;
    return nvmlDeviceGetHandleByIndex_v2(index, handle);
}
int nvmlDeviceGetCudaComputeCapability(void *handle, int *major, int *minor) {
    *major = ((gpu_t *)handle)->major;
    *minor = ((gpu_t *)handle)->minor;
    return 0;
}
int nvmlDeviceGetName(void *handle, char *name, unsigned length) {
    snprintf(name, length, "%s", ((gpu_t *)handle)->name);
    return 0;
}
int nvmlDeviceGetMemoryInfo(void *handle, memory_t *memory) {
    memory->free = ((gpu_t *)handle)->free;
    memory->total = memory->free + (1ULL << 30);
    memory->used = 1ULL << 30;
    return 0;
}
