//! Integration tests of the relay: store-and-forward, membership, and the command line.
//! Everything binds 127.0.0.1.

mod cli;
mod common;
mod relay;
mod scale;
