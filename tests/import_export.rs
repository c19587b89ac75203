//! CSV import and export, JSON export.
