//! Connection-level tests.
