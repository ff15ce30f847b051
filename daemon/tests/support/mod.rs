//! Fixtures shared by integration tests (and the benchmarks).
pub mod dbus_fixture;
