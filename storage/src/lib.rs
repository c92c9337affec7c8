//! Cairn's storage layers, below everything that speaks S3 (DESIGN.md §2):
//! `clock` -> `bitrot`, `erasure` -> `drive` -> `object`, with `topology` (the endpoint list)
//! beside them. Nothing here knows s3s, SSE or IAM: stages above the object layer plug in through
//! `object::stage`.

pub mod bitrot;
pub mod clock;
pub mod drive;
pub mod endpoints;
pub mod erasure;
pub mod object;
pub mod topology;
