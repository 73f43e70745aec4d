//! The transaction under a plan: files staged and swapped in under a [`journal`] that a cut
//! run is rolled back from, then the [`services`] restarted ([`transact`]); one run at a time
//! ([`lock`]).

pub mod journal;
pub mod lock;
pub mod services;
pub mod transact;
