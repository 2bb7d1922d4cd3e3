"""`make bench`: every benchmark, one after the other."""

from tests.bench import event_latency, gateway_vs_direct

if __name__ == "__main__":
    import sys

    sys.argv = sys.argv[:1]
    event_latency.main()
    gateway_vs_direct.main()
