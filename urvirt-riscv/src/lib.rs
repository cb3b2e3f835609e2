//! URVirt (placeholder; see issue 4).
