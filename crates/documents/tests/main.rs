//! The documents crate's integration tests: golden HTML per customer language, and the PDF read back.

mod fixtures;
mod golden;
mod pdf_text;
