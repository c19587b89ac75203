//! corrupt tests.
