//! verdict-engine
