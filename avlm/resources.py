"""What this process may use of the machine (shared by DataLoader worker defaults in training and inference)."""

import os


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else all cores)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
