/* probe_limits: the machine's read bandwidth and dot-product peak, alone (the same probes
 * `meshllama bench` runs before its measurements; see core/machine_limits.h).
 *
 *   probe_limits [-t THREADS] [--mib SIZE] [--passes N] [--json]
 *
 * Prints bandwidth with 1 thread and with THREADS (default: online cores), and the peak. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/machine_limits.h"

int main(int argc, char **argv) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cores > 0 ? (int)cores : 1, passes = 5, json = 0;
    size_t mib = 1024;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc) mib = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--passes") == 0 && i + 1 < argc) passes = atoi(argv[++i]);
        else if (strcmp(argv[i], "--json") == 0) json = 1;
        else {
            fprintf(stderr, "usage: probe_limits [-t THREADS] [--mib SIZE] [--passes N] [--json]\n");
            return 2;
        }
    }
    if (threads < 1 || mib < 64 || passes < 1) {
        fprintf(stderr, "probe_limits: need threads >= 1, --mib >= 64, passes >= 1\n");
        return 2;
    }
    size_t bytes = mib << 20;
    double bw1 = ml_probe_read_bandwidth(1, bytes, passes, 0);
    double bwn = ml_probe_read_bandwidth(threads, bytes, passes, 0);
    double bw1h = ml_probe_read_bandwidth(1, bytes, passes, 1);
    double bwnh = ml_probe_read_bandwidth(threads, bytes, passes, 1);
    ml_probe_isa isa;
    double peak1 = ml_probe_dot_peak(1, 0.2, passes, &isa);
    double peakn = ml_probe_dot_peak(threads, 0.2, passes, &isa);
    ml_probe_isa int8_isa;
    double int8n = ml_probe_int8_peak(threads, 0.2, passes, &int8_isa);
    if (json) {
        printf("{\"threads\":%d,\"buffer_mib\":%zu,\"read_gbs_1\":%.2f,\"read_gbs\":%.2f,\"read_gbs_1_huge\":%.2f,"
               "\"read_gbs_huge\":%.2f,\"peak_isa\":\"%s\",\"peak_gflops_1\":%.1f,\"peak_gflops\":%.1f,"
               "\"int8_isa\":\"%s\",\"int8_gops\":%.1f}\n",
               threads, mib, bw1 / 1e9, bwn / 1e9, bw1h / 1e9, bwnh / 1e9, ml_probe_isa_name(isa), peak1 / 1e9,
               peakn / 1e9, ml_probe_isa_name(int8_isa), int8n / 1e9);
    } else {
        printf("read bandwidth (%zu MiB buffer, best of %d): 1 thread %.2f GB/s, %d threads %.2f GB/s (4 KiB pages); "
               "%.2f and %.2f GB/s (transparent huge pages)\n",
               mib, passes, bw1 / 1e9, threads, bwn / 1e9, bw1h / 1e9, bwnh / 1e9);
        printf("dot-product peak (%s): 1 thread %.1f GFLOP/s, %d threads %.1f GFLOP/s\n", ml_probe_isa_name(isa),
               peak1 / 1e9, threads, peakn / 1e9);
        if (int8n > 0)
            printf("int8 product peak (%s): %d threads %.1f GOP/s\n", ml_probe_isa_name(int8_isa), threads, int8n / 1e9);
    }
    return 0;
}
