//! verdict-ingest
