"""In-process fakes of third-party services, for tests (loopback only, no network)."""
