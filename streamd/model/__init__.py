"""Values every stage shares: streams, segments, the ladder, jobs, packagings, store keys.

No PyAV, no I/O: the serving processes hold these without loading the media stack.
"""
