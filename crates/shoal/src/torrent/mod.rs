//! `shoal torrent`: standalone torrent tooling that needs no daemon.

pub mod create;
pub mod show;
pub mod transfer;
