"""Helpers shared by more than one test folder, one module per idea:

- `http`: tokens and requests as the gateway's callers make them;
- `kafka`: reading a topic to its end, producing raw records;
- `messages`: a consumed record made by hand, for code that reads them without a broker;
- `postgres`: fresh databases, queries for assertions;
- `waiting`: polling until a condition holds;
- `core`: trips, actors and scripts of commands for the pure core;
- `scenario`: trips driven through the real core, and the rows their events must become;
- `sink_write`: those events written to Postgres through the sink's own write path.

The system's processes themselves (worker, sink, gateway) are started by `devstack`, which
the benchmarks use too. Helpers of one folder stay in that folder."""
