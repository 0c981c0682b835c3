//! jkmon's integration tests, one binary: each file a module, `common` the helpers they
//! share (the real binary, its neighbours and fakes). One binary links the dependency graph
//! once, where one per file linked it twenty times.

mod common;

mod ble;
mod bot;
mod browser;
mod cli;
mod corpus;
mod decode_never_panics;
mod deploy;
mod devices_yaml;
mod docs;
mod energy;
mod env_example;
mod influx;
mod inverter;
mod layers;
mod metrics;
mod mqtt;
mod package;
mod python_monitor;
mod service;
mod stop;
mod store;
mod web;
mod wired;
