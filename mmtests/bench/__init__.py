"""Performance figures for benchmarks: FLOPs, device peaks, MFU/MBU (`perf`), peak memory (`memory`),
and the CLIP embedding passes the benchmarks time (`embedding`)."""
