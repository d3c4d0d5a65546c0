//! Index of the integration tests.
