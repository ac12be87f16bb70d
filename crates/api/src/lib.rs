//! verdict-api
