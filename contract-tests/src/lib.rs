//! Contract tests live in `tests/`: each adapter against its simulator and the published signature examples.
