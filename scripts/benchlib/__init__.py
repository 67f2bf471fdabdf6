"""The benchmark scripts' shared parts: the timing harness, the kdlab set-up, the measurements
and the report. Imported by scripts/bench.py and scripts/bench_means.py, which Python runs
with scripts/ on sys.path."""
