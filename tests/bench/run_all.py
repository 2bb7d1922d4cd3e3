"""`make bench`: the foundation's two benchmarks (the others load large bases first: run them by their own commands, tests/bench/README.md)."""

from tests.bench import event_latency, gateway_vs_direct

if __name__ == "__main__":
    import sys

    sys.argv = sys.argv[:1]
    event_latency.main()
    gateway_vs_direct.main()
