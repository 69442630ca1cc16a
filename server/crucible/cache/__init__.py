"""Response caches: keys, the in-memory L1, the on-disk L2 (sqlite) and the tier over both."""
