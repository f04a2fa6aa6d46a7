//! The handler policy: which frames a throw searches and which handler of a
//! call site catches it.
//!
//! Upstream's `__cranelift_throw` searches from the frame whose
//! frame-pointer value is `exit_fp` and stops before the one whose value is
//! `entry_fp`; an entry trampoline's catch-all takes what nothing in that
//! window caught.

use super::ThrowRequest;
use crate::exception_table::{FunctionEntry, SiteRef};

/// A handler that takes the throw.
#[derive(Clone, Copy)]
pub(super) struct Catch {
    /// The handler's offset in its function.
    pub offset: u32,
    /// JIT code caught it (`false`: an entry trampoline's catch-all).
    pub caught: bool,
}

/// Where a walk stands against the search window of one throw.
pub(super) struct Search {
    exit_fp: u64,
    entry_fp: u64,
    tag: u32,
    /// The walk has reached the exit frame.
    searching: bool,
    /// The walk has reached the entry frame.
    past_entry: bool,
}

impl Search {
    /// The search for `request`, before the first frame.
    #[inline]
    pub fn new(request: &ThrowRequest) -> Search {
        Search {
            exit_fp: request.exit_fp,
            entry_fp: request.entry_fp,
            tag: request.tag,
            searching: false,
            past_entry: false,
        }
    }

    /// The walk arrives at the frame `fp`.
    #[inline]
    pub fn enter(&mut self, fp: u64) {
        if fp == self.exit_fp {
            self.searching = true;
        }
        if fp == self.entry_fp {
            self.past_entry = true;
        }
    }

    /// The handler of `site` in `function` that takes the throw in the
    /// current frame, if any: an entry trampoline's always; JIT code's only
    /// inside the search window.
    #[inline]
    pub fn catch(&self, function: &FunctionEntry, site: SiteRef<'_>) -> Option<Catch> {
        if function.is_entry_trampoline() {
            site.select_handler(self.tag).map(|offset| Catch {
                offset,
                caught: false,
            })
        } else if self.searching && !self.past_entry {
            choose(site, self.tag).map(|offset| Catch {
                offset,
                caught: true,
            })
        } else {
            None
        }
    }
}

/// The handler of `site` for `tag` in JIT code: the first that matches.
#[cfg(not(feature = "sabotage"))]
#[inline]
fn choose(site: SiteRef<'_>, tag: u32) -> Option<u32> {
    site.select_handler(tag)
}

/// The handler of `site` for `tag` in JIT code: the first that matches,
/// unless [`super::Sabotage::HandlerLookup`] is on.
#[cfg(feature = "sabotage")]
#[inline]
fn choose(site: SiteRef<'_>, tag: u32) -> Option<u32> {
    use crate::compile::Handler;
    if !super::sabotage::on(super::Sabotage::HandlerLookup) {
        return site.select_handler(tag);
    }
    // The deliberate bug: the last matching entry, not the first.
    site.handlers().rev().find_map(|h| match h {
        Handler::Tag { tag: t, offset } if t == tag => Some(offset),
        Handler::Default { offset } => Some(offset),
        _ => None,
    })
}
