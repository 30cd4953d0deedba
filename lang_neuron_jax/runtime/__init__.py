"""Infrastructure every stage shares: the stage mechanism (fingerprint, reuse, journal,
atomic commit), artifacts, the model cache, locks, multi-host helpers, device meshes and
the binaries' error printing. Nothing here knows about neurons or languages."""
