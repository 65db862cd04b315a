"""enclavefs benchmark: targets (file systems to measure), workloads, and reports.

Entry point: tools/bench/run. See docs/performance.md.
"""
