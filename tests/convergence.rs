//! convergence tests.
