"""The latency benchmark's parts (`python runtime/benchmark.py` is the CLI).

- `stats`: latency summaries (mean, percentiles, throughput) of timed samples;
- `memory`: host peak RSS from /proc/self/status and, on CUDA, torch's allocator peak;
- `device_time`: CUDA-event device time of a frame, apart from host overhead;
- `environment`: versions, CPU, GPU and thread count recorded with every result;
- `measure`: the grid of cells (backend x precision x size), skip reasons, the timed loop;
- `report`: the printed tables; `plot`: the two-panel figure (matplotlib, imported lazily).
"""
