#![expect(
    clippy::unwrap_used,
    reason = "test harness helpers: a panic is a failed test"
)]
//! End-to-end tests: the real `vigil` binary on ephemeral ports, driven by real clients.

mod api;
mod backpressure;
mod cli;
mod crash;
mod gateway;
mod governance;
mod otlp_grpc;
mod otlp_http;
mod quality;
mod real_clients;
mod support;
mod ui;
