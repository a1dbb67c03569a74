"""The benchmarks (`python -m edgefaas.perf.<name>`), and `edgefaas perf`: some of them in one report."""
