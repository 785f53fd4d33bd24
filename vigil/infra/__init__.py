"""Process plumbing: local Ray on loopback, free ports, micro-batching, periodic tasks, the GC."""
