"""The stateful core test again, with every command going through the table store and
nothing kept in memory between commands: each command reads the trip back from its
entries (closed bookings and outcomes only when asked), and the invariants and the
duplicate checks run on the whole state as a fresh worker would find it."""

from hypothesis import HealthCheck, settings

from tests.domain.test_stateful import BookingMachine
from tests.tables.support import StoreOverDict, stored_state


class StoredMachine(BookingMachine):
    def start_core(self) -> None:
        super().start_core()
        self.key = self.trip.key.encode()
        self.store = StoreOverDict(trips_cached=0)
        self.offset = 0

    def run(self, command):
        _, outcome = self.store.handle(self.key, command, self.now, self.offset, self.policy)
        self.offset += 1
        self.store.flush()
        self.state = stored_state(self.store.table, self.key)
        return outcome


StoredMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoredMachine = StoredMachine.TestCase
