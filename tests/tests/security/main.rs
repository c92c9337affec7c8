//! Security regressions (issue 16): each module attacks a running `cairn` process with a real
//! client (boto3, the `aws` CLI, `aws-sdk-s3`, or raw HTTP where a client refuses to send the
//! request) and checks that the hole an audit found stays closed.
//!
//! One test binary for all of them, so the suite links once.
mod admin;
mod authz;
mod heal;
mod http;
mod kms;
mod replica;
mod sig;
