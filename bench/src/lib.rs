//! OriginStack's load generator and benchmark suite.
//!
//! - Load: RTMP publishers and players ([`rtmp_load`]), HTTP-FLV players ([`http_flv`]) and
//!   origin heartbeats on the register API ([`register`]), driven by the `originstack-bench`
//!   binary against any proxy.
//! - Measuring: process cost from `/proc` ([`procstat`]), spreads over repeats ([`stats`]),
//!   helper processes (plain TCP relay, HTTP-FLV origin, bare server: [`roles`]).
//! - The standard scenarios of `make bench` ([`scenarios`], [`sim`]) and their report
//!   ([`report`], and the PNG chart with the `chart` feature).
//!
//! The proxy's own benches (`cargo bench -p originstack-proxy --bench rtmp_relay`) run the
//! same scenarios from here.

#[cfg(feature = "chart")]
pub mod chart;
pub mod crowd;
pub mod flv;
pub mod http_flv;
pub mod media;
pub mod procstat;
pub mod progress;
pub mod register;
pub mod report;
pub mod roles;
pub mod rtmp_load;
pub mod scenarios;
pub mod sim;
pub mod stats;
pub mod udp_echo;
