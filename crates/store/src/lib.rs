//! verdict-store
