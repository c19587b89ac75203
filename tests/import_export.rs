//! import_export tests.
