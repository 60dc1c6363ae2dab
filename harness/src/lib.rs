//! devstack-harness: proves that a DevStack cloud built inside a cloud VM works
//! from the outside in and from the inside out.
//!
//! The pipeline, one module per stage: [`scenario`] (file -> validated plan),
//! [`render`] (plan -> cloud-init, host recipe, local.conf), [`localconf`]
//! (DevStack's own reading of a local.conf, and a linter), [`keys`] (the SSH keys
//! of a run).

pub mod accel;
pub mod bench;
pub mod boot;
pub mod checks;
pub mod diff;
pub mod cloud;
pub mod doctor;
pub mod error;
pub mod exec;
pub mod image;
pub mod keys;
pub mod localconf;
pub mod netplane;
pub mod prepared;
pub mod prereq;
pub mod progress;
pub mod render;
pub mod report;
pub mod run;
pub mod runner;
pub mod scenario;
pub mod scripts;
pub mod seed;
pub mod snapshot;
pub mod ssh;
pub mod suite;
pub mod trace;
pub mod vm;
pub mod wait;
pub mod world;

pub use error::{Error, Kind};
