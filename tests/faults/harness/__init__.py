"""Fault-schedule simulation testing: the whole daemon under a seeded random schedule of faults.

``catalogue`` draws a schedule from a seed, ``inproc`` runs it against the daemon assembled in
this process on emulated hardware and the virtual clock, ``procs`` runs the kinds that need
real processes, ``invariants`` judges what was recorded, ``runner`` runs many and sums them up.
docs/RELIABILITY.md, "Fault schedules", says what a seed replays and what it cannot.
"""
