//! Cairn data node: the S3 front, authentication, erasure coding and shard storage.
//!
//! Layering (each module only uses the ones above it):
//! `clock` -> `bitrot`, `erasure` -> `drive` -> `object` -> `auth`, `s3` -> `server`, `admin`.

pub mod admin;
pub mod auth;
pub mod bench;
pub mod bitrot;
pub mod catalog;
pub mod clock;
pub mod drive;
pub mod endpoints;
pub mod erasure;
pub mod object;
pub mod s3;
pub mod server;
pub mod site;
pub mod sse;
pub mod topology;
