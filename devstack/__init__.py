"""The system run locally as real processes, for the tests and the benchmarks alike (so
that neither depends on the other): `processes` (one service: start, kill, stop, its log),
`stack` (worker, sink and gateway together, on topics of their own). Not part of the
shipped image."""
